"""What a child process taken over by a crafted slide could send the hub, for the tests of
the data-only protocols (tiles.frames, used by tiles.sandbox and exchange.slides.conversion).
Frames are written here by hand, not with the code under test."""

from __future__ import annotations

import os
import struct
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any


class RunsCommand:
    """The classic pickle exploit: unpickling it runs a shell command."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[Callable[[str], int], tuple[str]]:
        return os.system, (self.command,)


def frame(data: bytes) -> bytes:
    return struct.pack("!Q", len(data)) + data


def replay(data: bytes, stall_s: float, conn: Connection) -> None:
    """The compromised child: writes `data` as is, then lingers `stall_s`."""
    view = memoryview(data)
    while view:
        view = view[os.write(conn.fileno(), view) :]
    time.sleep(stall_s)
    conn.close()


def set_at(*keys: str | int, value: object) -> Callable[[dict[str, Any]], None]:
    """A change to a message: the value at that path set to `value`."""

    def change(message: dict[str, Any]) -> None:
        target: Any = message
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value

    return change


def drop_at(*keys: str) -> Callable[[dict[str, Any]], None]:
    """A change to a message: the key at that path removed."""

    def change(message: dict[str, Any]) -> None:
        target: Any = message
        for key in keys[:-1]:
            target = target[key]
        del target[keys[-1]]

    return change
