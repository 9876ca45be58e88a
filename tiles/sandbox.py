"""Untrusted slide files are parsed in a child process with a memory and a time limit.

A parser that crashes (a segfault in a C decoder), loops, or allocates without bound takes
down only the child: the caller gets a CorruptSlide saying so, and nothing else is lost.

The child's answer is data, never code: a JSON document of a fixed shape (PROTOCOL below)
in length-prefixed frames, that the parent decodes strictly. A parser exploit that takes
over the child can send a wrong answer, which is refused like a damaged file.

Before it parses, the child is confined (tiles.isolation.confine_parser): no secret in
its environment and, where the kernel allows user namespaces, no network and no access
to its parents' /proc files. It still runs as the hub's user on the same file system."""

from __future__ import annotations

import math
import multiprocessing
import resource
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path, PurePosixPath
from typing import Any

from tiles.errors import (
    CorruptSlide,
    ImageNotFound,
    InvalidRequest,
    SlideNotFound,
    SlideUnavailable,
    TileNotFound,
    TilesError,
    UnsupportedSlide,
)
from tiles.formats import ReaderKind, SlideFiles
from tiles.frames import InvalidReply, expect_int, expect_list, expect_obj, expect_str
from tiles.frames import TimedOut as _TimedOut
from tiles.frames import encode as _encode
from tiles.frames import frame as _frame
from tiles.frames import parse as _parse
from tiles.frames import quote as _quote
from tiles.frames import recv_frame as _recv_frame
from tiles.frames import send_all as _send_all
from tiles.geometry import Size
from tiles.ingest import MAX_SIDE, Inspection, inspect_slide, inspect_stored
from tiles.isolation import confine_parser
from tiles.labels import MAX_CODES, MAX_TEXT, Barcode
from tiles.readers.base import SlideProperties

DEFAULT_TIMEOUT_S = 120.0
DEFAULT_MEMORY_BYTES = 4 * 1024**3

# Forkserver: children fork from a small server that has imported the readers once, so a
# sandboxed inspection costs milliseconds, and never inherits the caller's threads or locks.
_CONTEXT = multiprocessing.get_context("forkserver")
_CONTEXT.set_forkserver_preload(["tiles.ingest"])

# --- PROTOCOL ------------------------------------------------------------------------------
#
# Child -> parent: frames (tiles.frames) of an 8-byte big-endian length and that many bytes;
# each frame a UTF-8 JSON object, except the raw header pack that follows an answer declaring
# one:
#   {"op": "read", "offset": int >= 0, "length": int >= 0}    (in place only: bytes, please)
#   {"op": "done", "outcome": "refused", "error": {"type": <ERROR_TYPES key>, "message": str}}
#   {"op": "done", "outcome": "needs-copy"}                    (in place only: not TIFF)
#   {"op": "done", "outcome": "inspected", "inspection": {
#       "root": str, "main": relative path, "files": [relative path, ...],
#       "kind": "tiff" | "openslide", "vendor": str | null,
#       "properties": {"vendor": str, "levels": [[width, height], ...],
#                      "mpp_x": float | null, "mpp_y": float | null,
#                      "objective_power": float | null, "associated": [str, ...],
#                      "metadata": {str: str}},
#       "index_bytes": int | null, "size_bytes": int | null,
#       "barcodes": [{"format": str, "text": str}, ...]}}          (tiles.labels' bounds)
# Parent -> child (in place): each read answered by raw chunks, an empty one ending it.

MAX_MESSAGE_BYTES = 16 * 1024**2  # a JSON frame: vendor metadata is the bulk of it
MAX_INDEX_BYTES = 64 * 1024**2  # a header pack: tile offsets of a very large slide
MAX_LEVELS = 256
MAX_FILES = 100_000
MAX_NAME_CHARS = 1024  # vendors, associated image names, path parts
MAX_ERROR_CHARS = 4096
MAX_FORMAT_CHARS = 64  # a barcode format's name ("DataMatrix")

ERROR_TYPES: dict[str, type[TilesError]] = {
    cls.__name__: cls
    for cls in (
        TilesError,
        SlideNotFound,
        TileNotFound,
        InvalidRequest,
        UnsupportedSlide,
        CorruptSlide,
        SlideUnavailable,
        ImageNotFound,
    )
}


# --- Child side ----------------------------------------------------------------------------


def _error_type(exc: TilesError) -> str:
    """The nearest class of the protocol's list (a subclass elsewhere is named by its base)."""
    return next(cls.__name__ for cls in type(exc).__mro__ if cls.__name__ in ERROR_TYPES)


