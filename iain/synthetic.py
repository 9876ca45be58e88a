"""Synthetic H&E-like (or IHC-like) slides from lazy libvips noise generators: for the demo on
machines without sample slides, for tests, and for benchmarks (bench/make_slide.py).

The image streams through `tiffsave` one strip of tiles at a time: memory does not grow with
the slide height (~250 MB for a 60000 px wide slide).

`write_labelled_svs` writes a small Aperio-like SVS instead (in memory, a few thousand pixels
a side): a JPEG-tiled pyramid, a thumbnail, and the label and macro images a scanner
photographs, the label printed with text and a barcode (zxing-cpp) that ingest reads."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyvips
import tifffile
import zxingcpp
from PIL import Image, ImageDraw, ImageFont

MPP = 0.25  # microns per pixel, a typical 40x scan
TILE = 256

# sRGB colours of a typical H&E stain.
BACKGROUND = (243.0, 242.0, 240.0)
STROMA_LIGHT = (240.0, 190.0, 215.0)
STROMA_DARK = (205.0, 105.0, 160.0)
NUCLEUS_LIGHT = (140.0, 100.0, 175.0)
NUCLEUS_DARK = (50.0, 25.0, 95.0)

# IHC: a pale haematoxylin counterstain (blue nuclei) and DAB (brown) where the antibody binds.
IHC_STROMA_LIGHT = (236.0, 234.0, 238.0)
IHC_STROMA_DARK = (196.0, 196.0, 214.0)
IHC_NUCLEUS_LIGHT = (150.0, 160.0, 205.0)
IHC_NUCLEUS_DARK = (45.0, 55.0, 120.0)
DAB_LIGHT = (205.0, 160.0, 110.0)
DAB_DARK = (115.0, 65.0, 30.0)
# A positive nucleus (a nuclear antigen, Ki-67 or ER): brown over the blue.
DAB_NUCLEUS_LIGHT = (150.0, 95.0, 60.0)
DAB_NUCLEUS_DARK = (80.0, 45.0, 35.0)

Stain = Literal["he", "ihc"]

# Low-frequency fields are computed at 1/LOWRES scale and upsampled: a fraction of the cost
# and no visible difference, since they only change over hundreds of pixels or more.
LOWRES = 32
# Nuclei are computed at 1/2 scale: Worley noise is the most expensive generator by far.
NUC_SCALE = 2
# Pixel-scale grain, in units of the stroma/chromatin fields (0..1).
GRAIN_CELL = 2
GRAIN_AMP = 0.35


def _perlin(width: int, height: int, cell: int, seed: int) -> pyvips.Image:
    # vips perlin is roughly in [-0.7, 0.7] with mean 0.
    return pyvips.Image.perlin(width, height, cell_size=max(2, cell), seed=seed)


def _perlin_rot(width: int, height: int, cell: int, seed: int) -> pyvips.Image:
    """Perlin noise rotated by a seed-dependent angle: thresholded plain vips perlin shows
    its lattice (blobs lined up along rows and columns)."""
    angle = 17.0 + (seed * 37) % 60
    side = math.ceil(math.hypot(width, height)) + 4
    img = _perlin(side, side, cell, seed).similarity(angle=angle)
    return img.crop((img.width - width) // 2, (img.height - height) // 2, width, height)


def _upsample(img: pyvips.Image, factor: int, width: int, height: int) -> pyvips.Image:
    """Upsample a small smooth field by `factor` and crop to exactly width x height."""
    # Cubic for the first 4x (bilinear alone leaves grid-aligned ridges that show once the
    # field is thresholded), then bilinear: the full-resolution pass is the costly one.
    big = (
        img.resize(4, kernel="cubic").resize(factor / 4, kernel="linear")
        if factor > 4
        else (img.resize(factor, kernel="linear"))
    )
    return big.crop(0, 0, min(width, big.width), min(height, big.height)).embed(
        0, 0, width, height, extend="copy"
    )


# Band order of the low-resolution fields.
TISSUE, HOLES, CELLS, STAIN, LIGHT = range(5)


def _low_fields(width: int, height: int, seed: int) -> tuple[pyvips.Image, float]:
    """Tissue shape, holes, cellularity, stain and illumination at 1/LOWRES scale, as the
    bands of one in-memory image (one upsample pass instead of five), and the scale of the
    tissue envelope relative to the --small preset."""
    lw, lh = math.ceil(width / LOWRES), math.ceil(height / LOWRES)
    base = max(8, min(lw, lh) // 3)
    rel = base / 64

    # Tissue: fractal noise biased towards the slide centre, like a section on a glass slide.
    # Octaves go from the slide's scale down to a fixed ~200 px, whatever the slide size.
    frac = _perlin_rot(lw, lh, base, seed + 1)
    cell, amp, octave = base // 3, 0.5, 2
    while cell >= 6:
        frac = frac + _perlin_rot(lw, lh, cell, seed + octave) * amp
        cell, amp, octave = cell // 3, amp / 2, octave + 1
    xy = pyvips.Image.xyz(lw, lh)
    nx = (xy[0] - lw / 2) / (lw / 2)
    ny = (xy[1] - lh / 2) / (lh / 2)
    r2 = nx * nx + ny * ny
    # The r^4 term keeps the section off the slide's borders.
    tissue = frac + 0.65 - r2 * 0.8 - r2 * r2 * 0.8

    # Holes (vessels, fat, tears) of a fixed physical size (~50-300 um), denser in places.
    holes = (
        _perlin_rot(lw, lh, 12, seed + 20)
        + _perlin_rot(lw, lh, 4, seed + 21) * 0.35
        + _perlin_rot(lw, lh, max(4, base // 3), seed + 26) * 0.3
    )

    # Cellularity: packed and sparse regions, both local and across the section.
    cells = (
        _perlin_rot(lw, lh, 16, seed + 22)
        + _perlin_rot(lw, lh, max(4, base // 4), seed + 23) * 0.6
        + 0.5
    ).clamp(min=0, max=1)

    # Stain intensity drifts across the section.
    stain = _perlin_rot(lw, lh, max(4, base // 2), seed + 24) * 0.12 + 1.0

    # Uneven illumination of the glass.
    light = _perlin_rot(lw, lh, 6, seed + 25) * 4.0

    return tissue.bandjoin([holes, cells, stain, light]).copy_memory(), rel


def _colour(field: pyvips.Image, at0: tuple[float, ...], at1: tuple[float, ...]) -> pyvips.Image:
    """Map a 1-band field in [0, 1] linearly onto the colours at0..at1, as uchar RGB."""
    return field.linear([b - a for a, b in zip(at0, at1, strict=True)], list(at0), uchar=True)


def build(width: int, height: int, seed: int, stain: Stain = "he") -> pyvips.Image:
    """Return the lazy uchar sRGB image of the whole synthetic slide, H&E or IHC-stained
    (the same section either way: only the colours and the DAB patches differ).

    libvips computes tiffsave's input in full-width strips, so every intermediate image costs
    a buffer proportional to the slide width: colour work is done in uchar and blends use
    one `ifthenelse` instead of float arithmetic on three bands, to keep memory low.
    """
    ihc = stain == "ihc"
    fields, rel = _low_fields(width, height, seed)
    low = _upsample(fields, LOWRES, width, height)

    # Tissue mask: upsampled coarse field + fine noise for ragged edges, then a steep ramp.
    # The coarse field flattens as the slide grows, so the ramp steepens by `rel` to keep
    # edges about 30 px wide at any slide size.
    ragged = _perlin(width, height, 48, seed + 30)
    tissue_mask = (low[TISSUE] * (40 * rel) + ragged * 4.8).clamp(min=0, max=1)
    hole_mask = ((low[HOLES] + ragged * 0.1 - 0.32) * 30).clamp(min=0, max=1)
    mask = (tissue_mask * (1 - hole_mask)).linear(255, 0, uchar=True)

    # Stain intensity drift and fine grain (fibres, sensor noise, so that tiles are not
    # unrealistically smooth), applied to the 1-band fields before colouring.
    drift = low[STAIN]
    grain = _perlin(width, height, GRAIN_CELL, seed + 36) * GRAIN_AMP

    # Stroma: pink texture at two scales.
    texture = (
        _perlin(width, height, 40, seed + 31) * 0.7
        + _perlin(width, height, 9, seed + 32) * 0.45
        + grain
        + drift * 2.0
        - 1.55
    ).clamp(min=0, max=1)
    stroma = _colour(
        texture, *((IHC_STROMA_LIGHT, IHC_STROMA_DARK) if ihc else (STROMA_LIGHT, STROMA_DARK))
    )

    # Nuclei: Worley cells (distance to the nearest seed point) below a radius that depends on
    # the local cellularity, with a noisy boundary so they are not perfect discs. Worley is
    # the costliest generator, so the distance field is made at half scale and upsampled.
    nw, nh = math.ceil(width / NUC_SCALE), math.ceil(height / NUC_SCALE)
    dist_half = (
        pyvips.Image.worley(nw, nh, cell_size=22, seed=seed + 33)
        + _perlin(nw, nh, 5, seed + 34) * 4.0
    )
    dist = _upsample(dist_half, NUC_SCALE, width, height) * NUC_SCALE
    nuclei = ((low[CELLS] * 14.0 - dist) * 0.4).clamp(min=0, max=1).linear(255, 0, uchar=True)
    # Chromatin: darker and lighter nuclei.
    chroma = (_perlin(width, height, 14, seed + 35) * 0.5 + grain * 0.5 + drift - 0.5).clamp(
        min=0, max=1
    )
    nucleus = _colour(
        chroma,
        *((IHC_NUCLEUS_LIGHT, IHC_NUCLEUS_DARK) if ihc else (NUCLEUS_LIGHT, NUCLEUS_DARK)),
    )

    tissue = nuclei.ifthenelse(nucleus, stroma, blend=True)
    if ihc:
        # DAB: positive cells in patches (a tumour's expressing areas), brown nuclei in a
        # rim of brown cytoplasm, the pale stroma between cells untouched.
        lw, lh = math.ceil(width / LOWRES), math.ceil(height / LOWRES)
        patches = _perlin_rot(lw, lh, max(4, min(lw, lh) // 5), seed + 40)
        positive = ((_upsample(patches, LOWRES, width, height) - 0.05) * 6 + ragged * 0.3).clamp(
            min=0, max=1
        )
        cytoplasm = ((low[CELLS] * 24.0 - dist) * 0.2).clamp(min=0, max=1)
        dab = (positive * cytoplasm).linear(255, 0, uchar=True)
        brown = nuclei.ifthenelse(
            _colour(chroma, DAB_NUCLEUS_LIGHT, DAB_NUCLEUS_DARK),
            _colour(texture, DAB_LIGHT, DAB_DARK),
            blend=True,
        )
        tissue = dab.ifthenelse(brown, tissue, blend=True)

    # Background: near-white glass with a faint uneven illumination.
    bg = low[LIGHT].linear([1.0] * 3, list(BACKGROUND), uchar=True)

    return mask.ifthenelse(tissue, bg, blend=True).copy(interpretation="srgb")


def write_synthetic_slide(
    path: Path,
    width: int,
    height: int,
    *,
    seed: int = 0,
    quality: int = 80,
    progress: Callable[[int], None] | None = None,
) -> None:
    """Writes a pyramidal tiled BigTIFF (256x256 JPEG tiles, every 2x level, 0.25 um/px)
    via a temporary file, so an interrupted run never leaves a truncated slide.
    `progress` is called with the percentage done as libvips evaluates the image."""
    image = build(width, height, seed)
    _save_pyramid(image, path, tile=TILE, mpp=MPP, quality=quality, progress=progress)


def _save_pyramid(
    image: pyvips.Image,
    path: Path,
    *,
    tile: int,
    mpp: float,
    quality: int,
    progress: Callable[[int], None] | None = None,
) -> None:
    """Saves a pyramidal tiled BigTIFF of JPEG tiles, every 2x level, via a temporary file."""
    if progress is not None:
        image.set_progress(True)
        image.signal_connect("eval", lambda _img, prog: progress(int(prog.percent)))
    tmp = path.with_name(path.name + ".part")
    px_per_mm = 1000.0 / mpp
    try:
        image.tiffsave(
            str(tmp),
            tile=True,
            pyramid=True,
            compression="jpeg",
            Q=quality,
            tile_width=tile,
            tile_height=tile,
            bigtiff=True,
            resunit="cm",
            xres=px_per_mm,
            yres=px_per_mm,
        )
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


# -- A slide with known tumour and stroma regions ----------------------------------------------
#
# For an end-to-end test of a patch classifier: train on some regions of a class, check the
# heatmap on others. The layout (tissue pieces, tumour blobs, pen strokes) is made at
# 1/REGION_SCALE scale, as signed distances to each region's edge: thresholded at the label
# pixels' centres they give the truth, upsampled they give the image's edges, so the two
# agree. Region shapes scale with the slide; textures are in µm, so they look the same at
# any mpp: tumour is crowded, large, dark-purple nuclei on a purplish background; stroma, pink
# fibres with sparse small elongated nuclei.

REGION_SCALE = 32  # level-0 pixels per pixel of a RegionTruth's label map


class Region(IntEnum):
    """The classes of a regions slide's label map."""

    GLASS = 0
    STROMA = 1
    TUMOUR = 2
    PEN = 3


