"""Untrusted slide files are parsed in a child process with a memory and a time limit.

A parser that crashes (a segfault in a C decoder), loops, or allocates without bound takes
down only the child: the caller gets a CorruptSlide saying so, and nothing else is lost."""

from __future__ import annotations

import multiprocessing
import resource
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path

from tiles.errors import CorruptSlide, TilesError
from tiles.ingest import Inspection, inspect_slide, inspect_stored

DEFAULT_TIMEOUT_S = 120.0
DEFAULT_MEMORY_BYTES = 4 * 1024**3

# Forkserver: children fork from a small server that has imported the readers once, so a
# sandboxed inspection costs milliseconds, and never inherits the caller's threads or locks.
_CONTEXT = multiprocessing.get_context("forkserver")
_CONTEXT.set_forkserver_preload(["tiles.ingest"])


def _guarded(name: str, inspect: Callable[[], Inspection | None]) -> Inspection | TilesError | None:
    try:
        return inspect()
    except TilesError as exc:
        return exc
    except MemoryError:
        return CorruptSlide(f"{name}: needs more memory than allowed to parse")
    except Exception as exc:  # a parser bug: report it, never crash the caller
        return CorruptSlide(f"{name}: cannot be parsed ({type(exc).__name__}: {exc})")


def _child(path: str, memory_bytes: int, conn: Connection) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    conn.send(_guarded(Path(path).name, lambda: inspect_slide(Path(path))))
    conn.close()


def inspect_in_sandbox(
    path: Path,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    memory_bytes: int = DEFAULT_MEMORY_BYTES,
) -> Inspection:
    """inspect_slide() in a child process; raises a TilesError on refusal, crash or timeout."""
    receiver, sender = _CONTEXT.Pipe(duplex=False)
    child = _CONTEXT.Process(target=_child, args=(str(path), memory_bytes, sender), daemon=True)
    child.start()
    sender.close()
    try:
        if not receiver.poll(timeout_s):
            raise CorruptSlide(f"{path.name}: parsing took longer than {timeout_s:g} s")
        try:
            result = receiver.recv()
        except EOFError:
            child.join(5)
            raise CorruptSlide(
                f"{path.name}: the parser crashed (exit code {child.exitcode})"
            ) from None
    finally:
        receiver.close()
        if child.is_alive():
            child.kill()
        child.join(5)
    if isinstance(result, TilesError):
        raise result
    assert isinstance(result, Inspection)
    return result


# --- In place: the child reads the stored object through the parent ---------------------------
#
# The child asks for byte ranges over its pipe and the parent reads them from storage: the
# untrusted parser gets the bytes it asks for and nothing else (no credentials, no network),
# whatever the store. Replies go in chunks, so the parent holds one chunk at a time.

_REPLY_CHUNK = 4 * 1024 * 1024
Read = Callable[[int, int], bytes]


def _stored_child(size: int, main: str, root: str, memory_bytes: int, conn: Connection) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    lock = threading.Lock()  # one request in flight on the pipe

    def fetch(offset: int, length: int) -> bytes:
        with lock:
            conn.send(("read", offset, length))
            chunks = []
            while chunk := conn.recv_bytes():  # an empty message ends the reply
                chunks.append(chunk)
            return b"".join(chunks)

    name = Path(main).name
    result = _guarded(name, lambda: inspect_stored(fetch, size, Path(main), Path(root)))
    conn.send(("done", result))
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
    crash or timeout, and the read's own error (a StorageError) when storage fails."""
    conn, child_end = _CONTEXT.Pipe(duplex=True)
    child = _CONTEXT.Process(
        target=_stored_child,
        args=(size, str(main), str(root), memory_bytes, child_end),
        daemon=True,
    )
    child.start()
    child_end.close()
    expired = threading.Event()

    def expire() -> None:
        # Killing the child also ends a reply the parent is blocked sending.
        expired.set()
        child.kill()

    timer = threading.Timer(timeout_s, expire)
    timer.start()
    result: Inspection | TilesError | _Crashed | None
    try:
        result = _serve(conn, read, size)
    except (EOFError, OSError):
        result = _Crashed()
    finally:
        timer.cancel()
        conn.close()
        if child.is_alive():
            child.kill()
        child.join(5)
    if isinstance(result, _Crashed):
        if expired.is_set():
            raise CorruptSlide(f"{main.name}: parsing took longer than {timeout_s:g} s")
        raise CorruptSlide(f"{main.name}: the parser crashed (exit code {child.exitcode})")
    if isinstance(result, TilesError):
        raise result
    assert result is None or isinstance(result, Inspection)
    return result


class _Crashed:
    """The child went away without an answer."""


def _serve(conn: Connection, read: Read, size: int) -> Inspection | TilesError | None:
    """Answers the child's reads until it sends its result."""
    while True:
        message = conn.recv()
        if isinstance(message, tuple) and len(message) == 2 and message[0] == "done":
            result: Inspection | TilesError | None = message[1]
            return result
        if not (
            isinstance(message, tuple)
            and len(message) == 3
            and message[0] == "read"
            and all(isinstance(n, int) for n in message[1:])
        ):
            return CorruptSlide("the parser sent a malformed request")
        _, offset, length = message
        # Like pread on a local file: a read past the end comes back short.
        start = max(0, min(offset, size))
        end = min(size, start + max(0, length))
        for pos in range(start, end, _REPLY_CHUNK):
            conn.send_bytes(read(pos, min(_REPLY_CHUNK, end - pos)))
        conn.send_bytes(b"")