def _send_result(conn: Connection, result: Inspection | TilesError | None) -> None:
    _send_all(conn, encode_answer(result))


def encode_answer(result: Inspection | TilesError | None) -> bytes:
    """The frames that carry a child's result to the parent (see PROTOCOL)."""
    if result is None:
        return _frame(_encode({"op": "done", "outcome": "needs-copy"}))
    if isinstance(result, TilesError):
        return _refused(_error_type(result), result.message)
    files, props = result.files, result.properties
    inspection = {
        "root": str(files.root),
        "main": files.relative(files.main),
        "files": [files.relative(p) for p in files.files],
        "kind": files.kind.value,
        "vendor": files.vendor,
        "properties": {
            "vendor": props.vendor,
            "levels": [[s.width, s.height] for s in props.l_sizes],
            "mpp_x": props.mpp_x,
            "mpp_y": props.mpp_y,
            "objective_power": props.objective_power,
            "associated": list(props.associated),
            "metadata": props.vendor_metadata,
        },
        "index_bytes": None if result.index is None else len(result.index),
        "size_bytes": result.size_bytes,
        "barcodes": [{"format": b.format, "text": b.text} for b in result.barcodes],
    }
    try:
        answer = _encode({"op": "done", "outcome": "inspected", "inspection": inspection})
    except (TypeError, ValueError) as exc:  # a value JSON cannot carry: say so, not crash
        return _refused("CorruptSlide", f"{files.main.name}: {exc}")
    return _frame(answer) + (b"" if result.index is None else _frame(result.index))


def _refused(kind: str, message: str) -> bytes:
    if len(message) > MAX_ERROR_CHARS:
        message = message[: MAX_ERROR_CHARS - 1] + "…"
    error = {"type": kind, "message": message}
    return _frame(_encode({"op": "done", "outcome": "refused", "error": error}))


def _guarded(name: str, inspect: Callable[[], Inspection | None]) -> Inspection | TilesError | None:
    try:
        return inspect()
    except TilesError as exc:
        return exc
    except MemoryError:
        return CorruptSlide(f"{name}: needs more memory than allowed to parse")
    except Exception as exc:  # a parser bug: report it, never crash the caller
        return CorruptSlide(f"{name}: cannot be parsed ({type(exc).__name__}: {exc})")


def _enter_child(memory_bytes: int) -> None:
    """First thing in every parser child, before any thread starts: the confinement of
    tiles.isolation, then the memory limit."""
    confine_parser()
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))


def _child(path: str, memory_bytes: int, conn: Connection) -> None:
    _enter_child(memory_bytes)
    _send_result(conn, _guarded(Path(path).name, lambda: inspect_slide(Path(path))))
    conn.close()


# --- Parent side: decoding answers (frames are read by tiles.frames) ----------------------


# The generic checks are tiles.frames'; these name the protocol's own limits.
_obj, _int, _list = expect_obj, expect_int, expect_list


def _str(value: object, what: str, limit: int = MAX_NAME_CHARS) -> str:
    return expect_str(value, what, limit)


def _optional_str(value: object, what: str) -> str | None:
    return None if value is None else _str(value, what)


def _optional_float(value: object, what: str) -> float | None:
    if value is None:
        return None
    # Readers keep only positive, finite values (tiles.readers.base.parse_float).
    if type(value) is not float or not (math.isfinite(value) and value > 0):
        raise InvalidReply(f"{what} is not a positive number")
    return value


def _relative(value: object, root: Path, what: str) -> Path:
    """A path the child names, confined to the inspected root: relative, no `..`."""
    text = _str(value, what, 4 * MAX_NAME_CHARS)
    pure = PurePosixPath(text)
    if (
        not text
        or pure.is_absolute()
        or pure.as_posix() != text
        or any(part in ("", ".", "..") for part in pure.parts)
        or "\x00" in text
    ):
        raise InvalidReply(f"{what} {_quote(text)} is not a path inside the slide's folder")
    return root.joinpath(*pure.parts)


@dataclass(frozen=True)
class _Expected:
    """What the parent knows of the answer before it comes."""

    name: str  # the file's name, for messages
    root: Path
    main: Path | None  # the main file, when the parent named it
    size: int | None  # in place: the stored object's size
    in_place: bool


