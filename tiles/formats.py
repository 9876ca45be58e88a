"""Which files make up a slide, and which reader serves it."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import openslide

from tiles.errors import UnsupportedSlide

TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
# Vendors whose TIFF files tiffslide reads correctly in place.
TIFFSLIDE_VENDORS = {"aperio", "hamamatsu", "generic-tiff", None}


class ReaderKind(StrEnum):
    TIFF = "tiff"  # read in place from storage by byte ranges
    OPENSLIDE = "openslide"  # read by OpenSlide from a local copy


@dataclass(frozen=True)
class SlideFiles:
    """The files of one slide: `main` is what a reader opens; `files` are stored with their
    path relative to `root` (so an MRXS folder or a DICOM series keeps its layout)."""

    main: Path
    files: tuple[Path, ...]
    root: Path
    kind: ReaderKind
    vendor: str | None

    def relative(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()


def _magic(path: Path, length: int = 132) -> bytes:
    with path.open("rb") as f:
        return f.read(length)


def is_dicom(path: Path) -> bool:
    return path.is_file() and _magic(path)[128:132] == b"DICM"


def is_tiff(path: Path) -> bool:
    return _magic(path, 4) in TIFF_MAGICS


def collect(path: Path) -> SlideFiles:
    """Finds the files of the slide at `path` (a file, or a folder holding one slide)."""
    if not path.exists():
        raise UnsupportedSlide(f"{path.name}: no such file or directory")
    if path.is_dir():
        mrxs = sorted(path.glob("*.mrxs"))
        if len(mrxs) == 1:
            return collect(mrxs[0])
        dicoms = sorted(p for p in path.iterdir() if is_dicom(p))
        if dicoms:
            return _classify(dicoms[0], tuple(dicoms), path)
        raise UnsupportedSlide(f"{path.name}: folder holds no MRXS slide or DICOM series")
    if path.stat().st_size == 0:
        raise UnsupportedSlide(f"{path.name}: empty file")
    if path.suffix.lower() == ".mrxs":
        data_dir = path.with_suffix("")
        if not data_dir.is_dir():
            raise UnsupportedSlide(f"{path.name}: MRXS data folder {data_dir.name}/ is missing")
        files = (path, *sorted(p for p in data_dir.rglob("*") if p.is_file()))
        return _classify(path, files, path.parent)
    if is_dicom(path):
        # OpenSlide reads the whole series from the folder; store every instance beside it.
        siblings = tuple(sorted(p for p in path.parent.iterdir() if is_dicom(p)))
        return _classify(path, siblings, path.parent)
    return _classify(path, (path,), path.parent)


def _classify(main: Path, files: tuple[Path, ...], root: Path) -> SlideFiles:
    try:
        vendor = openslide.OpenSlide.detect_format(str(main))
    except openslide.OpenSlideError:
        vendor = None
    if is_tiff(main) and vendor in TIFFSLIDE_VENDORS and main.suffix.lower() != ".vms":
        kind = ReaderKind.TIFF
    elif vendor is not None:
        kind = ReaderKind.OPENSLIDE
    else:
        raise UnsupportedSlide(f"{main.name}: not a recognised whole-slide image format")
    return SlideFiles(main=main, files=files, root=root, kind=kind, vendor=vendor)
