"""A small patch classifier trained from a pathologist's annotations (`iain train`, the
viewer's "Train" button): the model in the box, since no weights can be downloaded.

The classes are the annotations' labels; each annotated region gives the patches whose
centres lie inside it, read through the same grid and tile reader as inference (so the
model sees at training what it will see at inference: the same level, resize and
normalisation). A few thousand patches and a few epochs of a four-block CNN train in
about a minute on two CPU cores. The result is a torch.export program with its manifest,
registered like any other model; its held-out accuracy goes into the job's summary."""

from __future__ import annotations

import io
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from inference.pipeline import Plan, TileReader, batches
from inference.protocol import JobFailure, ModelClass, ModelSpec

PALETTE = ("#3cb44b", "#e6194b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6")
MAX_PATCHES_PER_CLASS = 1500
MIN_PATCHES_PER_CLASS = 8
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class LabelledRegion:
    label: str
    polygon: list[tuple[float, float]]  # level-0 pixels, a ring (closed or not)


@dataclass(frozen=True)
class TrainingConfig:
    resolution: float = 1.0  # µm per pixel the patches are read at
    patch_size: int = 64
    epochs: int = 6
    batch_size: int = 64
    learning_rate: float = 2e-3
    seed: int = 0
    holdout: float = 0.2  # of the patches, for the accuracy reported (by region)


