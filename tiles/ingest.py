"""Ingest, tile-layer half: validate a slide file and store its original untouched.

The hub (exchange) decides ids and records the slide; this module only knows files,
readers and storage."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, cast

import tifffile

from storage import ObjectStore
from storage.rangefile import RangeFile, pack_spans
from tiles.errors import CorruptSlide, TilesError, UnsupportedSlide
from tiles.formats import TIFF_MAGICS, ReaderKind, SlideFiles, collect
from tiles.geometry import Region
from tiles.labels import MAX_INPUT_PIXELS, Barcode, read_barcodes
from tiles.location import SlideLocation, index_key, original_key
from tiles.readers.base import SlideProperties, SlideReader
from tiles.readers.openslide import OpenSlideReader
from tiles.readers.tiff import TiffReader

# Sanity limits on what a file declares (hardened further by the ingest-hardening work).
MAX_SIDE = 2_000_000
PROBE_SIZE = 256

Progress = Callable[[int], None]


@dataclass(frozen=True)
class Inspection:
    files: SlideFiles
    properties: SlideProperties
    # For TIFF-family slides: the bytes the parser reads on open (see storage.rangefile).
    index: bytes | None
    # Set when the files were inspected in storage (their paths are then no local files).
    size_bytes: int | None = None
    # Codes printed on the glass label (tiles.labels), read from the label image.
    barcodes: tuple[Barcode, ...] = ()

    @property
    def total_bytes(self) -> int:
        if self.size_bytes is not None:
            return self.size_bytes
        return sum(p.stat().st_size for p in self.files.files)


def _local_fetch(path: Path) -> Callable[[int, int], bytes]:
    def fetch(offset: int, length: int) -> bytes:
        with path.open("rb") as f:
            return os.pread(f.fileno(), length, offset)

    return fetch


def open_local(files: SlideFiles) -> tuple[SlideReader, bytes | None]:
    """Opens a local slide with the reader that will serve it, and its header pack."""
    if files.kind is ReaderKind.TIFF:
        reader = TiffReader(_local_fetch(files.main), files.main.stat().st_size)
        return reader, pack_spans(reader.file.fetched)
    return OpenSlideReader(str(files.main)), None


def probe(reader: SlideReader) -> None:
    """Decodes pixels at the centre of the full-resolution level and of the smallest one."""
    props = reader.properties
    for level in sorted({0, len(props.l_sizes) - 1}):
        size = props.l_sizes[level]
        w, h = min(PROBE_SIZE, size.width), min(PROBE_SIZE, size.height)
        region = Region((size.width - w) // 2, (size.height - h) // 2, w, h)
        reader.read_region(level, region)


def inspect_slide(path: Path) -> Inspection:
    """Detects the format, opens the slide and decodes a probe; raises a TilesError that
    says why when the file is not a slide we can serve."""
    files = collect(path)
    try:
        reader, index = open_local(files)
    except TilesError as exc:
        raise type(exc)(f"{path.name}: {exc.message}") from exc
    return _check(path, files, reader, index)


# TIFF files that OpenSlide serves (formats.collect sends them to ReaderKind.OPENSLIDE):
# in storage, they are recognised by tifffile's flags or the scanner's Software tag.
_OPENSLIDE_TIFF_FLAGS = ("is_scn", "is_philips", "is_bif")
_OPENSLIDE_TIFF_SOFTWARE = ("MedScan",)  # Trestle


def _stored_tiff_vendor(fetch: Callable[[int, int], bytes], size: int) -> tuple[bool, str | None]:
    """(whether our TiffReader serves the file, the vendor formats.collect would name)."""
    try:
        with tifffile.TiffFile(cast(BinaryIO, RangeFile(fetch, size))) as tif:
            if any(getattr(tif, flag) for flag in _OPENSLIDE_TIFF_FLAGS):
                return False, None
            page = tif.pages.first
            if str(page.software).startswith(_OPENSLIDE_TIFF_SOFTWARE):
                return False, None
            if tif.is_svs:
                return True, "aperio"
            if tif.is_ndpi:
                return True, "hamamatsu"
            return True, "generic-tiff" if page.is_tiled else None
    except Exception:
        # Unparseable here: the TiffReader below refuses it with the reason a local file
        # would get.
        return True, None


def inspect_stored(
    fetch: Callable[[int, int], bytes], size: int, main: Path, root: Path
) -> Inspection | None:
    """inspect_slide() for a single-file slide already in storage, read by byte ranges
    (`fetch` behaves like pread: a read past the end comes back short): the same Inspection,
    header pack included, without a local copy. Returns None when the file is not of the
    TIFF family that our TiffReader reads in place (DICOM, an OpenSlide-only TIFF...): its
    caller then inspects a local copy, since OpenSlide reads only local files."""
    if size == 0 or main.suffix.lower() in (".vms", ".mrxs"):
        return None
    if fetch(0, 4) not in TIFF_MAGICS:
        return None
    ours, vendor = _stored_tiff_vendor(fetch, size)
    if not ours:
        return None
    files = SlideFiles(main=main, files=(main,), root=root, kind=ReaderKind.TIFF, vendor=vendor)
    try:
        reader = TiffReader(fetch, size)
        index = pack_spans(reader.file.fetched)
    except TilesError as exc:
        raise type(exc)(f"{main.name}: {exc.message}") from exc
    inspection = _check(main, files, reader, index)
    return Inspection(
        files=files,
        properties=inspection.properties,
        index=index,
        size_bytes=size,
        barcodes=inspection.barcodes,
    )


def _check(path: Path, files: SlideFiles, reader: SlideReader, index: bytes | None) -> Inspection:
    """Sanity limits and a decoded probe on an opened slide; closes the reader."""
    try:
        props = reader.properties
        if any(s.width > MAX_SIDE or s.height > MAX_SIDE for s in props.l_sizes):
            raise UnsupportedSlide(f"{path.name}: declared size is beyond {MAX_SIDE} pixels")
        try:
            probe(reader)
        except TilesError as exc:
            raise CorruptSlide(f"{path.name}: pixel data cannot be decoded: {exc.message}") from exc
        return Inspection(
            files=files, properties=props, index=index, barcodes=label_barcodes(reader)
        )
    finally:
        reader.close()


# Where the glass label is: its own image, else the photograph of the whole glass.
LABEL_IMAGES = ("label", "macro")


def label_barcodes(reader: SlideReader) -> tuple[Barcode, ...]:
    """The codes on the slide's label image (its macro image when it has no label); ()
    when it has neither, or they cannot be decoded: a label never fails an ingest."""
    name = next((n for n in LABEL_IMAGES if n in reader.properties.associated), None)
    if name is None:
        return ()
    try:
        # OpenSlide declares the size: an absurd one is not even decoded.
        meta = reader.properties.vendor_metadata
        width, height = (
            meta.get(f"openslide.associated.{name}.{side}") for side in ("width", "height")
        )
        if width and height and int(width) * int(height) > MAX_INPUT_PIXELS:
            return ()
        image = reader.associated_image(name)
    except Exception:  # a damaged label image: the slide itself is fine
        return ()
    return read_barcodes(image)


class _HashingReader:
    """Streams a file into storage while hashing it and reporting progress."""

    def __init__(self, f: BinaryIO, digest: hashlib._Hash | None, progress: Progress | None):
        self._f, self._digest, self._progress = f, digest, progress

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        if self._digest is not None:
            self._digest.update(data)
        if self._progress is not None and data:
            self._progress(len(data))
        return data


def store_original(
    store: ObjectStore, slide_id: str, inspection: Inspection, progress: Progress | None = None
) -> SlideLocation:
    """Copies the slide's files into storage, untouched, under the slide's prefix."""
    files = inspection.files
    keys: list[str] = []
    digest = hashlib.sha256()
    main_key, main_size = "", 0
    for path in files.files:
        key = original_key(slide_id, files.relative(path))
        size = path.stat().st_size
        with path.open("rb") as f:
            stream = _HashingReader(f, digest if path == files.main else None, progress)
            store.put(key, stream, size)  # type: ignore[arg-type]
        keys.append(key)
        if path == files.main:
            main_key, main_size = key, size
    idx_key = None
    if inspection.index is not None:
        idx_key = index_key(slide_id)
        store.put_bytes(idx_key, inspection.index)
    return SlideLocation(
        slide_id=slide_id,
        kind=files.kind,
        main_key=main_key,
        main_size=main_size,
        keys=tuple(keys),
        index_key=idx_key,
        content_hash=digest.hexdigest(),
        l_sizes=inspection.properties.l_sizes,
    )