def _decode_error(message: dict[str, Any]) -> TilesError:
    error = _obj(message.get("error"), "error", {"type", "message"})
    kind = _str(error["type"], "error type")
    if kind not in ERROR_TYPES:
        raise InvalidReply(f"error type {_quote(kind)} is unknown")
    return ERROR_TYPES[kind](_str(error["message"], "error message", MAX_ERROR_CHARS))


def _decode_properties(value: object) -> SlideProperties:
    props = _obj(
        value,
        "properties",
        {"vendor", "levels", "mpp_x", "mpp_y", "objective_power", "associated", "metadata"},
    )
    levels = _list(props["levels"], "levels", MAX_LEVELS)
    if not levels:
        raise InvalidReply("a slide without levels")
    sizes = []
    for level in levels:
        pair = _list(level, "a level size", 2)
        if len(pair) != 2:
            raise InvalidReply("a level size is not [width, height]")
        sizes.append(Size(*(_int(n, "a level side", 0, MAX_SIDE) for n in pair)))
    metadata = _obj(props["metadata"], "metadata")
    for key, text in metadata.items():
        _str(key, "a metadata name")
        _str(text, f"metadata {_quote(key)}", MAX_MESSAGE_BYTES)
    return SlideProperties(
        vendor=_str(props["vendor"], "vendor"),
        l_sizes=tuple(sizes),
        mpp_x=_optional_float(props["mpp_x"], "mpp_x"),
        mpp_y=_optional_float(props["mpp_y"], "mpp_y"),
        objective_power=_optional_float(props["objective_power"], "objective_power"),
        associated=tuple(
            _str(n, "an associated image name")
            for n in _list(props["associated"], "associated", MAX_LEVELS)
        ),
        vendor_metadata=metadata,
    )


def _decode_inspection(value: object, expected: _Expected) -> tuple[Inspection, int | None]:
    """The Inspection an answer describes, and the length of the header pack that follows."""
    body = _obj(
        value,
        "inspection",
        {
            "root",
            "main",
            "files",
            "kind",
            "vendor",
            "properties",
            "index_bytes",
            "size_bytes",
            "barcodes",
        },
    )
    root = expected.root
    if _str(body["root"], "root", 64 * MAX_NAME_CHARS) != str(root):
        raise InvalidReply("root is not the inspected folder")
    main = _relative(body["main"], root, "main")
    files = tuple(_relative(p, root, "a file") for p in _list(body["files"], "files", MAX_FILES))
    if main not in files:
        raise InvalidReply("main is not one of the files")
    if expected.main is not None and main != expected.main:
        raise InvalidReply("main is not the inspected file")
    if expected.in_place and files != (main,):
        raise InvalidReply("a slide in storage is one file")
    kind = _str(body["kind"], "kind")
    if kind not in {k.value for k in ReaderKind}:
        raise InvalidReply(f"reader kind {_quote(kind)} is unknown")
    if expected.in_place and kind != ReaderKind.TIFF:
        raise InvalidReply("a slide in storage is read by the TIFF reader")
    if body["index_bytes"] is None:
        index_bytes = None
    else:
        index_bytes = _int(body["index_bytes"], "index_bytes", 0, MAX_INDEX_BYTES)
    if expected.in_place and index_bytes is None:
        raise InvalidReply("a TIFF slide without its header pack")
    if expected.size is None:
        if body["size_bytes"] is not None:
            raise InvalidReply("size_bytes of files on disk")
    elif _int(body["size_bytes"], "size_bytes", 0, 2**63) != expected.size:
        raise InvalidReply("size_bytes is not the stored object's size")
    slide_files = SlideFiles(
        main=main,
        files=files,
        root=root,
        kind=ReaderKind(kind),
        vendor=_optional_str(body["vendor"], "vendor"),
    )
    properties = _decode_properties(body["properties"])
    inspection = Inspection(
        files=slide_files,
        properties=properties,
        index=None,
        size_bytes=expected.size,
        barcodes=_decode_barcodes(body["barcodes"]),
    )
    return inspection, index_bytes


def _decode_barcodes(value: object) -> tuple[Barcode, ...]:
    """The label's codes: as tiles.labels gives them (named, not empty, each once)."""
    codes: list[Barcode] = []
    for item in _list(value, "barcodes", MAX_CODES):
        code = _obj(item, "a barcode", {"format", "text"})
        barcode = Barcode(
            format=_str(code["format"], "a barcode format", MAX_FORMAT_CHARS),
            text=_str(code["text"], "a barcode text", MAX_TEXT),
        )
        if not barcode.format or not barcode.text:
            raise InvalidReply("a barcode without format or text")
        if barcode in codes:
            raise InvalidReply("a barcode given twice")
        codes.append(barcode)
    return tuple(codes)


