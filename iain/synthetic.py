"""Synthetic H&E-like slides, for the demo on machines without sample slides."""

from __future__ import annotations

from pathlib import Path

import pyvips

MPP = 0.25


def build(width: int, height: int, seed: int) -> pyvips.Image:
    mask = pyvips.Image.perlin(width, height, cell_size=max(64, width // 6), seed=seed) * 4 + 0.6
    mask = mask.clamp(min=0, max=1)
    nuclei = (12 - pyvips.Image.worley(width, height, cell_size=24, seed=seed + 1)).clamp(
        min=0, max=1
    )
    stroma = pyvips.Image.perlin(width, height, cell_size=16, seed=seed + 2) * 0.5 + 0.5
    pink = stroma.linear([-35.0, -85.0, -55.0], [240.0, 190.0, 215.0])
    tissue = pink + pink.linear(-1.0, [75.0, 45.0, 125.0]) * nuclei
    out = [243.0, 242.0, 240.0] + (tissue - [243.0, 242.0, 240.0]) * mask
    return out.cast("uchar").copy(interpretation="srgb")


def write_synthetic_slide(path: Path, width: int, height: int, *, seed: int = 0) -> None:
    image = build(width, height, seed)
    image.tiffsave(
        str(path),
        tile=True,
        tile_width=256,
        tile_height=256,
        pyramid=True,
        compression="jpeg",
        Q=80,
        bigtiff=True,
        xres=1000 / MPP,
        yres=1000 / MPP,
        resunit="cm",
    )
