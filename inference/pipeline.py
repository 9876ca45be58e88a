"""Tiled inference over one slide: keep the device the bottleneck.

1. The tissue mask, from the slide's thumbnail (inference.tissue: classical, no weights).
2. The patch grid at the model's resolution: the heatmap's cells cover the slide exactly
   (cols = ceil(width / stride), so a cell is stride or a little less), each cell's patch
   centred on it, read from the coarsest pyramid level at least as fine as the model wants
   (DeepZoom levels halve: at most 2x finer, resized on the device).
3. Stored tiles fetched from the hub (the tile fast path hands back stored JPEG bytes) by
   a pool of threads that also decode them (Pillow's libjpeg-turbo, outside the GIL);
   decoded tiles kept while the grid's rows still need them.
4. Batches of uint8 patches assembled ahead in a thread (a bounded queue: the model never
   waits while the reader is ahead), copied to the device (pinned, non-blocking on CUDA),
   resized and normalised there, run under inference_mode (bf16 autocast and channels-last
   on CUDA).

Coordinate prefixes as in the tile layer: `l0_` level-0 pixels, `z_` DeepZoom level pixels,
`t_` tile indices."""

from __future__ import annotations

import contextlib
import io
import math
import queue
import threading
import time
import xml.etree.ElementTree as ET
from collections import OrderedDict
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from inference.protocol import JobFailure, ModelSpec, Region, SlideSpec
from inference.tissue import tissue_mask

THUMBNAIL_SIZE = 2048
MIN_TISSUE_FRACTION = 0.1  # of a cell, for its patch to be run
BACKGROUND = 255  # outside the slide: white glass
_DZ_NS = "{http://schemas.microsoft.com/deepzoom/2008}"


@dataclass(frozen=True)
class Pyramid:
    """The slide's DeepZoom pyramid, as its .dzi says."""

    width: int
    height: int
    tile_size: int
    overlap: int

    @property
    def max_level(self) -> int:
        return max(0, math.ceil(math.log2(max(self.width, self.height))))

    def level_size(self, z: int) -> tuple[int, int]:
        scale = 2 ** (self.max_level - z)
        return max(1, math.ceil(self.width / scale)), max(1, math.ceil(self.height / scale))

    @classmethod
    def from_dzi(cls, text: str) -> Pyramid:
        root = ET.fromstring(text)
        size = root.find(f"{_DZ_NS}Size")
        if size is None:
            size = root.find("Size")
        if size is None:
            raise JobFailure("the slide's DeepZoom descriptor has no size")
        return cls(
            width=int(size.attrib["Width"]),
            height=int(size.attrib["Height"]),
            tile_size=int(root.attrib["TileSize"]),
            overlap=int(root.attrib.get("Overlap", "0")),
        )


@dataclass(frozen=True)
class Plan:
    """Where the patches are: the heatmap's grid over the whole slide, and the cells to run."""

    cols: int
    rows: int
    l0_cell_w: float
    l0_cell_h: float
    l0_patch: float  # level-0 pixels a patch covers (without its margin)
    l0_margin: float
    z: int  # the pyramid level patches are read from
    z_downsample: float  # level-0 pixels per level-z pixel
    z_window: int  # level-z pixels of a patch with its margin (resized to input_size)
    cells: np.ndarray  # (n, 2): col, row of each cell to run, in row-major order

    @property
    def count(self) -> int:
        return int(self.cells.shape[0])

    def z_origin(self, col: int, row: int) -> tuple[int, int]:
        """Level-z top-left of the patch window (margin included) of cell (col, row)."""
        cx = (col + 0.5) * self.l0_cell_w
        cy = (row + 0.5) * self.l0_cell_h
        half = self.l0_patch / 2 + self.l0_margin
        return (
            math.floor((cx - half) / self.z_downsample),
            math.floor((cy - half) / self.z_downsample),
        )


def l0_per_model_pixel(spec: ModelSpec, slide: SlideSpec) -> float:
    if spec.unit == "px":
        return spec.resolution
    if not slide.mpp:
        raise JobFailure(
            f"the slide has no resolution (µm per pixel) and {spec.name} reads patches at "
            f"{spec.resolution} µm/px"
        )
    return spec.resolution / slide.mpp


