"""Untrusted slide files are parsed in a child process with a memory and a time limit.

A parser that crashes (a segfault in a C decoder), loops, or allocates without bound takes
down only the child: the caller gets a CorruptSlide saying so, and nothing else is lost."""

from __future__ import annotations

import multiprocessing
import resource
from multiprocessing.connection import Connection
from pathlib import Path

from tiles.errors import CorruptSlide, TilesError
from tiles.ingest import Inspection, inspect_slide

DEFAULT_TIMEOUT_S = 120.0
DEFAULT_MEMORY_BYTES = 4 * 1024**3

# Forkserver: children fork from a small server that has imported the readers once, so a
# sandboxed inspection costs milliseconds, and never inherits the caller's threads or locks.
_CONTEXT = multiprocessing.get_context("forkserver")
_CONTEXT.set_forkserver_preload(["tiles.ingest"])


def _child(path: str, memory_bytes: int, conn: Connection) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    try:
        result: Inspection | TilesError = inspect_slide(Path(path))
    except TilesError as exc:
        result = exc
    except MemoryError:
        result = CorruptSlide(f"{Path(path).name}: needs more memory than allowed to parse")
    except Exception as exc:  # a parser bug: report it, never crash the caller
        result = CorruptSlide(f"{Path(path).name}: cannot be parsed ({type(exc).__name__}: {exc})")
    conn.send(result)
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