class SmallCnn(nn.Module):
    """Four conv blocks, global average pooling, a linear head: a texture classifier."""

    def __init__(self, classes: int, width: int = 32) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for out in (width, width * 2, width * 2, width * 4):
            layers += [
                nn.Conv2d(channels, out, 3, padding=1, bias=False),
                nn.BatchNorm2d(out),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            channels = out
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(channels, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.head(self.features(x).mean(dim=(2, 3)))
        return logits


def inside(polygon: Sequence[tuple[float, float]], xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Which points lie inside the polygon (even-odd rule)."""
    result = np.zeros(xs.shape, bool)
    n = len(polygon)
    for i in range(n):
        x0, y0 = polygon[i]
        x1, y1 = polygon[(i + 1) % n]
        crosses = (y0 > ys) != (y1 > ys)
        with np.errstate(divide="ignore", invalid="ignore"):
            at = (x1 - x0) * (ys - y0) / (y1 - y0) + x0
        result ^= crosses & (xs < at)
    return result


def labelled_cells(
    plan: Plan, regions: Sequence[LabelledRegion], classes: Sequence[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The grid cells whose centres lie in an annotated region: cells (n, 2), their class
    index and the index of the region they came from (for a held-out split by region)."""
    cells: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    origin: list[np.ndarray] = []
    taken = np.zeros((plan.rows, plan.cols), bool)
    for index, region in enumerate(regions):
        if region.label not in classes or len(region.polygon) < 3:
            continue
        px = np.array([p[0] for p in region.polygon])
        py = np.array([p[1] for p in region.polygon])
        c0 = max(0, int(px.min() // plan.l0_cell_w))
        c1 = min(plan.cols, math.ceil(px.max() / plan.l0_cell_w) + 1)
        r0 = max(0, int(py.min() // plan.l0_cell_h))
        r1 = min(plan.rows, math.ceil(py.max() / plan.l0_cell_h) + 1)
        if c1 <= c0 or r1 <= r0:
            continue
        cc, rr = np.meshgrid(np.arange(c0, c1), np.arange(r0, r1))
        xs = (cc + 0.5) * plan.l0_cell_w
        ys = (rr + 0.5) * plan.l0_cell_h
        hit = inside(region.polygon, xs, ys) & ~taken[rr, cc]
        taken[rr[hit], cc[hit]] = True
        found = np.stack([cc[hit], rr[hit]], axis=1)
        cells.append(found)
        labels.append(np.full(len(found), classes.index(region.label)))
        origin.append(np.full(len(found), index))
    if not cells:
        return np.zeros((0, 2), np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(cells), np.concatenate(labels), np.concatenate(origin)


def balanced(labels: np.ndarray, classes: int, limit: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of at most `limit` patches per class, at random."""
    chosen = []
    for index in range(classes):
        of_class = np.flatnonzero(labels == index)
        if len(of_class) > limit:
            of_class = rng.choice(of_class, limit, replace=False)
        chosen.append(of_class)
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, np.int64)


@dataclass
class Trained:
    program: bytes  # torch.export.save of the model, batch dimension dynamic
    manifest: dict[str, Any]
    summary: dict[str, Any]


def _augment(x: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    """Flips and quarter turns: tissue has no up or down."""
    if torch.rand(1, generator=rng).item() < 0.5:
        x = x.flip(3)
    if torch.rand(1, generator=rng).item() < 0.5:
        x = x.flip(2)
    turns = int(torch.randint(0, 4, (1,), generator=rng).item())
    return torch.rot90(x, turns, dims=(2, 3)) if turns else x


def _normalise(pixels: np.ndarray, size: int) -> torch.Tensor:
    x = torch.from_numpy(pixels).permute(0, 3, 1, 2).float()
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True)
    mean = torch.tensor(MEAN).view(1, 3, 1, 1) * 255
    std = torch.tensor(STD).view(1, 3, 1, 1) * 255
    return (x - mean) / std


def train(
    plan: Plan,
    reader: TileReader,
    regions: Sequence[LabelledRegion],
    *,
    name: str,
    version: str,
    config: TrainingConfig,
    authors: Sequence[str],
    should_stop: Callable[[], None],
    progress: Callable[[int, int], None],
) -> Trained:
    """Trains on the patches of the annotated regions; JobFailure if there is too little."""
    classes = sorted({r.label for r in regions if r.label})
    if len(classes) < 2:
        raise JobFailure(
            "training needs annotations of at least two labels (e.g. 'tumour' and 'stroma'); "
            f"found {len(classes)}"
        )
    cells, labels, origin = labelled_cells(plan, regions, classes)
    rng = np.random.default_rng(config.seed)
    keep = balanced(labels, len(classes), MAX_PATCHES_PER_CLASS, rng)
    cells, labels, origin = cells[keep], labels[keep], origin[keep]
    counts = {c: int((labels == i).sum()) for i, c in enumerate(classes)}
    short = [c for c, n in counts.items() if n < MIN_PATCHES_PER_CLASS]
    if short:
        raise JobFailure(
            f"too few patches under the annotations of {', '.join(short)} "
            f"(at least {MIN_PATCHES_PER_CLASS} each): draw larger or more regions"
        )
    started = time.perf_counter()
    # Read every patch once: a few thousand small patches fit in memory.
    subset = Plan(**{**plan.__dict__, "cells": cells})
    pixels = np.empty((len(cells), plan.z_window, plan.z_window, 3), np.uint8)
    at = 0
    for batch in batches(subset, reader, 128):
        should_stop()
        pixels[at : at + len(batch.cells)] = batch.pixels
        at += len(batch.cells)
    read_s = time.perf_counter() - started

    # Held out by region, so the accuracy is that of regions the model has not seen.
    regions_of = np.unique(origin)
    held = set(
        rng.choice(
            regions_of, max(1, round(len(regions_of) * config.holdout)), replace=False
        ).tolist()
    )
    test = np.array([o in held for o in origin])
    if test.all() or not test.any() or len(np.unique(labels[~test])) < len(classes):
        test = rng.random(len(labels)) < config.holdout
    x_all = _normalise(pixels, config.patch_size)
    y_all = torch.from_numpy(labels.astype(np.int64))
    x_train, y_train = x_all[~torch.from_numpy(test)], y_all[~torch.from_numpy(test)]

    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    model = SmallCnn(len(classes))
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=1e-4)
    steps = config.epochs * math.ceil(len(y_train) / config.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, config.learning_rate, total_steps=steps
    )
    step = 0
    for _epoch in range(config.epochs):
        model.train()
        order = torch.randperm(len(y_train), generator=generator)
        for start in range(0, len(order), config.batch_size):
            should_stop()
            index = order[start : start + config.batch_size]
            logits = model(_augment(x_train[index], generator))
            loss = F.cross_entropy(logits, y_train[index])
            optimiser.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            optimiser.step()
            schedule.step()
            step += 1
            progress(step, steps)
    # Batch-norm statistics recomputed over all the training patches in one pass: a few
    # optimiser steps leave the running averages far from them, and the exported (eval)
    # model's probabilities would be off although its ranking is right.
    recalibrate(model, x_train)
    model.eval()
    with torch.inference_mode():
        predicted = torch.cat(
            [model(x_all[i : i + 256]).argmax(1) for i in range(0, len(y_all), 256)]
        )
    correct = (predicted == y_all).numpy()
    accuracy = float(correct[test].mean()) if test.any() else None
    train_s = time.perf_counter() - started - read_s

    example = x_all[:2].contiguous()
    dynamic = torch.export.Dim("batch", min=1, max=4096)
    program = torch.export.export(model, (example,), dynamic_shapes=({0: dynamic},))
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    manifest = {
        "name": name,
        "version": version,
        "task": "patch_classification",
        "resolution": config.resolution,
        "unit": "um",
        "patch_size": config.patch_size,
        "mean": list(MEAN),
        "std": list(STD),
        "classes": [
            {"name": c, "colour": PALETTE[i % len(PALETTE)]} for i, c in enumerate(classes)
        ],
        "heatmap_class": _shown(classes),
        "output": "softmax",
        "licence": "own (trained in IAIN)",
        "intended_use": "research use only",
        "authors": list(authors) or ["IAIN"],
        "description": (
            f"A small CNN trained on {len(labels)} patches from annotated regions "
            f"({', '.join(f'{c}: {n}' for c, n in counts.items())})."
        ),
        "batch_size": 64,
    }
    summary = {
        "patches": counts,
        "held_out_patches": int(test.sum()),
        "held_out_accuracy": round(accuracy, 4) if accuracy is not None else None,
        "epochs": config.epochs,
        "read_s": round(read_s, 2),
        "train_s": round(train_s, 2),
    }
    return Trained(buffer.getvalue(), manifest, summary)


def recalibrate(model: nn.Module, x: torch.Tensor, batch: int = 256) -> None:
    """Sets every batch norm's running mean and variance to the data's (cumulative)."""
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average over the pass
    model.train()
    with torch.no_grad():
        for start in range(0, len(x), batch):
            model(x[start : start + batch])


def _shown(classes: Sequence[str]) -> str:
    """The class a heatmap shows: the lesion if one is named so, else the last."""
    for hint in ("tumour", "tumor", "carcinoma", "cancer", "lesion", "positive"):
        for name in classes:
            if hint in name.lower():
                return name
    return classes[-1]


def grid_spec(config: TrainingConfig, classes: Sequence[str]) -> ModelSpec:
    """The model-to-be as the patch grid needs it (inference.pipeline.plan_patches)."""
    return ModelSpec(
        id="",
        name="training",
        version="",
        sha256="",
        artefact_format="export",
        size_bytes=0,
        url="",
        task="patch_classification",
        resolution=config.resolution,
        unit="um",
        patch_size=config.patch_size,
        stride=config.patch_size,
        margin=0,
        mean=MEAN,
        std=STD,
        classes=tuple(ModelClass(c, "#000000") for c in classes),
        shown_class=_shown(classes),
        output="softmax",
        batch_size=config.batch_size,
        intended_use="research use only",
    )