Part = Literal["train", "test"]

TUMOUR_LIGHT = (214.0, 160.0, 212.0)
TUMOUR_DARK = (168.0, 108.0, 182.0)
TUMOUR_NUCLEUS_LIGHT = (104.0, 62.0, 148.0)
TUMOUR_NUCLEUS_DARK = (50.0, 22.0, 92.0)
FIBROBLAST_LIGHT = (135.0, 80.0, 160.0)
FIBROBLAST_DARK = (85.0, 45.0, 120.0)
# Pen inks, as the fraction of light each channel lets through: blue, green.
INKS = ((0.22, 0.40, 0.78), (0.25, 0.60, 0.38))

# Texture sizes, in µm.
TUMOUR_NUCLEUS_SPACING_UM = 11.0
TUMOUR_NUCLEUS_RADIUS_UM = 3.3
FIBRE_UM = 2.5  # across the fibres; FIBRE_STRETCH times that along them
FIBRE_STRETCH = 3
STROMA_NUCLEUS_SPACING_UM = 26.0  # across the fibres
STROMA_NUCLEUS_RADIUS_UM = 1.5  # across the fibres: nuclei are 3 x 9 µm
EDGE_UM = 3.0  # the width of a region's edge
RAGGED_UM = 4.0  # how far edges wander from the layout's smooth outline

