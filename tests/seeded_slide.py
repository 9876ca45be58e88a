"""An Aperio-SVS-like slide with fake patient identifiers planted wherever real files carry
them: the label image (as drawn text and in its description), the macro image, the main
ImageDescription (Aperio's key = value pairs), other TIFF text tags, and the file name.
The tissue pyramid itself carries none, as in a real scan.

Used by tests/integration/test_deidentification.py to prove that the de-identified view
reaches none of them."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
from PIL import Image, ImageDraw, ImageFont

# The fake identifiers (no real person).
PATIENT_NAME = "DUPONT^JEAN"
PATIENT_NUMBER = "IPP-0042-7731"
BIRTH_DATE = "1961-03-14"
ACCESSION = "ACC-77Q-5190"
FILE_NAME = f"DUPONT^JEAN_{PATIENT_NUMBER}_{BIRTH_DATE}.svs"

# The allow-listed device name that the de-identified view is meant to keep.
SCANNER_MODEL = "GT450"

WIDTH, HEIGHT = 2048, 1536
TILE = 256
MPP = 0.4942
APP_MAG = 20


def identifiers() -> list[str]:
    """Every planted identifier, and the fragments of it a leak would most likely show."""
    return [
        PATIENT_NAME,
        "DUPONT",
        PATIENT_NUMBER,
        "0042-7731",
        BIRTH_DATE,
        "14/03/1961",
        "19610314",
        ACCESSION,
        FILE_NAME,
    ]


def _tissue(width: int, height: int) -> np.ndarray:
    """Smooth pink-and-purple pixels: compresses like tissue, identical on every run."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    wave = (np.sin(x / 97.0) + np.cos(y / 61.0) + np.sin((x + y) / 143.0)) / 3.0
    r = 225 + 25 * wave
    g = 150 + 60 * np.cos(x / 53.0) * np.sin(y / 71.0)
    b = 200 + 30 * wave
    pixels: np.ndarray = np.clip(np.stack([r, g, b], axis=2), 0, 255).astype(np.uint8)
    return pixels


def _label() -> np.ndarray:
    """The glass label as scanners photograph it: the patient's name and numbers in print."""
    image = Image.new("RGB", (480, 360), (250, 250, 245))
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=28)
    for line, text in enumerate((PATIENT_NAME, PATIENT_NUMBER, f"DDN {BIRTH_DATE}", ACCESSION)):
        draw.text((20, 30 + 70 * line), text, fill=(10, 10, 10), font=font)
    return np.asarray(image)


def _macro(label: np.ndarray) -> np.ndarray:
    """The whole glass: the label at one end, the tissue in the middle."""
    macro = np.full((400, 1200, 3), 235, np.uint8)
    macro[20:380, 20:500] = label
    macro[60:340, 600:1100] = _tissue(500, 280)
    return macro


def aperio_description(width: int, height: int) -> str:
    """Aperio's ImageDescription: a header line then `key = value` pairs split by '|'."""
    pairs = {
        "AppMag": str(APP_MAG),
        "MPP": str(MPP),
        "Filename": FILE_NAME.removesuffix(".svs"),
        "Patient": PATIENT_NAME,
        "Patient ID": PATIENT_NUMBER,
        "Date of Birth": "14/03/1961",
        "Accession": ACCESSION,
        "Date": "03/14/61",
        "Time": "09:12:44",
        "User": "DUPONT",
        "ScanScope ID": "SS-0042-7731",
        "ScannerType": SCANNER_MODEL,
    }
    header = (
        f"Aperio Image Library v12.0.15 \r\n{width}x{height} [0,0 {width}x{height}] "
        f"({TILE}x{TILE}) JPEG/RGB Q=80"
    )
    return "|".join([header, *(f"{k} = {v}" for k, v in pairs.items())])