def _receive_result(
    conn: Connection, message: dict[str, Any], expected: _Expected, deadline: float
) -> Inspection | TilesError | None:
    """The result a "done" message (and the header pack frame after it) gives."""
    outcome = message.get("outcome")
    if outcome == "refused":
        _obj(message, "answer", {"op", "outcome", "error"})
        return _decode_error(message)
    if outcome == "needs-copy" and expected.in_place:
        _obj(message, "answer", {"op", "outcome"})
        return None
    if outcome != "inspected":
        raise InvalidReply(f"outcome {_quote(outcome)} is not one of the protocol")
    _obj(message, "answer", {"op", "outcome", "inspection"})
    inspection, index_bytes = _decode_inspection(message["inspection"], expected)
    if index_bytes is None:
        return inspection
    index = _recv_frame(conn, deadline, MAX_INDEX_BYTES)
    if len(index) != index_bytes:
        raise InvalidReply("the header pack is not of the declared length")
    return Inspection(
        files=inspection.files,
        properties=inspection.properties,
        index=index,
        size_bytes=inspection.size_bytes,
        barcodes=inspection.barcodes,
    )


def _refusal(name: str, exc: InvalidReply) -> CorruptSlide:
    return CorruptSlide(f"{name}: the parser sent an invalid answer ({exc})")


# --- On disk -------------------------------------------------------------------------------


def inspect_in_sandbox(
    path: Path,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    memory_bytes: int = DEFAULT_MEMORY_BYTES,
) -> Inspection:
    """inspect_slide() in a child process; raises a TilesError on refusal, crash, timeout
    or an answer that does not follow the protocol."""
    # formats.collect: a folder holds its slide's files, a file's slide lies beside it.
    folder = path.is_dir()
    expected = _Expected(
        name=path.name,
        root=path if folder else path.parent,
        main=None if folder else path,
        size=None,
        in_place=False,
    )
    return _run_on_disk(_child, (str(path), memory_bytes), expected, timeout_s)


def _run_on_disk(
    target: Callable[..., None], args: tuple[object, ...], expected: _Expected, timeout_s: float
) -> Inspection:
    """Runs target(*args, conn) in a child and decodes the answer it writes on conn."""
    receiver, sender = _CONTEXT.Pipe(duplex=False)
    child = _CONTEXT.Process(target=target, args=(*args, sender), daemon=True)
    child.start()
    deadline = time.monotonic() + timeout_s
    sender.close()
    name = expected.name
    try:
        message = _parse(_recv_frame(receiver, deadline, MAX_MESSAGE_BYTES))
        if message.get("op") != "done":
            raise InvalidReply("an answer that is no result")
        result = _receive_result(receiver, message, expected, deadline)
    except _TimedOut:
        raise CorruptSlide(f"{name}: parsing took longer than {timeout_s:g} s") from None
    except (EOFError, OSError):
        child.join(5)
        raise CorruptSlide(f"{name}: the parser crashed (exit code {child.exitcode})") from None
    except InvalidReply as exc:
        raise _refusal(name, exc) from None
    finally:
        receiver.close()
        if child.is_alive():
            child.kill()
        child.join(5)
    if isinstance(result, TilesError):
        raise result
    if result is None:
        raise _refusal(name, InvalidReply("no inspection of a file on disk"))
    return result


# --- In place: the child reads the stored object through the parent ---------------------------
#
# The child asks for byte ranges over its pipe and the parent reads them from storage, so
# the untrusted parser needs no store and is given no store credentials. What else it
# cannot reach is tiles.isolation's: no secret in its environment, and where the kernel
# allows user namespaces, no network and no /proc files of its parents. Not isolated: it
# runs as the hub's user, so files that user may read or write are open to it. Replies
# go in chunks, so the parent holds one chunk at a time.

_REPLY_CHUNK = 4 * 1024 * 1024
Read = Callable[[int, int], bytes]


def _stored_child(size: int, main: str, root: str, memory_bytes: int, conn: Connection) -> None:
    _enter_child(memory_bytes)
    lock = threading.Lock()  # one request in flight on the pipe

    def fetch(offset: int, length: int) -> bytes:
        with lock:
            _send_all(conn, _frame(_encode({"op": "read", "offset": offset, "length": length})))
            chunks = []
            while chunk := conn.recv_bytes():  # an empty message ends the reply
                chunks.append(chunk)
            return b"".join(chunks)

    name = Path(main).name
    _send_result(conn, _guarded(name, lambda: inspect_stored(fetch, size, Path(main), Path(root))))
    conn.close()


