"""A read-only, seekable file object over ranged reads of one stored object.

Parsers such as tifffile expect a file; a slide in object storage is read through this
with small aligned blocks instead of fsspec's large read-ahead, so a random tile costs one
small GET. Blocks can be primed from a saved "header pack" (the bytes a parser read at
ingest), so reopening a slide costs one GET for the pack and none for the parse."""

from __future__ import annotations

import io
import struct
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable

Fetch = Callable[[int, int], bytes]

_PACK_MAGIC = b"IAINPACK1"
_ENTRY = struct.Struct("<QI")


class RangeFile(io.RawIOBase):
    def __init__(
        self,
        fetch: Fetch,
        size: int,
        *,
        block_size: int = 64 * 1024,
        max_blocks: int = 256,
        primed: Iterable[tuple[int, bytes]] = (),
    ) -> None:
        super().__init__()
        self._fetch = fetch
        self._size = size
        self._pos = 0
        self._block_size = block_size
        self._max_blocks = max_blocks
        self._blocks: OrderedDict[int, bytes] = OrderedDict()
        # Primed spans are kept apart from the LRU blocks and never evicted.
        self._primed = sorted(primed)
        self._lock = threading.Lock()
        # Every span fetched, in order: at ingest this becomes the header pack.
        self.fetched: list[tuple[int, bytes]] = []

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            pos = offset
        elif whence == io.SEEK_CUR:
            pos = self._pos + offset
        elif whence == io.SEEK_END:
            pos = self._size + offset
        else:
            raise ValueError(f"bad whence {whence}")
        if pos < 0:
            raise OSError("negative seek position")
        self._pos = pos
        return pos

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        n = min(len(view), max(0, self._size - self._pos))
        if n == 0:
            return 0
        view[:n] = self.pread(self._pos, n)
        self._pos += n
        return n

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = max(0, self._size - self._pos)
        n = min(size, max(0, self._size - self._pos))
        if n == 0:
            return b""
        data = self.pread(self._pos, n)
        self._pos += n
        return data

    def pread(self, offset: int, length: int) -> bytes:
        """Reads bytes at an absolute offset without moving the file position."""
        with self._lock:
            primed = self._from_primed(offset, length)
            if primed is not None:
                return primed
            bs = self._block_size
            first, last = offset // bs, (offset + length - 1) // bs
            missing = [b for b in range(first, last + 1) if b not in self._blocks]
            if missing:
                # One request for the whole missing run (blocks between are usually missing too).
                start = missing[0] * bs
                end = min(self._size, (missing[-1] + 1) * bs)
                data = self._fetch(start, end - start)
                self.fetched.append((start, data))
                for b in range(missing[0], missing[-1] + 1):
                    self._blocks[b] = data[(b * bs - start) : (b + 1) * bs - start]
            parts = []
            for b in range(first, last + 1):
                self._blocks.move_to_end(b)
                parts.append(self._blocks[b])
            while len(self._blocks) > self._max_blocks:
                self._blocks.popitem(last=False)
            joined = b"".join(parts)
            skip = offset - first * bs
            return joined[skip : skip + length]

    def _from_primed(self, offset: int, length: int) -> bytes | None:
        for start, data in self._primed:
            if start <= offset and offset + length <= start + len(data):
                return data[offset - start : offset - start + length]
        return None


def pack_spans(spans: Iterable[tuple[int, bytes]]) -> bytes:
    """Merges overlapping or touching spans and serialises them."""
    merged: list[tuple[int, bytearray]] = []
    for start, data in sorted(spans, key=lambda s: s[0]):
        if merged and start <= merged[-1][0] + len(merged[-1][1]):
            m_start, m_data = merged[-1]
            overlap = m_start + len(m_data) - start
            if overlap < len(data):
                m_data += data[overlap:]
        else:
            merged.append((start, bytearray(data)))
    out = [_PACK_MAGIC, struct.pack("<I", len(merged))]
    out += [_ENTRY.pack(start, len(data)) for start, data in merged]
    out += [bytes(data) for _, data in merged]
    return b"".join(out)


def unpack_spans(pack: bytes) -> list[tuple[int, bytes]]:
    if not pack.startswith(_PACK_MAGIC):
        raise ValueError("not a header pack")
    pos = len(_PACK_MAGIC)
    (count,) = struct.unpack_from("<I", pack, pos)
    pos += 4
    entries = [_ENTRY.unpack_from(pack, pos + i * _ENTRY.size) for i in range(count)]
    pos += count * _ENTRY.size
    spans = []
    for start, length in entries:
        spans.append((start, pack[pos : pos + length]))
        pos += length
    return spans
