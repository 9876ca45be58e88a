"""Small vendor-format slides that the shared test data lacks, written from the synthetic
H&E-like pixels of iain/synthetic.py:

- a JPEG 2000 Aperio SVS (`write_jp2k_svs`): a tiled TIFF pyramid whose tiles are raw
  JPEG 2000 codestreams, TIFF compression 33003 (YCbCr components, no multi-component
  transform) or 33005 (RGB through the codestream's MCT), Aperio's ImageDescription, a
  stripped thumbnail second, then label and macro images at the end;
- a MIRAX slide (`write_mrxs`): `NAME.mrxs` beside a `NAME/` folder holding Slidedat.ini,
  Index.dat and Data0000.dat with JPEG images cut from overlapping camera photos placed by
  a slide position map, after OpenSlide's public description of the format
  (openslide.org/formats/mirax/), with label, macro and thumbnail images;
- a JPEG Aperio SVS whose label carries a barcode (`write_barcode_svs`), readable or with
  the code scratched over (`damaged=True`), written by iain.synthetic.write_aperio_svs.

Usage: `python -m tests.vendor_samples OUTDIR [--width W --height H]`. Tests write them
into a pytest temporary folder; nothing here is ever committed as data."""

from __future__ import annotations

import argparse
import io
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import imagecodecs
import numpy as np
import tifffile
from PIL import Image, ImageDraw

from iain import synthetic
from iain.synthetic import BACKGROUND, build

APERIO_TILE = 240  # Aperio's usual tile size
APERIO_MPP = 0.4990
APERIO_MAG = 20
# TIFF compression codes Aperio writes for JPEG 2000 tiles.
JP2K_YCBCR = 33003
JP2K_RGB = 33005
# JPEG 2000 quality (a PSNR target in dB): lossy, as scanners write them.
JP2K_LEVEL = 46

MIRAX_IMAGE = 256  # side of one stored MIRAX image (DIGITIZER_WIDTH/HEIGHT)
MIRAX_MPP = 0.2431
MIRAX_MAG = 20
MIRAX_SLIDE_ID = "4f2d9c1e-7a3b-4c55-9e0d-2b6a8f1c3d70"
MIRAX_VERSION = "01.02"  # of Index.dat and the data files

LABEL_TEXT = "IAIN SAMPLE"


def tissue(width: int, height: int, seed: int = 7) -> np.ndarray:
    """RGB uint8 tissue-like pixels (height x width x 3)."""
    pixels: np.ndarray = build(width, height, seed).numpy()
    return np.ascontiguousarray(pixels[:, :, :3], dtype=np.uint8)