def inspect_stored_in_sandbox(
    read: Read,
    size: int,
    main: Path,
    root: Path,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    memory_bytes: int = DEFAULT_MEMORY_BYTES,
) -> Inspection | None:
    """inspect_stored() in a child process with the same limits as inspect_in_sandbox():
    `read(offset, length)` reads the stored object (a store's get_range). Returns None when
    the file needs a local copy (not of the TIFF family); raises a TilesError on refusal,
    crash, timeout or an invalid answer, and the read's own error (a StorageError) when
    storage fails."""
    expected = _Expected(name=main.name, root=root, main=main, size=size, in_place=True)
    args = (size, str(main), str(root), memory_bytes)
    return _run_in_place(_stored_child, args, read, size, expected, timeout_s)


def _run_in_place(
    target: Callable[..., None],
    args: tuple[object, ...],
    read: Read,
    size: int,
    expected: _Expected,
    timeout_s: float,
) -> Inspection | None:
    """Runs target(*args, conn) in a child, serving its reads, and decodes its answer."""
    conn, child_end = _CONTEXT.Pipe(duplex=True)
    child = _CONTEXT.Process(target=target, args=(*args, child_end), daemon=True)
    child.start()
    deadline = time.monotonic() + timeout_s
    child_end.close()
    expired = threading.Event()

    def expire() -> None:
        # Killing the child also ends a reply the parent is blocked sending.
        expired.set()
        child.kill()

    timer = threading.Timer(timeout_s, expire)
    timer.start()
    name = expected.name
    result: Inspection | TilesError | _Crashed | None
    try:
        result = _serve(conn, read, size, expected, deadline)
    except _TimedOut:
        expired.set()
        result = _Crashed()
    except (EOFError, OSError):
        result = _Crashed()
    except InvalidReply as exc:
        result = _refusal(name, exc)
    finally:
        timer.cancel()
        conn.close()
        if child.is_alive():
            child.kill()
        child.join(5)
    if isinstance(result, _Crashed):
        if expired.is_set():
            raise CorruptSlide(f"{name}: parsing took longer than {timeout_s:g} s")
        raise CorruptSlide(f"{name}: the parser crashed (exit code {child.exitcode})")
    if isinstance(result, TilesError):
        raise result
    return result


class _Crashed:
    """The child went away without an answer."""


def _serve(
    conn: Connection, read: Read, size: int, expected: _Expected, deadline: float
) -> Inspection | TilesError | None:
    """Answers the child's reads until it sends its result."""
    while True:
        message = _parse(_recv_frame(conn, deadline, MAX_MESSAGE_BYTES))
        op = message.get("op")
        if op == "done":
            return _receive_result(conn, message, expected, deadline)
        if op != "read":
            raise InvalidReply(f"op {_quote(op)} is not one of the protocol")
        _obj(message, "read request", {"op", "offset", "length"})
        offset = _int(message["offset"], "offset", 0, 2**63)
        length = _int(message["length"], "length", 0, 2**63)
        # Like pread on a local file: a read past the end comes back short.
        start = min(offset, size)
        end = min(size, start + length)
        for pos in range(start, end, _REPLY_CHUNK):
            conn.send_bytes(read(pos, min(_REPLY_CHUNK, end - pos)))
        conn.send_bytes(b"")


# --- A look inside: what a confined child sees ------------------------------------------------


def _probe_child(probe: Callable[[], str], memory_bytes: int, conn: Connection) -> None:
    _enter_child(memory_bytes)
    _send_all(conn, _frame(probe().encode()))
    conn.close()


def run_confined(probe: Callable[[], str], *, timeout_s: float = 30.0) -> str:
    """probe() (picklable, our code: no parser) run in a child confined as the parser's
    are; its text. Tests check the confinement with it (tiles.isolation's probes)."""
    receiver, sender = _CONTEXT.Pipe(duplex=False)
    args = (probe, DEFAULT_MEMORY_BYTES, sender)
    child = _CONTEXT.Process(target=_probe_child, args=args, daemon=True)
    child.start()
    sender.close()
    try:
        deadline = time.monotonic() + timeout_s
        return _recv_frame(receiver, deadline, MAX_MESSAGE_BYTES).decode()
    finally:
        receiver.close()
        if child.is_alive():
            child.kill()
        child.join(5)
