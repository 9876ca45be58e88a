"""Synthetic H&E-like slides from lazy libvips noise generators: for the demo on machines
without sample slides, for tests, and for benchmarks (bench/make_slide.py).

The image streams through `tiffsave` one strip of tiles at a time: memory does not grow with
the slide height (~250 MB for a 60000 px wide slide)."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path

import pyvips

MPP = 0.25  # microns per pixel, a typical 40x scan
TILE = 256

# sRGB colours of a typical H&E stain.
BACKGROUND = (243.0, 242.0, 240.0)
STROMA_LIGHT = (240.0, 190.0, 215.0)
STROMA_DARK = (205.0, 105.0, 160.0)
NUCLEUS_LIGHT = (140.0, 100.0, 175.0)
NUCLEUS_DARK = (50.0, 25.0, 95.0)

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


def build(width: int, height: int, seed: int) -> pyvips.Image:
    """Return the lazy uchar sRGB image of the whole synthetic slide.

    libvips computes tiffsave's input in full-width strips, so every intermediate image costs
    a buffer proportional to the slide width: colour work is done in uchar and blends use
    one `ifthenelse` instead of float arithmetic on three bands, to keep memory low.
    """
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
    stain = low[STAIN]
    grain = _perlin(width, height, GRAIN_CELL, seed + 36) * GRAIN_AMP

    # Stroma: pink texture at two scales.
    texture = (
        _perlin(width, height, 40, seed + 31) * 0.7
        + _perlin(width, height, 9, seed + 32) * 0.45
        + grain
        + stain * 2.0
        - 1.55
    ).clamp(min=0, max=1)
    stroma = _colour(texture, STROMA_LIGHT, STROMA_DARK)

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
    chroma = (_perlin(width, height, 14, seed + 35) * 0.5 + grain * 0.5 + stain - 0.5).clamp(
        min=0, max=1
    )
    nucleus = _colour(chroma, NUCLEUS_LIGHT, NUCLEUS_DARK)

    tissue = nuclei.ifthenelse(nucleus, stroma, blend=True)

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
    if progress is not None:
        image.set_progress(True)
        image.signal_connect("eval", lambda _img, prog: progress(int(prog.percent)))
    tmp = path.with_name(path.name + ".part")
    px_per_mm = 1000.0 / MPP
    try:
        image.tiffsave(
            str(tmp),
            tile=True,
            pyramid=True,
            compression="jpeg",
            Q=quality,
            tile_width=TILE,
            tile_height=TILE,
            bigtiff=True,
            resunit="cm",
            xres=px_per_mm,
            yres=px_per_mm,
        )
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