# Tissue covers this fraction of the slide, tumour this fraction of the tissue.
TISSUE_FRACTION = (0.42, 0.55)
TUMOUR_FRACTION = (0.4, 0.55)
SIDE_UM = 128.0  # the default side of region_polygons' squares


@dataclass(frozen=True, eq=False)
class RegionTruth:
    """What a regions slide shows: its level-0 size, µm per pixel, and a label map of Region
    values (uint8, read-only), one per `scale` x `scale` block of level-0 pixels: that of the
    block's centre. `seed` is the slide's: region_polygons picks its squares with it."""

    width: int
    height: int
    mpp: float
    labels: np.ndarray
    scale: int
    seed: int

    def label_at(self, x0: float, y0: float) -> int:
        """The label at level-0 coordinates (x0, y0), inside the slide."""
        if not (0 <= x0 < self.width and 0 <= y0 < self.height):
            raise ValueError(f"({x0}, {y0}) is outside the {self.width} x {self.height} slide")
        return int(self.labels[int(y0 // self.scale), int(x0 // self.scale)])

    def region_polygons(
        self,
        label: int,
        max_count: int,
        *,
        part: Part = "train",
        side_um: float = SIDE_UM,
    ) -> list[list[tuple[float, float]]]:
        """Up to `max_count` squares about `side_um` a side, in level-0 coordinates, inside
        `label` with a label pixel to spare: annotations of that class. The squares of the
        "train" and "test" parts never overlap nor touch; each part's list for a larger
        max_count starts with that for a smaller one. A polygon is its four corners,
        clockwise on screen from the top left, not closed."""
        if label not in tuple(Region):
            raise ValueError(f"label {label} is not one of {[int(r) for r in Region]}")
        if max_count < 0:
            raise ValueError(f"max_count must be >= 0, not {max_count}")
        if part not in ("train", "test"):
            raise ValueError(f"part {part!r} is not 'train' or 'test'")
        if not side_um > 0:
            raise ValueError(f"side_um must be > 0, not {side_um}")
        side = max(1, math.ceil(side_um / (self.mpp * self.scale)))
        squares = self._squares(label, side)
        chosen = squares[0::2] if part == "train" else squares[1::2]
        polygons = []
        for row, col in chosen[:max_count]:
            x0, y0 = float(col * self.scale), float(row * self.scale)
            x1, y1 = float((col + side) * self.scale), float((row + side) * self.scale)
            polygons.append([(x0, y0), (x1, y0), (x1, y1), (x0, y1)])
        return polygons

    def _squares(self, label: int, side: int) -> list[tuple[int, int]]:
        """Top-left label pixels of side x side squares inside `label` (and the slide), a
        pixel apart, packed greedily in raster order (trying every side/4 pixels), then
        shuffled with the seed."""
        inside = self.labels == label
        inside[self.height // self.scale :] = False  # blocks cut by the slide's edge
        inside[:, self.width // self.scale :] = False
        interior = ~_dilate3(~inside, outside=True)
        rows, cols = interior.shape
        if rows < side or cols < side:
            return []
        table = np.zeros((rows + 1, cols + 1), np.int64)
        table[1:, 1:] = interior.cumsum(0).cumsum(1)
        sums = table[side:, side:] - table[:-side, side:] - table[side:, :-side]
        fits = sums + table[:-side, :-side] == side * side
        step = max(1, side // 4)
        taken = np.zeros((rows, cols), bool)
        squares: list[tuple[int, int]] = []
        for row, col in (np.argwhere(fits[::step, ::step]) * step).tolist():
            if not taken[max(0, row - 1) : row + side + 1, max(0, col - 1) : col + side + 1].any():
                taken[row : row + side, col : col + side] = True
                squares.append((row, col))
        order = np.random.default_rng([self.seed, label, side]).permutation(len(squares))
        return [squares[k] for k in order]


def truth_of(width: int, height: int, *, seed: int, mpp: float = MPP) -> RegionTruth:
    """The truth of write_tissue_regions_slide(path, width, height, seed=seed, mpp=mpp),
    recomputed without the slide (milliseconds: it is all at 1/REGION_SCALE scale)."""
    _check_size(width, height, mpp)
    return _truth(_layout(width, height, seed), width, height, seed, mpp)


def write_tissue_regions_slide(
    path: Path,
    width: int,
    height: int,
    *,
    seed: int,
    tile: int = TILE,
    mpp: float = MPP,
    quality: int = 80,
) -> RegionTruth:
    """Writes a synthetic H&E slide with known regions, as write_synthetic_slide does (a
    pyramidal tiled JPEG BigTIFF), and returns its truth (truth_of gives it again): glass,
    a few tissue pieces over about half of it, tumour blobs inside the tissue, the rest
    stroma, and pen strokes, one or two on the glass (where they fit) and one across a tissue
    edge. Deterministic for a seed."""
    _check_size(width, height, mpp)
    layout = _layout(width, height, seed)
    image = _render_regions(layout, width, height, seed, mpp)
    _save_pyramid(image, path, tile=tile, mpp=mpp, quality=quality)
    return _truth(layout, width, height, seed, mpp)


def _check_size(width: int, height: int, mpp: float) -> None:
    if width < 1 or height < 1:
        raise ValueError(f"a slide is at least 1 x 1 pixel, not {width} x {height}")
    if not mpp > 0:
        raise ValueError(f"mpp must be > 0, not {mpp}")


@dataclass(frozen=True, eq=False)
class _Layout:
    """Signed distances (label pixels, > 0 inside) to the edges of the tissue, the tumour
    and each pen stroke at the label pixels' centres; each stroke's ink; the fibres' angle."""

    tissue: np.ndarray
    tumour: np.ndarray
    pens: tuple[np.ndarray, ...]
    inks: tuple[tuple[float, float, float], ...]
    fibre_angle: float

    def labels(self) -> np.ndarray:
        tissue = self.tissue > 0
        labels = np.where(tissue, np.uint8(Region.STROMA), np.uint8(Region.GLASS))
        labels[tissue & (self.tumour > 0)] = Region.TUMOUR
        for pen in self.pens:
            labels[pen > 0] = Region.PEN
        return labels


def _truth(layout: _Layout, width: int, height: int, seed: int, mpp: float) -> RegionTruth:
    labels = layout.labels()
    labels.setflags(write=False)
    return RegionTruth(width, height, mpp, labels, REGION_SCALE, seed)


def _low_noise(lw: int, lh: int, cell: int, seed: int) -> np.ndarray:
    noise: np.ndarray = _perlin_rot(lw, lh, cell, seed).numpy()
    return noise.astype(np.float64).reshape(lh, lw)


def _layout(width: int, height: int, seed: int) -> _Layout:
    lw, lh = math.ceil(width / REGION_SCALE), math.ceil(height / REGION_SCALE)
    rng = np.random.default_rng(seed)
    unit = min(lw, lh)
    ys, xs = np.mgrid[0:lh, 0:lw] + 0.5

    # Tissue: a few irregular elliptic pieces, ragged by fractal noise, kept off the borders,
    # thresholded to cover the fraction wanted.
    field = np.full((lh, lw), -1.0)
    centres: list[tuple[float, float]] = []
    for _ in range(int(rng.integers(2, 5))):
        for _try in range(50):
            cx, cy = rng.uniform(0.2, 0.8) * lw, rng.uniform(0.2, 0.8) * lh
            if all(math.hypot(cx - x, cy - y) > 0.35 * unit for x, y in centres):
                break
        centres.append((cx, cy))
        radius = rng.uniform(0.22, 0.35) * unit
        angle, ratio = rng.uniform(0, math.pi), rng.uniform(0.55, 1.0)
        u = (xs - cx) * math.cos(angle) + (ys - cy) * math.sin(angle)
        v = ((ys - cy) * math.cos(angle) - (xs - cx) * math.sin(angle)) / ratio
        theta = np.arctan2(v, u)
        wobble = (
            1
            + 0.18 * np.sin(3 * theta + rng.uniform(0, 6.3))
            + 0.1 * np.sin(5 * theta + rng.uniform(0, 6.3))
        )
        field = np.maximum(field, 1 - np.hypot(u, v) / (radius * wobble))
    field += _low_noise(lw, lh, max(4, unit // 4), seed + 51) * 0.5
    field += _low_noise(lw, lh, max(3, unit // 10), seed + 52) * 0.25
    border = np.minimum(np.minimum(xs, lw - xs), np.minimum(ys, lh - ys)) / unit
    field -= np.clip((0.15 - border) / 0.15, 0, 1) ** 2 * 1.5
    field -= np.quantile(field, 1 - rng.uniform(*TISSUE_FRACTION))
    tissue = _signed_distance(field)

    # Tumour: blobs of low-frequency noise, thresholded inside the tissue.
    blobs = _low_noise(lw, lh, max(4, unit // 3), seed + 53)
    blobs += _low_noise(lw, lh, max(3, unit // 9), seed + 54) * 0.15
    inside = blobs[tissue > 0]
    if inside.size:
        blobs -= np.quantile(inside, 1 - rng.uniform(*TUMOUR_FRACTION))
    else:
        blobs[:] = -1.0
    tumour = _signed_distance(blobs)

    # Pen: thick curved strokes, one or two on the glass, one across a tissue edge.
    half = max(2.0, 0.022 * unit)
    length = rng.uniform(0.3, 0.5) * unit
    pens: list[np.ndarray] = []
    glass = tissue <= 0
    near_tissue = ~glass
    for _ in range(math.ceil(half) + 2):
        near_tissue = _dilate3(near_tissue, outside=False)
    near_pens = np.zeros_like(glass)
    for _ in range(int(rng.integers(1, 3))):
        clear = ~near_tissue & ~near_pens

        def on_glass(p: tuple[np.ndarray, np.ndarray], clear: np.ndarray = clear) -> bool:
            return bool(clear[p].all())

        stroke = _find_stroke(rng, (lh, lw), length, half, on_glass)
        if stroke is not None:
            pens.append(_stroke_distance(stroke, (lh, lw), half))
            near_pens |= pens[-1] > -min(7.5, 2 * half)
    edge = np.argwhere((tissue > 0) & _dilate3(glass, outside=False))
    if edge.size:

        def crosses(p: tuple[np.ndarray, np.ndarray]) -> bool:
            on_tissue = float((tissue[p] > 0).mean())
            return 0.3 <= on_tissue <= 0.7 and not near_pens[p].any()

        stroke = _find_stroke(rng, (lh, lw), length, half, crosses, through=edge)
        if stroke is not None:
            pens.append(_stroke_distance(stroke, (lh, lw), half))
    inks = tuple(INKS[int(rng.integers(0, len(INKS)))] for _ in pens)
    return _Layout(tissue, tumour, tuple(pens), inks, float(rng.uniform(0, 180)))


def _signed_distance(field: np.ndarray) -> np.ndarray:
    """A field's first-order distance to its zero level (f / |grad f|), in pixels, within
    +-8: enough for edges of a few pixels once upsampled."""
    if min(field.shape) < 2:
        slope = np.ones_like(field) / 64
    else:
        gy, gx = np.gradient(field)
        slope = np.hypot(gx, gy)
    distance: np.ndarray = np.clip(field / np.maximum(slope, 1e-4), -8, 8)
    return distance


def _dilate3(mask: np.ndarray, *, outside: bool) -> np.ndarray:
    """Dilation by a 3 x 3 square, pixels outside the mask counting as `outside`."""
    padded = np.pad(mask, 1, constant_values=outside)
    rows = padded[:-2] | padded[1:-1] | padded[2:]
    out: np.ndarray = rows[:, :-2] | rows[:, 1:-1] | rows[:, 2:]
    return out


def _find_stroke(
    rng: np.random.Generator,
    shape: tuple[int, int],
    length: float,
    half: float,
    accept: Callable[[tuple[np.ndarray, np.ndarray]], bool],
    *,
    through: np.ndarray | None = None,
) -> np.ndarray | None:
    """The points (x, y; every half label pixel) of a quadratic Bézier stroke inside the
    slide that `accept` takes (given the label pixels it passes over), starting anywhere or
    centred on one of the `through` pixels (row, col); None when 300 tries find none."""
    lh, lw = shape
    for attempt in range(300):
        size = length * (1 - attempt / 400)
        angle = rng.uniform(0, 2 * math.pi)
        dx, dy = math.cos(angle) * size, math.sin(angle) * size
        bend = rng.uniform(-0.25, 0.25) * size
        if through is None:
            x0, y0 = rng.uniform(0, lw), rng.uniform(0, lh)
        else:
            row, col = through[int(rng.integers(0, len(through)))]
            x0, y0 = col + 0.5 - dx / 2, row + 0.5 - dy / 2
        t = np.linspace(0, 1, max(2, math.ceil(2 * size)))[:, None]
        start, end = np.array([x0, y0]), np.array([x0 + dx, y0 + dy])
        control = (start + end) / 2 + np.array([-dy, dx]) * (bend / size)
        points: np.ndarray = (1 - t) ** 2 * start + 2 * (1 - t) * t * control + t**2 * end
        margin = half + 1
        if (
            points[:, 0].min() < margin
            or points[:, 1].min() < margin
            or points[:, 0].max() > lw - margin
            or points[:, 1].max() > lh - margin
        ):
            continue
        cells = (points[:, 1].astype(int), points[:, 0].astype(int))
        if accept(cells):
            return points
    return None


def _stroke_distance(points: np.ndarray, shape: tuple[int, int], half: float) -> np.ndarray:
    """Signed distance (> 0 inside) to the edge of a stroke `half` pixels either side of
    its points, within +-8, at the label pixels' centres."""
    lh, lw = shape
    distance = np.full(shape, -8.0)
    reach = half + 9
    left, top = max(0, int(points[:, 0].min() - reach)), max(0, int(points[:, 1].min() - reach))
    right = min(lw, int(points[:, 0].max() + reach) + 1)
    bottom = min(lh, int(points[:, 1].max() + reach) + 1)
    ys, xs = np.mgrid[top:bottom, left:right] + 0.5
    nearest = np.full(xs.shape, np.inf)
    for x, y in points:
        nearest = np.minimum(nearest, np.hypot(xs - x, ys - y))
    distance[top:bottom, left:right] = np.clip(half - nearest, -8, 8)
    return distance


def _render_regions(
    layout: _Layout, width: int, height: int, seed: int, mpp: float
) -> pyvips.Image:
    """The lazy uchar sRGB image of a regions slide."""
    px = 1.0 / mpp  # pixels per µm
    lh, lw = layout.tissue.shape
    drift = _low_noise(lw, lh, max(4, min(lw, lh) // 2), seed + 55) * 0.15
    light = _low_noise(lw, lh, 6, seed + 56) * 4.0
    bands = np.dstack([layout.tissue, layout.tumour, drift, light, *layout.pens])
    low = (
        pyvips.Image.new_from_array(bands.astype(np.float32))
        .resize(REGION_SCALE, kernel="linear")
        .embed(0, 0, width, height, extend="copy")
    )
    tissue_d, tumour_d, drift_f, light_f = low[0], low[1], low[2], low[3]

    ragged = (
        _perlin(width, height, round(12 * px), seed + 60) * 0.75
        + _perlin(width, height, max(2, round(3 * px)), seed + 59) * 0.35
    ) * (RAGGED_UM * px / 0.7)
    edge = EDGE_UM * px

    def alpha(distance: pyvips.Image, wander: pyvips.Image) -> pyvips.Image:
        return ((distance * REGION_SCALE + wander) / edge + 0.5).clamp(min=0, max=1)

    grain = _perlin(width, height, GRAIN_CELL, seed + 61) * GRAIN_AMP
    mottle = _perlin(width, height, max(2, round(6 * px)), seed + 62)
    chromatin = (
        _perlin(width, height, max(2, round(1.5 * px)), seed + 63) * 0.5 + grain * 0.5 + 0.5
    ).clamp(min=0, max=1)

    # Stroma: fibres and fibroblast nuclei made at half scale in the fibres' frame
    # (FIBRE_STRETCH times longer along them), mapped onto the slide by one affine.
    stretch, angle = 2 * FIBRE_STRETCH, math.radians(layout.fibre_angle)
    cos, sin = math.cos(angle), math.sin(angle)
    sw = math.ceil((abs(cos) * width + abs(sin) * height) / stretch) + 4
    sh = math.ceil((abs(sin) * width + abs(cos) * height) / 2) + 4
    fibres = (
        _perlin(sw, sh, max(2, round(FIBRE_UM * px / 2)), seed + 64) * 0.8
        + _perlin(sw, sh, max(2, round(4 * FIBRE_UM * px / 2)), seed + 65) * 0.4
    )
    cell = max(2, round(STROMA_NUCLEUS_SPACING_UM * px / 2))
    spindle = pyvips.Image.worley(sw, sh, cell_size=cell, seed=seed + 66) + _perlin(
        sw, sh, cell, seed + 67
    ) * (STROMA_NUCLEUS_RADIUS_UM * px)
    matrix = [cos * stretch, -sin * 2, sin * stretch, cos * 2]
    frame = fibres.bandjoin(spindle).affine(
        matrix,
        interpolate=pyvips.Interpolate.new("bilinear"),
        oarea=[0, 0, width, height],
        odx=width / 2 - (matrix[0] * sw + matrix[1] * sh) / 2,
        ody=height / 2 - (matrix[2] * sw + matrix[3] * sh) / 2,
        extend="copy",
    )
    fibre_tex = (frame[0] * 0.55 + grain + mottle * 0.2 + drift_f * 2 + 0.4).clamp(min=0, max=1)
    stroma_bg = _colour(fibre_tex, STROMA_LIGHT, STROMA_DARK)
    fibroblasts = (
        ((STROMA_NUCLEUS_RADIUS_UM * px / 2 - frame[1]) * 2).clamp(min=0, max=1).linear(255, 0)
    ).cast("uchar")
    stroma = fibroblasts.ifthenelse(
        _colour(chromatin, FIBROBLAST_LIGHT, FIBROBLAST_DARK), stroma_bg, blend=True
    )

    # Tumour: crowded, pleomorphic nuclei (Worley cells at half scale, their radius varying
    # from cell to cell, their outline wobbling) on a mottled purplish cytoplasm.
    nw, nh = math.ceil(width / NUC_SCALE), math.ceil(height / NUC_SCALE)
    cell = max(2, round(TUMOUR_NUCLEUS_SPACING_UM * px / NUC_SCALE))
    radius = TUMOUR_NUCLEUS_RADIUS_UM * px / NUC_SCALE
    wobble = _perlin(nw, nh, max(2, round(2 * px / NUC_SCALE)), seed + 68) * (radius * 0.25)
    sizes = _perlin(nw, nh, cell, seed + 69) * (radius * 0.4) + radius
    nuclei_half = sizes - pyvips.Image.worley(nw, nh, cell_size=cell, seed=seed + 70) - wobble
    nuclei = (
        _upsample(nuclei_half.clamp(min=0, max=1), NUC_SCALE, width, height).linear(255, 0)
    ).cast("uchar")
    cytoplasm = (mottle * 0.6 + grain + drift_f * 2 + 0.45).clamp(min=0, max=1)
    tumour = nuclei.ifthenelse(
        _colour(chromatin, TUMOUR_NUCLEUS_LIGHT, TUMOUR_NUCLEUS_DARK),
        _colour(cytoplasm, TUMOUR_LIGHT, TUMOUR_DARK),
        blend=True,
    )

    tumour_a = (alpha(tumour_d, ragged * 0.7) * 255).cast("uchar")
    tissue_a = (alpha(tissue_d, ragged) * 255).cast("uchar")
    section = tumour_a.ifthenelse(tumour, stroma, blend=True)
    noise = pyvips.Image.gaussnoise(width, height, sigma=1.2, seed=seed + 71)
    glass = (light_f + noise).linear([1.0] * 3, list(BACKGROUND), uchar=True)
    image = tissue_a.ifthenelse(section, glass, blend=True)

    # Pen: ink over everything, a little uneven.
    density = _perlin(width, height, max(2, round(30 * px)), seed + 72) * 0.12 + 0.9
    for index, ink in enumerate(layout.inks):
        pen_a = ((alpha(low[4 + index], ragged * 0.3) * density).clamp(min=0, max=1) * 255).cast(
            "uchar"
        )
        image = pen_a.ifthenelse(image.linear(list(ink), [0.0] * 3, uchar=True), image, blend=True)
    return image.copy(interpretation="srgb")


# -- A labelled Aperio-like SVS ---------------------------------------------------------------

SVS_TILE = 240  # Aperio's usual tile size
SVS_MPP = 0.4990  # a 20x scan
SVS_MAG = 20
SVS_QUALITY = 85
LABEL_SIZE = (480, 360)  # width, height: a glass label photographed at ~25 px/mm
LABEL_PAPER = (250, 250, 245)
INK = (12, 12, 14)
MACRO_SIZE = (1200, 400)
MACRO_GLASS = (232, 232, 230)
LINEAR_FORMATS = ("Code128", "Code39", "Code93")


def label_image(
    lines: Sequence[str],
    *,
    barcode_text: str | None = None,
    barcode_format: str = "DataMatrix",
    size: tuple[int, int] = LABEL_SIZE,
) -> np.ndarray:
    """A glass label as scanners photograph it: printed lines on white paper and, when
    barcode_text is given, a barcode (any zxing-cpp format name) a reader decodes."""
    return draw_label(lines, barcode_text=barcode_text, barcode_format=barcode_format, size=size)[0]


def draw_label(
    lines: Sequence[str],
    *,
    barcode_text: str | None = None,
    barcode_format: str = "DataMatrix",
    size: tuple[int, int] = LABEL_SIZE,
) -> tuple[np.ndarray, tuple[int, int, int, int] | None]:
    """label_image(), and the box (left, top, right, bottom) of its barcode, quiet zone
    included (None without one): what a test scratches to make a code unreadable."""
    width, height = size
    image = Image.new("RGB", size, LABEL_PAPER)
    box = None
    text_left, text_top, text_bottom = 24, 24, height - 16
    if barcode_text is not None:
        code = _barcode_pixels(barcode_text, barcode_format)
        if barcode_format in LINEAR_FORMATS:
            # Across the bottom of the label, the text above it.
            row = code[code.shape[0] // 2]
            scale = max(1, (width - 32) // row.size)
            code = np.repeat(np.repeat(row, scale)[None, :], height // 3, axis=0)
            x, y = (width - code.shape[1]) // 2, height - 12 - code.shape[0]
            text_bottom = y - 8
        else:
            # A square code at the left, the text beside it.
            fit = min(height - 40, width // 2)
            scale = max(1, fit // max(code.shape))
            code = np.repeat(np.repeat(code, scale, axis=0), scale, axis=1)
            x, y = 16, (height - code.shape[0]) // 2
            text_left = x + code.shape[1] + 12
        if x < 0 or y < 0 or x + code.shape[1] > width or y + code.shape[0] > height:
            raise ValueError(f"a {barcode_format} of {barcode_text!r} does not fit a label")
        box = (x, y, x + code.shape[1], y + code.shape[0])
        # Printed in ink on the paper (the quiet zone is the paper itself).
        ink = np.zeros((height, width), bool)
        ink[y : box[3], x : box[2]] = code
        image.paste(INK, mask=Image.fromarray(ink))
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=30)
    for i, line in enumerate(lines):
        top = text_top + i * 42
        if top + 30 > text_bottom:
            break
        draw.text((text_left, top), line, fill=INK, font=font)
    return np.asarray(image), box


def _barcode_pixels(text: str, barcode_format: str) -> np.ndarray:
    """The code's modules, one pixel each (True: ink), with the format's quiet zone; a
    DataMatrix square, as label printers make them."""
    try:
        fmt = zxingcpp.BarcodeFormat[barcode_format]
    except KeyError:
        raise ValueError(f"unknown barcode format {barcode_format!r}") from None
    options = {"forceSquare": True} if fmt == zxingcpp.BarcodeFormat.DataMatrix else {}
    barcode = zxingcpp.create_barcode(text, fmt, **options)
    modules: np.ndarray = np.asarray(barcode.to_image(scale=1), dtype=np.uint8) < 128
    return modules


def macro_image(
    label: np.ndarray, section: np.ndarray, size: tuple[int, int] = MACRO_SIZE
) -> np.ndarray:
    """The whole glass: the label at its left end (as large as the glass is high), a small
    view of the tissue section in the middle."""
    width, height = size
    macro = Image.new("RGB", size, MACRO_GLASS)
    lh, lw = label.shape[:2]
    factor = min(1.0, (height - 20) / lh, (width // 3) / lw)
    shown = Image.fromarray(label).resize(
        (round(lw * factor), round(lh * factor)), Image.Resampling.LANCZOS
    )
    macro.paste(shown, (10, (height - shown.height) // 2))
    sh, sw = section.shape[:2]
    room_w, room_h = width - shown.width - 60, height - 40
    sfactor = min(room_w / sw, room_h / sh)
    tissue = Image.fromarray(section).resize(
        (max(1, round(sw * sfactor)), max(1, round(sh * sfactor)))
    )
    left = shown.width + 30 + (room_w - tissue.width) // 2
    macro.paste(tissue, (left, (height - tissue.height) // 2))
    return np.asarray(macro)


def _reduce(pixels: np.ndarray, factor: int) -> np.ndarray:
    """A box-filtered reduction, as scanners make their lower levels."""
    return np.asarray(Image.fromarray(pixels).reduce(factor))


def _svs_header(l0: tuple[int, int], size: tuple[int, int]) -> str:
    width, height = l0
    header = (
        f"Aperio Image Library v12.0.15 \r\n{width}x{height} [0,0 {width}x{height}] "
        f"({SVS_TILE}x{SVS_TILE}) JPEG/RGB Q={SVS_QUALITY}"
    )
    return header if size == l0 else header + f" -> {size[0]}x{size[1]}"


def _svs_description(l0: tuple[int, int], size: tuple[int, int]) -> str:
    """Aperio's ImageDescription: a header line, then `key = value` pairs split by '|'."""
    pairs = {
        "AppMag": str(SVS_MAG),
        "MPP": f"{SVS_MPP:.4f}",
        "ScannerType": "GT450",
        "Title": "synthetic",
    }
    return "|".join([_svs_header(l0, size), *(f"{k} = {v}" for k, v in pairs.items())])


def _associated_description(name: str, pixels: np.ndarray) -> str:
    # OpenSlide and tiffslide know label and macro by this word on the second line.
    return f"Aperio Image Library v12.0.15 \r\n{name} {pixels.shape[1]}x{pixels.shape[0]}"


def write_aperio_svs(
    path: Path, level0: np.ndarray, *, label: np.ndarray, macro: np.ndarray
) -> Path:
    """Writes RGB pixels as an Aperio-like SVS: JPEG tiles at levels 1, 1/4, 1/16 (those of
    a tile or more a side), the thumbnail second, then the label (LZW) and the macro (JPEG),
    all but the levels in strips, with the descriptions by which OpenSlide and tiffslide
    recognise each page."""
    height, width = level0.shape[:2]
    l0 = (width, height)
    levels = [level0]
    while len(levels) < 3 and min(levels[-1].shape[:2]) >= 4 * SVS_TILE:
        levels.append(_reduce(levels[-1], 4))
    thumbnail = _reduce(level0, max(1, -(-max(width, height) // 1024)))
    common: dict[str, Any] = {"metadata": None, "software": "IAIN synthetic", "maxworkers": 4}
    jpeg: dict[str, Any] = {"compression": "jpeg", "compressionargs": {"level": SVS_QUALITY}}
    with tifffile.TiffWriter(path, bigtiff=False) as tif:
        for i, level in enumerate(levels):
            size = (level.shape[1], level.shape[0])
            # Level 0 carries the scan's resolution, as Aperio writes it.
            resolution: dict[str, Any] = {}
            if i == 0:
                resolution = {"resolution": (1e4 / SVS_MPP,) * 2, "resolutionunit": "CENTIMETER"}
            tif.write(
                level,
                tile=(SVS_TILE, SVS_TILE),
                photometric="rgb",
                description=_svs_description(l0, size),
                **resolution,
                **jpeg,
                **common,
            )
            if i == 0:
                tif.write(
                    thumbnail,
                    photometric="rgb",
                    rowsperstrip=16,
                    description=_svs_header(l0, (thumbnail.shape[1], thumbnail.shape[0]))
                    + f" - |AppMag = {SVS_MAG}",
                    **jpeg,
                    **common,
                )
        tif.write(
            label,
            subfiletype=1,
            photometric="rgb",
            compression="lzw",
            rowsperstrip=label.shape[0],
            description=_associated_description("label", label),
            **common,
        )
        tif.write(
            macro,
            subfiletype=9,
            photometric="rgb",
            rowsperstrip=16,
            description=_associated_description("macro", macro),
            **jpeg,
            **common,
        )
    return path


def write_labelled_svs(
    path: Path,
    width: int,
    height: int,
    *,
    barcode_text: str,
    barcode_format: str = "DataMatrix",
    stain: Stain = "he",
    seed: int = 0,
    label_lines: Sequence[str] | None = None,
) -> Path:
    """Writes a small Aperio-like SVS (write_aperio_svs) of an H&E or IHC-stained section
    whose label carries `barcode_text` as a barcode and, printed, `label_lines` (by default
    the text and the stain). Kept in memory: meant for slides of a few thousand pixels
    (4096 x 3072 takes about a second)."""
    if stain not in ("he", "ihc"):
        raise ValueError(f"stain {stain!r} is not 'he' or 'ihc'")
    pixels = np.ascontiguousarray(build(width, height, seed, stain).numpy()[:, :, :3], np.uint8)
    lines = (
        label_lines
        if label_lines is not None
        else (barcode_text, "H&E" if stain == "he" else "IHC")
    )
    label = label_image(lines, barcode_text=barcode_text, barcode_format=barcode_format)
    macro = macro_image(label, _reduce(pixels, max(1, -(-max(width, height) // 800))))
    return write_aperio_svs(path, pixels, label=label, macro=macro)