def shrink(pixels: np.ndarray, factor: int) -> np.ndarray:
    """Box-filter reduction by an integer factor, the way scanners build their lower levels
    (sizes round down: a partial block at the right or bottom edge is dropped)."""
    height, width = pixels.shape[:2]
    out_h, out_w = max(1, height // factor), max(1, width // factor)
    cropped = pixels[: out_h * factor, : out_w * factor].astype(np.uint32)
    blocks = cropped.reshape(out_h, factor, out_w, factor, 3)
    out: np.ndarray = (blocks.sum(axis=(1, 3)) + factor * factor // 2) // (factor * factor)
    return out.astype(np.uint8)


def label_image(width: int = 400, height: int = 300) -> np.ndarray:
    """A glass label as scanners photograph it: printed text on white, no barcode."""
    return synthetic.label_image([LABEL_TEXT], size=(width, height))


def macro_image(label: np.ndarray, width: int = 1000, height: int = 340) -> np.ndarray:
    """The whole glass: the label at one end, a small view of the tissue in the middle."""
    return synthetic.macro_image(label, tissue(width // 2, height - 60, seed=11), (width, height))


def _jpeg(pixels: np.ndarray, quality: int = 85) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", quality=quality)
    return out.getvalue()


# -- JPEG 2000 Aperio SVS ---------------------------------------------------------------------


def _to_ycbcr(pixels: np.ndarray) -> np.ndarray:
    """Full-range BT.601 (JFIF) YCbCr: what 33003 tiles hold, the codestream unaware."""
    rgb = pixels.astype(np.float32)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = 128 - 0.168736 * r - 0.331264 * g + 0.5 * b
    cr = 128 + 0.5 * r - 0.418688 * g - 0.081312 * b
    out: np.ndarray = np.clip(np.rint(np.stack([y, cb, cr], axis=2)), 0, 255).astype(np.uint8)
    return out


def _jp2k_tiles(pixels: np.ndarray, compression: int) -> Iterator[bytes]:
    """A level's tiles, row by row, as raw JPEG 2000 codestreams (not JP2 files), edge tiles
    padded to the full tile size with background as Aperio pads them."""
    height, width = pixels.shape[:2]
    rows, cols = -(-height // APERIO_TILE), -(-width // APERIO_TILE)
    padded = np.empty((rows * APERIO_TILE, cols * APERIO_TILE, 3), np.uint8)
    padded[:] = np.array(BACKGROUND, np.uint8)
    padded[:height, :width] = pixels
    for y in range(0, padded.shape[0], APERIO_TILE):
        for x in range(0, padded.shape[1], APERIO_TILE):
            tile = padded[y : y + APERIO_TILE, x : x + APERIO_TILE]
            # codecformat 0: a raw J2K codestream, as Aperio stores tiles.
            if compression == JP2K_YCBCR:
                encoded = imagecodecs.jpeg2k_encode(
                    _to_ycbcr(tile), level=JP2K_LEVEL, codecformat=0, mct=False
                )
            else:
                encoded = imagecodecs.jpeg2k_encode(tile, level=JP2K_LEVEL, codecformat=0, mct=True)
            yield bytes(encoded)


def _aperio_header(width: int, height: int, compression: int) -> str:
    kind = "YCbCr" if compression == JP2K_YCBCR else "RGB"
    return (
        f"Aperio Image Library v12.0.15 \r\n{width}x{height} [0,0 {width}x{height}] "
        f"({APERIO_TILE}x{APERIO_TILE}) J2K/{kind} Q=70"
    )


def aperio_description(
    width: int, height: int, compression: int, l0: tuple[int, int] | None = None
) -> str:
    """Aperio's ImageDescription: a header line, then `key = value` pairs split by '|'."""
    if l0 is not None and l0 != (width, height):
        # Lower levels describe themselves relative to level 0, as Aperio does.
        header = _aperio_header(l0[0], l0[1], compression) + f" -> {width}x{height}"
    else:
        header = _aperio_header(width, height, compression)
    pairs = {
        "AppMag": str(APERIO_MAG),
        "MPP": f"{APERIO_MPP:.4f}",
        "ScannerType": "GT450",
        "StripeWidth": "992",
        "Title": "synthetic",
    }
    return "|".join([header, *(f"{k} = {v}" for k, v in pairs.items())])


def _associated_description(name: str, pixels: np.ndarray) -> str:
    # OpenSlide and tiffslide find label and macro by these words on the second line.
    return f"Aperio Image Library v12.0.15 \r\n{name} {pixels.shape[1]}x{pixels.shape[0]}"


def _tiled(pixels: np.ndarray, compression: int) -> dict[str, Any]:
    """tifffile arguments writing a level as pre-encoded JPEG 2000 tiles."""
    return {
        "data": _jp2k_tiles(pixels, compression),
        "shape": pixels.shape,
        "dtype": "uint8",
        "tile": (APERIO_TILE, APERIO_TILE),
        "compression": compression,
        "photometric": "rgb",
    }


def write_jp2k_svs(
    path: Path,
    width: int = 3000,
    height: int = 2200,
    *,
    compression: int = JP2K_YCBCR,
    seed: int = 7,
) -> Path:
    """Writes an Aperio SVS with JPEG 2000 tiles: levels 1, 1/4, 1/16 (Aperio's 4x steps),
    the thumbnail second, label (LZW) and macro (JPEG) last, all but the levels stripped."""
    if compression not in (JP2K_YCBCR, JP2K_RGB):
        raise ValueError(f"compression {compression}: Aperio JPEG 2000 is 33003 or 33005")
    level0 = tissue(width, height, seed)
    levels = [level0, shrink(level0, 4), shrink(level0, 16)]
    thumb_factor = max(1, -(-max(width, height) // 1024))
    thumbnail = shrink(level0, thumb_factor)
    label = label_image()
    macro = macro_image(label)
    common: dict[str, Any] = {"metadata": None, "software": "IAIN vendor_samples"}
    with tifffile.TiffWriter(path) as tif:
        tif.write(
            **_tiled(level0, compression),
            description=aperio_description(width, height, compression),
            resolution=(1e4 / APERIO_MPP, 1e4 / APERIO_MPP),
            resolutionunit="CENTIMETER",
            **common,
        )
        tif.write(
            thumbnail,
            photometric="rgb",
            compression="jpeg",
            rowsperstrip=16,
            description=_aperio_header(width, height, compression)
            + f" -> {thumbnail.shape[1]}x{thumbnail.shape[0]} - |AppMag = {APERIO_MAG}",
            **common,
        )
        for level in levels[1:]:
            tif.write(
                **_tiled(level, compression),
                description=aperio_description(
                    level.shape[1], level.shape[0], compression, (width, height)
                ),
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
            compression="jpeg",
            rowsperstrip=16,
            description=_associated_description("macro", macro),
            **common,
        )
    return path


# -- A barcode on the label ------------------------------------------------------------------


def barcode_label(
    barcode_format: str, text: str, printed: tuple[str, ...] = (), *, damaged: bool = False
) -> np.ndarray:
    """A label printed with `printed` lines and `text` as a barcode (a zxing-cpp format
    name); damaged, deep scratches cross the code from edge to edge, through every row of
    bars and the 2D codes' finder patterns, so no reader decodes it, though the printed
    text remains."""
    pixels, box = synthetic.draw_label(
        printed or (text,), barcode_text=text, barcode_format=barcode_format
    )
    if not damaged:
        return pixels
    assert box is not None
    left, top, right, bottom = box
    image = Image.fromarray(pixels)
    draw = ImageDraw.Draw(image)
    step, slant = (right - left) // 6, (right - left) // 8
    for x in range(left, right, step):
        draw.line((x, top, x + slant, bottom), fill=synthetic.LABEL_PAPER, width=max(6, step // 3))
    return np.asarray(image)


def write_barcode_svs(
    path: Path,
    barcode_format: str,
    text: str,
    *,
    printed: tuple[str, ...] = (),
    damaged: bool = False,
    width: int = 1200,
    height: int = 900,
    seed: int = 7,
) -> Path:
    """Writes a JPEG Aperio SVS whose label is barcode_label(...); its macro shows the label
    too (so the code is also on the macro image)."""
    label = barcode_label(barcode_format, text, printed, damaged=damaged)
    pixels = tissue(width, height, seed)
    macro = synthetic.macro_image(label, shrink(pixels, 4))
    return synthetic.write_aperio_svs(path, pixels, label=label, macro=macro)


# -- MIRAX ------------------------------------------------------------------------------------


def _photo_origin(index: int, divisions: int, overlap: int) -> int:
    """Where camera photo `index` (along one axis) starts on the slide, in level-0 pixels:
    each photo is `divisions` images wide and overlaps the previous one by `overlap`."""
    return index * (divisions * MIRAX_IMAGE - overlap)


def _mirax_mosaic(
    slide: np.ndarray, images_x: int, images_y: int, divisions: int, overlap: int
) -> np.ndarray:
    """Every level-0 image laid edge to edge by its index, as the levels above are built
    (irrespective of overlaps): image (x, y) is part (x % d, y % d) of the photo taken at
    (x // d, y // d), and photos overlap, so neighbouring photos repeat a few pixels."""
    mosaic = np.empty((images_y * MIRAX_IMAGE, images_x * MIRAX_IMAGE, 3), np.uint8)
    for y in range(images_y):
        for x in range(images_x):
            sx = _photo_origin(x // divisions, divisions, overlap) + (x % divisions) * MIRAX_IMAGE
            sy = _photo_origin(y // divisions, divisions, overlap) + (y % divisions) * MIRAX_IMAGE
            mosaic[
                y * MIRAX_IMAGE : (y + 1) * MIRAX_IMAGE, x * MIRAX_IMAGE : (x + 1) * MIRAX_IMAGE
            ] = slide[sy : sy + MIRAX_IMAGE, sx : sx + MIRAX_IMAGE]
    return mosaic


def _mirax_levels(mosaic: np.ndarray, count: int) -> list[np.ndarray]:
    """Level n: the mosaic reduced 2^n times (each image of level n+1 is 2x2 images of level
    n, each halved), after padding it with the glass colour to a whole number of images at
    every level, so the last images of a row hold glass beyond the slide."""
    block = MIRAX_IMAGE << (count - 1)
    height, width = mosaic.shape[:2]
    padded = np.empty((-(-height // block) * block, -(-width // block) * block, 3), np.uint8)
    padded[:] = np.array(BACKGROUND, np.uint8)
    padded[:height, :width] = mosaic
    levels = [padded]
    for _ in range(1, count):
        levels.append(shrink(levels[-1], 2))
    return levels


class _Index:
    """Index.dat being built: the version and slide id, then little-endian int32 values and
    pointers to byte offsets within the file."""

    def __init__(self) -> None:
        self.data = bytearray((MIRAX_VERSION + MIRAX_SLIDE_ID).encode("ascii"))

    def here(self) -> int:
        return len(self.data)

    def ints(self, *values: int) -> int:
        at = self.here()
        self.data += struct.pack(f"<{len(values)}i", *values)
        return at

    def patch(self, at: int, value: int) -> None:
        self.data[at : at + 4] = struct.pack("<i", value)


def write_mrxs(
    folder: Path,
    name: str = "sample",
    *,
    images_x: int = 12,
    images_y: int = 10,
    levels: int = 5,
    divisions: int = 2,
    overlap: int = 16,
    seed: int = 7,
) -> Path:
    """Writes `folder/NAME.mrxs` and `folder/NAME/` (Slidedat.ini, Index.dat, Data0000.dat):
    images_x x images_y JPEG images of MIRAX_IMAGE px at level 0, cut `divisions` a side
    from camera photos that overlap by `overlap` px and whose positions are in a slide
    position map (VIMSLIDE_POSITION_BUFFER, as slide version 1.9 writes it); `levels` zoom
    levels 2x apart; label, macro and thumbnail images. Returns the .mrxs path."""
    if images_x % divisions or images_y % divisions:
        raise ValueError("images_x and images_y must be whole numbers of camera photos")
    photos_x, photos_y = images_x // divisions, images_y // divisions
    # The slide the photos cover: one overlap less per photo boundary.
    width = _photo_origin(photos_x - 1, divisions, overlap) + divisions * MIRAX_IMAGE
    height = _photo_origin(photos_y - 1, divisions, overlap) + divisions * MIRAX_IMAGE
    data_dir = folder / name
    data_dir.mkdir(parents=True, exist_ok=True)
    slide = tissue(width, height, seed)
    mosaic = _mirax_mosaic(slide, images_x, images_y, divisions, overlap)
    pyramid = _mirax_levels(mosaic, levels)
    label = label_image()
    macro = macro_image(label)
    thumbnail = shrink(slide, max(1, -(-max(width, height) // 512)))

    # Data0000.dat: header (version, slide id, file number in three digits, 256 bytes of
    # padding), then the images one after another.
    data = bytearray((MIRAX_VERSION + MIRAX_SLIDE_ID + "000").encode("ascii") + b"\0" * 256)

    def put(blob: bytes) -> tuple[int, int]:
        at = len(data)
        data.extend(blob)
        return at, len(blob)

    # Per zoom level: (image index, offset, length) of every stored image.
    hier: list[list[tuple[int, int, int]]] = []
    for zoom, pixels in enumerate(pyramid):
        step = 1 << zoom  # level-0 image columns/rows an image of this level spans
        items = []
        for y in range(0, images_y, step):
            for x in range(0, images_x, step):
                py, px = (y // step) * MIRAX_IMAGE, (x // step) * MIRAX_IMAGE
                image = pixels[py : py + MIRAX_IMAGE, px : px + MIRAX_IMAGE]
                items.append((y * images_x + x, *put(_jpeg(image))))
        hier.append(items)
    # Non-hierarchical records, in Slidedat order: macro, label, thumbnail, then the slide
    # position map: per photo, row-major, a flag byte (1: the photo has images) and its
    # level-0 x and y as little-endian int32.
    positions = b"".join(
        struct.pack(
            "<Bii",
            1,
            _photo_origin(px, divisions, overlap),
            _photo_origin(py, divisions, overlap),
        )
        for py in range(photos_y)
        for px in range(photos_x)
    )
    nonhier = [put(_jpeg(macro)), put(_jpeg(label)), put(_jpeg(thumbnail)), put(positions)]
    (data_dir / "Data0000.dat").write_bytes(bytes(data))

    index = _Index()
    hier_root, nonhier_root = index.ints(0), index.ints(0)
    # The roots point to tables of one record pointer per VAL.
    index.patch(hier_root, index.here())
    hier_table = index.ints(*([0] * len(hier)))
    index.patch(nonhier_root, index.here())
    nonhier_table = index.ints(*([0] * len(nonhier)))
    for i, items in enumerate(hier):
        # A record: a first page of no items whose next pointer is the data page.
        index.patch(hier_table + 4 * i, index.here())
        head = index.ints(0, 0)
        index.patch(head + 4, index.here())
        index.ints(len(items), 0)
        for image_index, offset, length in items:
            index.ints(image_index, offset, length, 0)
    for i, (offset, length) in enumerate(nonhier):
        index.patch(nonhier_table + 4 * i, index.here())
        head = index.ints(0, 0)
        index.patch(head + 4, index.here())
        index.ints(1, 0, 0, 0, offset, length, 0)
    (data_dir / "Index.dat").write_bytes(bytes(index.data))

    (data_dir / "Slidedat.ini").write_text(
        _slidedat(images_x, images_y, levels, divisions, overlap), "utf-8"
    )
    mrxs = folder / f"{name}.mrxs"
    # The .mrxs file itself only names the slide; MIRAX viewers keep a small stub there.
    mrxs.write_text("[GENERAL]\nSLIDE_NAME=synthetic\n", "utf-8")
    return mrxs


def _slidedat(images_x: int, images_y: int, levels: int, divisions: int, overlap: int) -> str:
    fill_bgr = int(BACKGROUND[2]) << 16 | int(BACKGROUND[1]) << 8 | int(BACKGROUND[0])
    lines = [
        "[GENERAL]",
        "SLIDE_VERSION=1.0",
        f"SLIDE_ID={MIRAX_SLIDE_ID}",
        "SLIDE_NAME=synthetic",
        "SLIDE_CREATIONDATETIME=20260101120000",
        f"IMAGENUMBER_X={images_x}",
        f"IMAGENUMBER_Y={images_y}",
        f"OBJECTIVE_MAGNIFICATION={MIRAX_MAG}",
        f"CameraImageDivisionsPerSide={divisions}",
        "CURRENT_SLIDE_VERSION=1.9",
        "SLIDE_TYPE=Brightfield",
        "",
        "[HIERARCHICAL]",
        "HIER_COUNT=1",
        "HIER_0_NAME=Slide zoom level",
        f"HIER_0_COUNT={levels}",
    ]
    for z in range(levels):
        lines += [
            f"HIER_0_VAL_{z}=ZoomLevel_{z}",
            f"HIER_0_VAL_{z}_SECTION=LAYER_0_LEVEL_{z}_SECTION",
        ]
    lines += [
        "NONHIER_COUNT=2",
        "NONHIER_0_NAME=Scan data layer",
        "NONHIER_0_COUNT=3",
        "NONHIER_0_VAL_0=ScanDataLayer_SlideThumbnail",
        "NONHIER_0_VAL_0_SECTION=NONHIERLAYER_0_LEVEL_0_SECTION",
        "NONHIER_0_VAL_1=ScanDataLayer_SlideBarcode",
        "NONHIER_0_VAL_1_SECTION=NONHIERLAYER_0_LEVEL_1_SECTION",
        "NONHIER_0_VAL_2=ScanDataLayer_SlidePreview",
        "NONHIER_0_VAL_2_SECTION=NONHIERLAYER_0_LEVEL_2_SECTION",
        "NONHIER_1_NAME=VIMSLIDE_POSITION_BUFFER",
        "NONHIER_1_COUNT=1",
        "NONHIER_1_VAL_0=default",
        "NONHIER_1_VAL_0_SECTION=NONHIERLAYER_1_SECTION",
        "INDEXFILE=Index.dat",
        "",
        "[DATAFILE]",
        "FILE_COUNT=1",
        "FILE_0=Data0000.dat",
        "",
    ]
    for z in range(levels):
        mpp = MIRAX_MPP * (1 << z)
        lines += [
            f"[LAYER_0_LEVEL_{z}_SECTION]",
            f"OVERLAP_X={overlap}",
            f"OVERLAP_Y={overlap}",
            f"MICROMETER_PER_PIXEL_X={mpp:.6f}",
            f"MICROMETER_PER_PIXEL_Y={mpp:.6f}",
            "IMAGE_FORMAT=JPEG",
            "IMAGE_QUALITY=85",
            f"IMAGE_FILL_COLOR_BGR={fill_bgr}",
            f"DIGITIZER_WIDTH={MIRAX_IMAGE}",
            f"DIGITIZER_HEIGHT={MIRAX_IMAGE}",
            f"IMAGE_CONCAT_FACTOR={0 if z == 0 else 1}",
            "",
        ]
    for i, key in enumerate(("THUMBNAIL_IMAGE_TYPE", "BARCODE_IMAGE_TYPE", "PREVIEW_IMAGE_TYPE")):
        lines += [f"[NONHIERLAYER_0_LEVEL_{i}_SECTION]", f"{key}=JPEG", ""]
    # 257: the uncompressed position format (slide version 2.2 deflates it instead).
    lines += ["[NONHIERLAYER_1_SECTION]", "VIMSLIDE_POSITION_DATA_FORMAT_VERSION=257", ""]
    return "\r\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("outdir", type=Path)
    parser.add_argument("--width", type=int, default=3000, help="SVS level-0 width")
    parser.add_argument("--height", type=int, default=2200, help="SVS level-0 height")
    parser.add_argument("--images-x", type=int, default=12, help="MRXS images across")
    parser.add_argument("--images-y", type=int, default=10, help="MRXS images down")
    args = parser.parse_args(argv)
    args.outdir.mkdir(parents=True, exist_ok=True)
    written = [
        write_jp2k_svs(args.outdir / "jp2k-ycbcr.svs", args.width, args.height),
        write_jp2k_svs(args.outdir / "jp2k-rgb.svs", args.width, args.height, compression=JP2K_RGB),
        write_mrxs(args.outdir, "mirax", images_x=args.images_x, images_y=args.images_y),
    ]
    for path in written:
        print(path)


if __name__ == "__main__":
    main()
