"""Data-only messages from a child process that handles untrusted bytes.

A child that parses a slide may be taken over by a crafted file: what it sends its parent
must be data the parent checks, never a pickle the parent would run. Messages go as frames
of an 8-byte big-endian length and that many bytes, most of them a UTF-8 JSON object; the
parent reads them with a deadline and a size limit and decodes them strictly (exact keys,
exact types, bounded sizes). The sandboxed inspection (tiles.sandbox) and the conversion
worker (exchange.slides.conversion) both speak this way; each defines its own messages."""

from __future__ import annotations

import json
import os
import struct
import time
from multiprocessing.connection import Connection, wait
from typing import Any

_FRAME = struct.Struct("!Q")


class InvalidReply(Exception):
    """The child's message does not follow the protocol (a bug, or an exploit)."""


class TimedOut(Exception):
    """The child sent nothing, or half a frame, before the deadline."""


# --- Child side ----------------------------------------------------------------------------


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, allow_nan=False).encode()


def frame(data: bytes) -> bytes:
    return _FRAME.pack(len(data)) + data


def send_all(conn: Connection, data: bytes) -> None:
    """Writes raw bytes on conn (not conn.send, which pickles)."""
    view = memoryview(data)
    while view:
        view = view[os.write(conn.fileno(), view) :]


# --- Parent side: reading frames -------------------------------------------------------------


def read_exact(conn: Connection, n: int, deadline: float) -> bytes:
    """n bytes from the child, or TimedOut at the deadline (a child that sends half a
    frame and stalls cannot hold the parent), or EOFError when it has gone."""
    buf = bytearray()
    while len(buf) < n:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not wait([conn], remaining):  # poll(): any fd number
            raise TimedOut
        chunk = os.read(conn.fileno(), min(n - len(buf), 1024 * 1024))
        if not chunk:
            raise EOFError
        buf += chunk
    return bytes(buf)


def recv_frame(conn: Connection, deadline: float, limit: int) -> bytes:
    """One frame's bytes; InvalidReply on a declared length over `limit`, before reading it."""
    (length,) = _FRAME.unpack(read_exact(conn, _FRAME.size, deadline))
    if length > limit:
        raise InvalidReply(f"a message of {length} bytes, at most {limit} allowed")
    return read_exact(conn, length, deadline)


# --- Parent side: strict decoding ----------------------------------------------------------


def _no_constant(name: str) -> Any:
    raise InvalidReply(f"{name} is not a number of the protocol")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise InvalidReply("a repeated key")
    return obj


def parse(data: bytes) -> dict[str, Any]:
    """A frame's JSON object (no NaN or Infinity, no repeated keys)."""
    try:
        message = json.loads(
            data.decode("utf-8"), parse_constant=_no_constant, object_pairs_hook=_unique_keys
        )
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise InvalidReply("not a JSON message") from exc
    return expect_obj(message, "message")


def expect_obj(value: object, what: str, keys: set[str] | None = None) -> dict[str, Any]:
    """An object, with exactly `keys` when given. The child's keys are never echoed."""
    if type(value) is not dict:
        raise InvalidReply(f"{what} is not an object")
    if keys is not None and set(value) != keys:
        missing, unknown = sorted(keys - set(value)), len(set(value) - keys)
        faults = [f"lacks {', '.join(missing)}"] if missing else []
        faults += [f"has {unknown} unknown key(s)"] if unknown else []
        raise InvalidReply(f"{what} {' and '.join(faults)}")
    return value


def quote(value: object) -> str:
    """A value of the child's in a message: short, whatever its length."""
    text = repr(value)
    return text if len(text) <= 40 else text[:39] + "…"


def expect_int(value: object, what: str, low: int, high: int) -> int:
    if type(value) is not int or not low <= value <= high:  # bool is not int here
        raise InvalidReply(f"{what} is not an integer from {low} to {high}")
    return value


def expect_str(value: object, what: str, limit: int) -> str:
    if type(value) is not str or len(value) > limit:
        raise InvalidReply(f"{what} is not a text of at most {limit} characters")
    return value


def expect_list(value: object, what: str, limit: int) -> list[Any]:
    if type(value) is not list or len(value) > limit:
        raise InvalidReply(f"{what} is not a list of at most {limit} items")
    return value