def _text_tags() -> list[tuple[int, str, int, str, bool]]:
    """TIFF text tags that scanners and converters fill, seeded with identifiers."""
    tags = {
        269: f"{PATIENT_NAME} {PATIENT_NUMBER}",  # DocumentName
        285: f"{PATIENT_NAME} born {BIRTH_DATE}",  # PageName
        315: PATIENT_NAME,  # Artist
        316: f"host-{PATIENT_NUMBER}",  # HostComputer
        33432: f"(c) {PATIENT_NAME} {ACCESSION}",  # Copyright
    }
    return [(code, "s", 0, value, True) for code, value in tags.items()]


def _tile_jpegs(pixels: np.ndarray) -> Iterator[bytes]:
    """The level's tiles as JPEG files that also carry identifiers where JPEG holds text: a
    comment (COM) and EXIF (APP1), as some converters write them. Stored this way, tiles
    are served as they are (zero-transcode), so these segments reach the client unless
    they are stripped."""
    height, width = pixels.shape[:2]
    padded = np.full((-(-height // TILE) * TILE, -(-width // TILE) * TILE, 3), 255, np.uint8)
    padded[:height, :width] = pixels
    exif = Image.Exif()
    exif[315] = PATIENT_NAME  # Artist
    exif[270] = f"{PATIENT_NUMBER} {BIRTH_DATE}"  # ImageDescription
    for y in range(0, padded.shape[0], TILE):
        for x in range(0, padded.shape[1], TILE):
            out = io.BytesIO()
            Image.fromarray(padded[y : y + TILE, x : x + TILE]).save(
                out,
                "JPEG",
                quality=85,
                subsampling=0,
                comment=f"{PATIENT_NAME} {ACCESSION}".encode(),
                exif=exif.tobytes(),
            )
            yield out.getvalue()


def _pyramid_level(pixels: np.ndarray) -> dict[str, Any]:
    """tifffile arguments writing a level as the pre-encoded JPEG tiles of _tile_jpegs."""
    return {
        "data": _tile_jpegs(pixels),
        "shape": pixels.shape,
        "dtype": "uint8",
        "tile": (TILE, TILE),
        "compression": "jpeg",
        "photometric": "ycbcr",
        "subsampling": (1, 1),
    }


def write_seeded_svs(folder: Path) -> Path:
    """Writes the seeded slide into `folder` under its identifying file name."""
    path = folder / FILE_NAME
    tissue = _tissue(WIDTH, HEIGHT)
    level1 = tissue[::4, ::4].copy()
    thumbnail = tissue[::8, ::8].copy()
    label = _label()
    macro = _macro(label)
    software = f"Scanner 1.0 / operator {PATIENT_NAME}"
    when = "1961:03:14 09:12:44"
    common: dict[str, Any] = {"metadata": None, "software": software, "datetime": when}
    with tifffile.TiffWriter(path) as tif:
        tif.write(
            **_pyramid_level(tissue),
            description=aperio_description(WIDTH, HEIGHT),
            extratags=_text_tags(),
            **common,
        )
        tif.write(
            thumbnail,
            photometric="rgb",
            description=f"Aperio Image Library v12.0.15 \r\nthumbnail {PATIENT_NAME}",
            **common,
        )
        tif.write(
            **_pyramid_level(level1),
            description=aperio_description(level1.shape[1], level1.shape[0]),
            **common,
        )
        tif.write(
            label,
            subfiletype=1,
            photometric="rgb",
            compression="lzw",
            description=f"Aperio Image Library v12.0.15 \r\nlabel {label.shape[1]}x"
            f"{label.shape[0]}|Patient = {PATIENT_NAME}|Patient ID = {PATIENT_NUMBER}",
            **common,
        )
        tif.write(
            macro,
            subfiletype=9,
            photometric="rgb",
            compression="jpeg",
            description=f"Aperio Image Library v12.0.15 \r\nmacro {macro.shape[1]}x"
            f"{macro.shape[0]}|Patient = {PATIENT_NAME}|Accession = {ACCESSION}",
            **common,
        )
    return path