def plan_patches(
    spec: ModelSpec,
    slide: SlideSpec,
    pyramid: Pyramid,
    *,
    tissue: np.ndarray | None,
    region: Region | None,
) -> Plan:
    """The grid and the cells to run: inside the region, on tissue (when a mask is given)."""
    factor = l0_per_model_pixel(spec, slide)
    # The coarsest level at least as fine as the model's resolution.
    steps = max(0, math.floor(math.log2(factor) + 1e-6)) if factor >= 1 else 0
    z = max(0, pyramid.max_level - steps)
    z_downsample = float(2 ** (pyramid.max_level - z))
    l0_stride = spec.stride * factor
    cols = max(1, math.ceil(pyramid.width / l0_stride))
    rows = max(1, math.ceil(pyramid.height / l0_stride))
    cell_w, cell_h = pyramid.width / cols, pyramid.height / rows
    l0_patch = spec.patch_size * factor
    l0_margin = spec.margin * factor
    z_window = max(1, round((l0_patch + 2 * l0_margin) / z_downsample))
    wanted = np.ones((rows, cols), bool)
    if region is not None:
        c0 = int(region.x // cell_w)
        r0 = int(region.y // cell_h)
        c1 = math.ceil((region.x + region.width) / cell_w)
        r1 = math.ceil((region.y + region.height) / cell_h)
        inside = np.zeros_like(wanted)
        inside[r0:r1, c0:c1] = True
        wanted &= inside
    if tissue is not None:
        wanted &= cell_fraction(tissue, rows, cols) >= MIN_TISSUE_FRACTION
    rr, cc = np.nonzero(wanted)
    cells = np.stack([cc, rr], axis=1) if rr.size else np.zeros((0, 2), np.int64)
    return Plan(cols, rows, cell_w, cell_h, l0_patch, l0_margin, z, z_downsample, z_window, cells)


def cell_fraction(mask: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """The fraction of each grid cell that a (lower- or higher-resolution) mask covers."""
    h, w = mask.shape
    ys = np.minimum((np.arange(rows + 1) * h / rows).round().astype(int), h)
    xs = np.minimum((np.arange(cols + 1) * w / cols).round().astype(int), w)
    integral = np.zeros((h + 1, w + 1), np.float64)
    integral[1:, 1:] = mask.astype(np.float64).cumsum(0).cumsum(1)
    y0, y1 = ys[:-1], np.maximum(ys[1:], ys[:-1] + 1).clip(max=h)
    x0, x1 = xs[:-1], np.maximum(xs[1:], xs[:-1] + 1).clip(max=w)
    total = (
        integral[np.ix_(y1, x1)]
        - integral[np.ix_(y0, x1)]
        - integral[np.ix_(y1, x0)]
        + integral[np.ix_(y0, x0)]
    )
    area = np.outer(y1 - y0, x1 - x0).clip(min=1)
    fraction: np.ndarray = total / area
    return fraction


def decode_jpeg(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


class TileReader:
    """Decoded level-z tiles, fetched and decoded by a pool of threads, kept while needed
    (least recently used out past `keep` tiles)."""

    def __init__(
        self,
        fetch: Callable[[int, int, int], bytes],
        pyramid: Pyramid,
        z: int,
        *,
        threads: int = 8,
        keep: int = 1024,
    ) -> None:
        self.fetch = fetch
        self.pyramid = pyramid
        self.z = z
        self.z_width, self.z_height = pyramid.level_size(z)
        size = pyramid.tile_size
        self.t_cols = math.ceil(self.z_width / size)
        self.t_rows = math.ceil(self.z_height / size)
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="tiles")
        self.keep = keep
        self._tiles: OrderedDict[tuple[int, int], Future[np.ndarray]] = OrderedDict()
        self.fetched = 0
        self.read_s = 0.0  # thread time fetching and decoding, summed
        self._lock = threading.Lock()

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)

    def _load(self, col: int, row: int) -> np.ndarray:
        start = time.perf_counter()
        pixels = decode_jpeg(self.fetch(self.z, col, row))
        o = self.pyramid.overlap
        # Only the tile's own pixels: the overlap with its neighbours is cut off.
        x0 = o if col > 0 else 0
        y0 = o if row > 0 else 0
        size = self.pyramid.tile_size
        core = pixels[y0 : y0 + size, x0 : x0 + size]
        with self._lock:
            self.fetched += 1
            self.read_s += time.perf_counter() - start
        return core

    def want(self, col: int, row: int) -> Future[np.ndarray]:
        key = (col, row)
        found = self._tiles.get(key)
        if found is not None:
            self._tiles.move_to_end(key)
            return found
        future = self.pool.submit(self._load, col, row)
        self._tiles[key] = future
        while len(self._tiles) > self.keep:
            self._tiles.popitem(last=False)
        return future

    def tiles_of(self, z_x: int, z_y: int, size: int) -> list[tuple[int, int]]:
        t = self.pyramid.tile_size
        c0, r0 = max(0, z_x // t), max(0, z_y // t)
        c1 = min(self.t_cols - 1, (z_x + size - 1) // t)
        r1 = min(self.t_rows - 1, (z_y + size - 1) // t)
        return [(c, r) for r in range(r0, r1 + 1) for c in range(c0, c1 + 1)]

    def window(self, z_x: int, z_y: int, size: int) -> np.ndarray:
        """The level-z square at (z_x, z_y), white outside the slide."""
        out = np.full((size, size, 3), BACKGROUND, np.uint8)
        t = self.pyramid.tile_size
        for col, row in self.tiles_of(z_x, z_y, size):
            tile = self.want(col, row).result()
            tx, ty = col * t, row * t
            x0, y0 = max(z_x, tx), max(z_y, ty)
            x1 = min(z_x + size, tx + tile.shape[1], self.z_width)
            y1 = min(z_y + size, ty + tile.shape[0], self.z_height)
            if x1 > x0 and y1 > y0:
                out[y0 - z_y : y1 - z_y, x0 - z_x : x1 - z_x] = tile[
                    y0 - ty : y1 - ty, x0 - tx : x1 - tx
                ]
        return out


@dataclass
class Batch:
    cells: np.ndarray  # (n, 2)
    pixels: np.ndarray  # (n, window, window, 3) uint8


def batches(plan: Plan, reader: TileReader, batch_size: int, *, ahead: int = 3) -> Iterator[Batch]:
    """The plan's patches in batches, assembled by a thread `ahead` batches in advance."""
    out: queue.Queue[Batch | BaseException | None] = queue.Queue(maxsize=ahead)
    stop = threading.Event()
    # Tiles are asked for ahead of the assembly, so fetching overlaps with it.
    prefetch = max(batch_size * (ahead + 1), 64)

    def produce() -> None:
        try:
            n = plan.count
            asked = 0
            for start in range(0, n, batch_size):
                end = min(n, start + batch_size)
                while asked < min(n, end + prefetch):
                    col, row = plan.cells[asked]
                    z_x, z_y = plan.z_origin(int(col), int(row))
                    for tile in reader.tiles_of(z_x, z_y, plan.z_window):
                        reader.want(*tile)
                    asked += 1
                pixels = np.empty((end - start, plan.z_window, plan.z_window, 3), np.uint8)
                for i in range(start, end):
                    col, row = plan.cells[i]
                    z_x, z_y = plan.z_origin(int(col), int(row))
                    pixels[i - start] = reader.window(z_x, z_y, plan.z_window)
                while not stop.is_set():
                    try:
                        out.put(Batch(plan.cells[start:end], pixels), timeout=0.5)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            out.put(None)
        except BaseException as exc:
            out.put(exc)

    thread = threading.Thread(target=produce, name="batches", daemon=True)
    thread.start()
    try:
        while True:
            item = out.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()


@dataclass
class Device:
    """Where the model runs, and how."""

    device: torch.device
    autocast: bool = field(default=False)
    channels_last: bool = field(default=False)

    @classmethod
    def named(cls, name: str) -> Device:
        device = torch.device(name)
        if device.type == "cuda":
            if not torch.cuda.is_available():
                raise JobFailure(f"device {name!r} asked for, but CUDA is not available here")
            return cls(device, autocast=True, channels_last=True)
        return cls(device)

    def describe(self) -> str:
        if self.device.type == "cuda":
            return torch.cuda.get_device_name(self.device)
        return f"cpu ({torch.get_num_threads()} threads)"


class Runner:
    """The model with its pre- and post-processing, on one device."""

    def __init__(self, model: torch.nn.Module, spec: ModelSpec, device: Device) -> None:
        self.model = model
        self.spec = spec
        self.device = device
        self.mean = torch.tensor(spec.mean, device=device.device).view(1, 3, 1, 1) * 255
        self.std = torch.tensor(spec.std, device=device.device).view(1, 3, 1, 1) * 255
        if device.channels_last and isinstance(model, torch.nn.Module):
            # A program that cannot change its layout runs as it is.
            with contextlib.suppress(RuntimeError, TypeError, NotImplementedError):
                model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]

    # Segmentation: each cell's share of the output map (its centre, `cell_fraction` of the
    # input's side) pooled to `sub` x `sub` values (set by `run` from the first output).
    cell_fraction: float = 1.0
    sub: int = 0

    def _cells_of(self, maps: torch.Tensor) -> torch.Tensor:
        h, w = maps.shape[-2:]
        if not self.sub:
            self.sub = max(1, round(h * self.cell_fraction))
        ch = max(1, round(h * self.cell_fraction))
        cw = max(1, round(w * self.cell_fraction))
        y0, x0 = (h - ch) // 2, (w - cw) // 2
        centre = maps[:, :, y0 : y0 + ch, x0 : x0 + cw]
        return F.adaptive_avg_pool2d(centre, (self.sub, self.sub))

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        """Class probabilities for n uint8 windows: (n, classes) for a patch classifier,
        (n, classes, sub, sub) for a segmentation model (the cell's part of its map)."""
        d = self.device
        host = torch.from_numpy(pixels)
        if d.device.type == "cuda":
            host = host.pin_memory()
        with torch.inference_mode():
            x = host.to(d.device, non_blocking=True).permute(0, 3, 1, 2).float()
            size = self.spec.input_size
            if x.shape[-1] != size:
                x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True)
            x = (x - self.mean) / self.std
            if d.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            try:
                with torch.autocast(d.device.type, dtype=torch.bfloat16, enabled=d.autocast):
                    out = self.model(x)
            except Exception as exc:
                raise JobFailure(
                    f"the model failed on a batch of {len(pixels)} {size}x{size} patches: "
                    f"{type(exc).__name__}: {str(exc)[:300]}"
                ) from None
            if isinstance(out, tuple | list):
                out = out[0]
            if not isinstance(out, torch.Tensor):
                raise JobFailure(f"the model returned {type(out).__name__}, not a tensor")
            out = out.float()
            task, classes = self.spec.task, len(self.spec.classes)
            wanted, form = {
                "segmentation": (4, "(batch, classes, h, w)"),
                "detection": (3, "(batch, detections, 3 + classes): x, y, radius, scores"),
            }.get(task, (2, "(batch, classes)"))
            if out.ndim != wanted or out.shape[0] != len(pixels):
                raise JobFailure(f"a {task} model answers {form}; this one {tuple(out.shape)}")
            given = out.shape[2] - 3 if task == "detection" else out.shape[1]
            if given != classes:
                raise JobFailure(
                    f"the model outputs {given} values per patch, its manifest names "
                    f"{classes} classes"
                )
            scores = out[..., 3:] if task == "detection" else out
            axis = -1 if task == "detection" else 1
            if self.spec.output == "softmax":
                scores = torch.softmax(scores, dim=axis)
            elif self.spec.output == "sigmoid":
                scores = torch.sigmoid(scores)
            out = torch.cat([out[..., :3], scores], dim=-1) if task == "detection" else scores
            if task == "segmentation":
                out = self._cells_of(out)
            probs = out.cpu().numpy()
        bad = ~np.isfinite(probs.reshape(len(probs), -1)).all(axis=1)
        if bad.any():
            raise JobFailure(
                f"the model produced NaN or infinite outputs for {int(bad.sum())} patches"
            )
        scored = probs[..., 3:] if self.spec.task == "detection" else probs
        if self.spec.output == "probabilities" and ((scored < -1e-4) | (scored > 1 + 1e-4)).any():
            raise JobFailure(
                "the manifest says the outputs are probabilities, but some lie outside [0, 1]"
            )
        if self.spec.task == "detection":
            probs[..., 3:] = np.clip(probs[..., 3:], 0.0, 1.0)
            return probs.astype(np.float32)
        clipped: np.ndarray = np.clip(probs, 0.0, 1.0).astype(np.float32)
        return clipped


@dataclass
class Result:
    probabilities: np.ndarray  # (rows, cols, classes), NaN where not run
    tissue: np.ndarray | None  # the mask, at the thumbnail's resolution
    plan: Plan
    seconds: dict[str, float]
    tiles_fetched: int
    read_s: float


def tissue_of(
    thumbnail: bytes, slide: SlideSpec, pyramid: Pyramid
) -> tuple[np.ndarray, float | None]:
    """The tissue mask of the slide's thumbnail, and its µm per pixel."""
    pixels = decode_jpeg(thumbnail)
    mpp = None
    if slide.mpp:
        mpp = slide.mpp * pyramid.width / pixels.shape[1]
    return tissue_mask(pixels, mpp=mpp), mpp


def run(
    runner: Runner,
    plan: Plan,
    reader: TileReader,
    *,
    progress: Callable[[int, int], None],
    should_stop: Callable[[], None],
) -> np.ndarray:
    """Runs every cell of the plan: the (rows, cols, classes) probabilities, NaN elsewhere
    — for a segmentation model (rows x sub, cols x sub, classes), `sub` values a cell side."""
    spec = runner.spec
    classes = len(spec.classes)
    if spec.task == "segmentation":
        # The cell's side as a fraction of the model's input side (patch and margins).
        runner.cell_fraction = plan.l0_cell_w / (plan.l0_patch + 2 * plan.l0_margin)
        runner.sub = 0  # at most 4096 heatmap values a side: the overlay stays a few MB
    probs: np.ndarray | None = None
    done = 0
    progress(0, plan.count)
    for batch in batches(plan, reader, spec.batch_size):
        should_stop()
        if spec.task == "segmentation" and not runner.sub:
            # Never finer than the slide itself (the hub refuses that).
            finest = int(min(plan.l0_cell_w, plan.l0_cell_h))
            limit = max(1, min(4096 // max(plan.rows, plan.cols), finest))
            runner(batch.pixels[:1])  # sets sub from the output's size
            runner.sub = min(runner.sub, limit)
        out = runner(batch.pixels)
        if probs is None:
            sub = out.shape[-1] if out.ndim == 4 else 1
            probs = np.full((plan.rows * sub, plan.cols * sub, classes), np.nan, np.float32)
        if out.ndim == 4:
            sub = out.shape[-1]
            blocks = out.transpose(0, 2, 3, 1)  # (n, sub, sub, classes)
            for (col, row), block in zip(batch.cells, blocks, strict=True):
                probs[row * sub : (row + 1) * sub, col * sub : (col + 1) * sub] = block
        else:
            probs[batch.cells[:, 1], batch.cells[:, 0]] = out
        done += len(batch.cells)
        progress(done, plan.count)
    if probs is None:  # no cell to run (no tissue): nothing but NaN
        probs = np.full((plan.rows, plan.cols, classes), np.nan, np.float32)
    return probs


def _tissue_mm2(
    plan: Plan, mpp: float | None, tissue: np.ndarray, region: Region | None
) -> float | None:
    """The tissue area under the mask, in the region if any."""
    if not mpp:
        return None
    h, w = tissue.shape
    l0_w, l0_h = plan.cols * plan.l0_cell_w, plan.rows * plan.l0_cell_h
    pixel_mm2 = (l0_w / w) * (l0_h / h) * mpp * mpp / 1e6
    inside = tissue
    if region is not None:
        sx, sy = w / l0_w, h / l0_h
        x0, y0 = int(region.x * sx), int(region.y * sy)
        x1 = math.ceil((region.x + region.width) * sx)
        y1 = math.ceil((region.y + region.height) * sy)
        inside = tissue[y0:y1, x0:x1]
    area: float = float(inside.sum()) * pixel_mm2
    return area


def detection_summary(
    rows: np.ndarray,
    plan: Plan,
    spec: ModelSpec,
    mpp: float | None,
    tissue: np.ndarray,
    region: Region | None,
) -> dict[str, object]:
    """Counts per class, and per mm² of tissue."""
    tissue_mm2 = _tissue_mm2(plan, mpp, tissue, region)
    classes = {}
    for index, cls in enumerate(spec.classes):
        count = int((rows[:, 3] == index).sum())
        per_mm2 = round(count / tissue_mm2, 2) if tissue_mm2 else None
        classes[cls.name] = {"count": count, "per_mm2": per_mm2}
    return {
        "patches": plan.count,
        "detections": len(rows),
        "tissue_area_mm2": round(tissue_mm2, 4) if tissue_mm2 is not None else None,
        "classes": classes,
    }


def class_summary(
    probs: np.ndarray,
    plan: Plan,
    spec: ModelSpec,
    mpp: float | None,
    tissue: np.ndarray,
    region: Region | None,
) -> dict[str, object]:
    """Figures a pathologist reads beside the heatmap: the tissue area (in the region, if
    any) and, per class, the tissue area where it wins and the patches it won. Areas count
    each cell's tissue only (its fraction under the mask), so they add up to at most the
    tissue area; for a segmentation, per heatmap value (a part of a cell)."""
    ran = np.isfinite(probs[..., 0])
    winners = np.argmax(np.nan_to_num(probs, nan=-1.0), axis=-1)
    sub = probs.shape[0] // plan.rows
    fraction = cell_fraction(tissue, plan.rows, plan.cols)
    if sub > 1:
        fraction = np.repeat(np.repeat(fraction, sub, axis=0), sub, axis=1)
    cell_mm2 = (plan.l0_cell_w * plan.l0_cell_h * mpp * mpp / 1e6 / sub**2) if mpp else None
    classes = {}
    for index, cls in enumerate(spec.classes):
        won = (winners == index) & ran
        area = float(fraction[won].sum()) * cell_mm2 if cell_mm2 is not None else None
        classes[cls.name] = {
            "patches": int(won.sum()) // sub**2 if sub > 1 else int(won.sum()),
            "area_mm2": round(area, 4) if area is not None else None,
        }
    tissue_mm2 = _tissue_mm2(plan, mpp, tissue, region)
    return {
        "patches": int(ran.sum()) // sub**2,
        "tissue_area_mm2": round(tissue_mm2, 4) if tissue_mm2 is not None else None,
        "classes": classes,
    }


def run_detection(
    runner: Runner,
    plan: Plan,
    reader: TileReader,
    *,
    thresholds: dict[str, float],
    progress: Callable[[int, int], None],
    should_stop: Callable[[], None],
) -> tuple[np.ndarray, np.ndarray]:
    """Runs a detector over the plan: its detections as (n, 5) level-0 rows x, y, radius,
    class, score (each kept by the cell its centre lies in, so overlapping windows count
    it once; below its class's threshold, default 0.5, dropped), and the count per cell."""
    spec = runner.spec
    names = [c.name for c in spec.classes]
    floor = np.array([thresholds.get(n, 0.5) for n in names], np.float32)
    scale = plan.z_window / spec.input_size * plan.z_downsample  # l0 px per input px
    found: list[np.ndarray] = []
    counts = np.full((plan.rows, plan.cols), np.nan, np.float32)
    done = 0
    progress(0, plan.count)
    for batch in batches(plan, reader, spec.batch_size):
        should_stop()
        out = runner(batch.pixels)  # (n, k, 3 + classes)
        for (col, row), rows in zip(batch.cells, out, strict=True):
            z_x, z_y = plan.z_origin(int(col), int(row))
            x = (z_x + rows[:, 0] * plan.z_window / spec.input_size) * plan.z_downsample
            y = (z_y + rows[:, 1] * plan.z_window / spec.input_size) * plan.z_downsample
            cls = rows[:, 3:].argmax(axis=1)
            score = rows[np.arange(len(rows)), 3 + cls]
            cx0, cy0 = col * plan.l0_cell_w, row * plan.l0_cell_h
            keep = (
                (score >= floor[cls])
                & (x >= cx0) & (x < cx0 + plan.l0_cell_w)
                & (y >= cy0) & (y < cy0 + plan.l0_cell_h)
            )  # fmt: skip
            kept = np.stack([x, y, rows[:, 2] * scale, cls, score], axis=1)[keep]
            counts[row, col] = len(kept)
            found.append(kept.astype(np.float32))
        done += len(batch.cells)
        progress(done, plan.count)
    rows = np.concatenate(found) if found else np.zeros((0, 5), np.float32)
    return rows, counts
