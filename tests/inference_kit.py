"""What the inference tests share: tiny models built here (no weights can be downloaded),
their manifests, worker tokens, and workers run in threads or in processes."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import httpx
import torch

from exchange.core.db import Database
from exchange.identity.accounts import Identities
from iain.settings import Settings


class PurpleScore(torch.nn.Module):
    """A 'tumour' detector that needs no training: tumour is dark purple. Two classes
    (stroma, tumour); its logit is how much darker and bluer than pink a patch is."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: normalised (n, 3, h, w); mean per channel.
        m = x.mean(dim=(2, 3))
        score = (m[:, 2] - m[:, 0]) * 2.0 - m[:, 1]
        return torch.stack([-score, score], dim=1)


class PurpleMap(torch.nn.Module):
    """PurpleScore per 4 x 4 pixels: a segmentation model's (n, 2, h/4, w/4) logits."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = torch.nn.functional.avg_pool2d(x, 4)
        score = (m[:, 2] - m[:, 0]) * 2.0 - m[:, 1]
        return torch.stack([-score, score], dim=1)


class GridDetector(torch.nn.Module):
    """Four detections a patch, at the centres of its quarters; each is 'tumour' where the
    quarter is dark purple: (n, 4, 5) rows x, y, radius, stroma and tumour logits."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        side = x.shape[-1]
        m = torch.nn.functional.avg_pool2d(x, side // 2)  # (n, 3, 2, 2)
        score = ((m[:, 2] - m[:, 0]) * 2.0 - m[:, 1]).flatten(1)  # (n, 4)
        quarter = side / 4.0
        xs = torch.tensor([1.0, 3.0, 1.0, 3.0]) * quarter
        ys = torch.tensor([1.0, 1.0, 3.0, 3.0]) * quarter
        n = x.shape[0]
        rows = torch.stack(
            [xs.expand(n, 4), ys.expand(n, 4), torch.full((n, 4), 4.0), -score, score], dim=2
        )
        return rows


class Broken(torch.nn.Module):
    """Answers NaN."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full((x.shape[0], 2), float("nan"))


class Fixed32(torch.nn.Module):
    """A classifier that only takes 32 x 32 inputs: a manifest saying 64 lies about it."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(3 * 32 * 32, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.linear(x.flatten(1))
        return logits


def corrupt_torchscript() -> bytes:
    """A zip that looks like a TorchScript program to the hub, and is not one."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("m/data.pkl", b"not a pickle")
        archive.writestr("m/code/__torch__/m.py", b"garbage")
        archive.writestr("m/version", b"3")
    return buffer.getvalue()


class ThreeClasses(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))  # three values per patch


def torchscript_bytes(module: torch.nn.Module) -> bytes:
    buffer = io.BytesIO()
    torch.jit.save(torch.jit.script(module.eval()), buffer)
    return buffer.getvalue()


def export_bytes(module: torch.nn.Module, size: int = 64) -> bytes:
    batch = torch.export.Dim("batch", min=1, max=1024)
    program = torch.export.export(
        module.eval(), (torch.rand(2, 3, size, size),), dynamic_shapes=({0: batch},)
    )
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    return buffer.getvalue()


def manifest(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "purple-score",
        "version": "1.0.0",
        "task": "patch_classification",
        "resolution": 2.0,
        "patch_size": 64,
        "classes": [
            {"name": "stroma", "colour": "#f0a0c0"},
            {"name": "tumour", "colour": "#6a1b9a"},
        ],
        "heatmap_class": "tumour",
        "licence": "Apache-2.0",
        "intended_use": "research use only",
        "authors": ["IAIN tests"],
        "batch_size": 16,
    }
    base.update(overrides)
    return base


def worker_token(settings: Settings, name: str = "worker-1") -> str:
    """A worker-scoped token of a service account (no roles: it sees no slide itself)."""
    identities = Identities(Database.open(settings.database_url))
    username = f"svc.{name}"
    if identities.user(username) is None:
        identities.add_user(username, "caen", ["service"])
    return identities.create_token(username, name=name, scopes=["worker"])[1]


def register(
    client: httpx.Client | Any, artefact: bytes, document: dict[str, Any]
) -> dict[str, Any]:
    """POST /api/models as the client's caller: the registered model."""
    response = client.post(
        "/api/models",
        files={
            "manifest": ("manifest.json", json.dumps(document).encode(), "application/json"),
            "artefact": ("model.pt", artefact, "application/octet-stream"),
        },
    )
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path
