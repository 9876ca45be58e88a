"""Open slide readers, shared by all requests.

Opening a slide costs storage requests and parsing, so readers are kept open (LRU, bounded)
and reused across requests and threads. A reader that failed to decode is evicted, so the
next request reopens it: OpenSlide errors latch, and a transient storage error must not
poison a slide for good."""

from __future__ import annotations

import contextlib
import shutil
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from storage import ObjectStore, StorageError
from storage.rangefile import unpack_spans
from tiles.errors import CorruptSlide, SlideUnavailable
from tiles.formats import ReaderKind
from tiles.location import SlideLocation, original_key
from tiles.readers.base import SlideReader
from tiles.readers.openslide import OpenSlideReader
from tiles.readers.tiff import TiffReader

T = TypeVar("T")

_COMPLETE = ".complete"


class LocalCopies:
    """Local copies of slides that OpenSlide must read from a file (DICOM, MRXS...),
    bounded in bytes; the least recently used copies not in use are removed first."""

    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self._lock = threading.Lock()

    def path(self, store: ObjectStore, loc: SlideLocation, in_use: set[str]) -> Path:
        folder = self.root / loc.slide_id
        marker = folder / _COMPLETE
        prefix = original_key(loc.slide_id, "")
        with self._lock:
            if not marker.exists():
                shutil.rmtree(folder, ignore_errors=True)
                for key in loc.keys:
                    dest = folder / key.removeprefix(prefix)
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    store.download(key, str(dest))
                marker.touch()
            else:
                marker.touch()  # the marker's mtime is the last use
            self._evict(keep=in_use | {loc.slide_id})
        return folder / loc.main_key.removeprefix(prefix)

    def _evict(self, keep: set[str]) -> None:
        if not self.root.exists():
            return
        entries = []
        total = 0
        for folder in self.root.iterdir():
            size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
            total += size
            marker = folder / _COMPLETE
            used = marker.stat().st_mtime if marker.exists() else 0.0
            entries.append((used, folder, size))
        for _used, folder, size in sorted(entries):
            if total <= self.max_bytes:
                break
            if folder.name not in keep:
                shutil.rmtree(folder, ignore_errors=True)
                total -= size


def _reader_key(loc: SlideLocation) -> str:
    # One slide may have two readers: its original and its normalised pyramid.
    return f"{loc.slide_id}\0{loc.main_key}"


class ReaderPool:
    def __init__(
        self,
        store: ObjectStore,
        cache_dir: Path,
        *,
        max_open: int = 64,
        local_copy_bytes: int = 4 * 1024**3,
    ) -> None:
        self.store = store
        self.max_open = max_open
        self.copies = LocalCopies(cache_dir / "local-copies", local_copy_bytes)
        self._readers: OrderedDict[str, SlideReader] = OrderedDict()
        self._lock = threading.Lock()
        self._opening: dict[str, threading.Lock] = {}

    def get(self, loc: SlideLocation) -> SlideReader:
        key = _reader_key(loc)
        with self._lock:
            reader = self._readers.get(key)
            if reader is not None:
                self._readers.move_to_end(key)
                return reader
            opening = self._opening.setdefault(key, threading.Lock())
        # One thread opens a given slide; others wait for it rather than open it twice.
        with opening:
            with self._lock:
                reader = self._readers.get(key)
            if reader is None:
                reader = self._open(loc)
                with self._lock:
                    self._readers[key] = reader
                    self._opening.pop(key, None)
                    while len(self._readers) > self.max_open:
                        _, old = self._readers.popitem(last=False)
                        old.close()
        return reader

    def peek(self, loc: SlideLocation) -> SlideReader | None:
        """The slide's reader if it is open already (never opens one: no I/O)."""
        with self._lock:
            return self._readers.get(_reader_key(loc))

    def _open(self, loc: SlideLocation) -> SlideReader:
        try:
            if loc.kind is ReaderKind.TIFF:
                primed = unpack_spans(self.store.get(loc.index_key)) if loc.index_key else []

                def fetch(offset: int, length: int) -> bytes:
                    return self.store.get_range(loc.main_key, offset, length)

                return TiffReader(fetch, loc.main_size, primed=primed)
            with self._lock:
                in_use = {key.split("\0")[0] for key in self._readers}
            return OpenSlideReader(str(self.copies.path(self.store, loc, in_use)))
        except StorageError as exc:
            raise SlideUnavailable(f"slide data unavailable: {exc}") from exc

    def evict(self, slide_id: str) -> None:
        """Closes every reader of the slide (original and pyramid)."""
        with self._lock:
            keys = [k for k in self._readers if k.split("\0")[0] == slide_id]
            readers = [self._readers.pop(k) for k in keys]
        for reader in readers:
            with contextlib.suppress(Exception):
                reader.close()

    def run(self, loc: SlideLocation, task: Callable[[SlideReader], T]) -> T:
        """Runs `task` on the slide's reader; evicts the reader if it fails."""
        reader = self.get(loc)
        try:
            return task(reader)
        except CorruptSlide:
            self.evict(loc.slide_id)
            raise
        except StorageError as exc:
            self.evict(loc.slide_id)
            raise SlideUnavailable(f"slide data unavailable: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            readers = list(self._readers.values())
            self._readers.clear()
        for reader in readers:
            with contextlib.suppress(Exception):
                reader.close()
