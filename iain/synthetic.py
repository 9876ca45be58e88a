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
