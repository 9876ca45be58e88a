"""Conversion jobs: each ingested slide gets its normalised pyramid (tiles.convert), built
in a worker process.

A job lives in the catalogue (models.Conversion) and the slide's status mirrors it:
queued -> converting (percent) -> ready, or failed (error). A worker process may crash,
run out of memory or be killed: only it dies; its supervisor (a thread of the hub, or the
`iain ingest` command) notices, retries once, then marks the slide failed with the reason.
Meanwhile, and after a failure, the slide is served from its original.

The worker parses the untrusted slide (our readers, libvips): what it sends back is data
that the supervisor decodes strictly (PROTOCOL below), never a pickle. A worker taken over
by a crafted slide can at worst send a wrong message, which fails the job with a reason."""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import os
import re
import resource
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update

from exchange.core.models import Conversion, Slide, utcnow
from exchange.core.statuses import FINISHED, ConversionStatus, SlideStatus
from exchange.slides.catalogue import Catalogue, location_of
from storage import ObjectStore, StorageError
from tiles.errors import TilesError
from tiles.frames import (
    InvalidReply,
    TimedOut,
    encode,
    expect_int,
    expect_list,
    expect_obj,
    expect_str,
    frame,
    parse,
    quote,
    recv_frame,
    send_all,
)
from tiles.geometry import Size
from tiles.ingest import MAX_SIDE
from tiles.isolation import confine_converter
from tiles.location import SlideLocation, original_key, slide_prefix

if TYPE_CHECKING:
    from tiles.convert import StoredPyramid

# A worker that dies is given one more chance: a kill by an operator or the OOM killer
# should not doom a slide, a file that crashes the converter every time should.
MAX_ATTEMPTS = 2
PROGRESS_INTERVAL_S = 0.5
IDLE_POLL_S = 0.5
ORPHAN_SWEEP_S = 60.0
STALE_S = 10.0

_CONTEXT = multiprocessing.get_context("forkserver")

# --- PROTOCOL ------------------------------------------------------------------------------
#
# Worker -> supervisor: frames of tiles.frames, each a UTF-8 JSON object:
#   {"op": "progress", "percent": float from 0 to 100}
#   {"op": "skipped", "reason": str}                 (served from the original, by rule)
#   {"op": "failed", "reason": str}
#   {"op": "done", "seconds": float >= 0, "reader": "libvips" | "reader",
#    "pyramid": {"key": "slides/<id>/pyramid-<build>.tiff",
#                "index_key": "slides/<id>/pyramid-<build>-index.bin",
#                "size": int, "content_hash": <sha256 hex>, "levels": [[width, height], ...]}}
# "died" is the supervisor's own verdict (the worker went away): no message can claim it.
# Supervisor -> worker: the job's arguments (ConversionConfig, SlideLocation), pickled by
# multiprocessing as the worker starts. They come from the hub (its settings, its catalogue),
# never from the slide, and a pickle is only unsafe to its reader (the worker): fine so.
# Not confined here: the worker holds the store's credentials (it downloads the original and
# uploads the pyramid), so a worker taken over could still write to the store.
# Confined (tiles.isolation.confine_converter): no other secret in its environment and,
# where the kernel allows user namespaces, no access to its parents' /proc files; it
# keeps the network (storage) and the file system of the hub's user.

MAX_MESSAGE_BYTES = 64 * 1024  # a reason of MAX_REASON_CHARS, JSON-escaped, fits
MAX_REASON_CHARS = 4096
MAX_LEVELS = 256
MAX_KEY_CHARS = 1024
# Once a frame has begun, the rest must follow this soon: a worker that sends half a
# message and stalls does not hold the job until its own (long) time limit.
MESSAGE_READ_S = 30.0
READERS = ("libvips", "reader")  # which path read the pixels (tiles.convert.convert_file)
_BUILD = re.compile(r"[0-9a-f]{12}")  # tiles.convert.store_pyramid's build ids
_SHA256 = re.compile(r"[0-9a-f]{64}")

Message = tuple[str, Any]


@dataclass(frozen=True)
class Pyramid:
    """A stored pyramid as the worker described it (tiles.convert.StoredPyramid's fields;
    that module loads libvips, which the hub never does)."""

    key: str
    size: int
    index_key: str
    content_hash: str
    l_sizes: tuple[Size, ...]


@dataclass(frozen=True)
class ConversionConfig:
    """What a worker process needs; picklable (the store is rebuilt in the worker)."""

    store_factory: Callable[[], ObjectStore]
    work_dir: Path
    tile_size: int = 256
    jpeg_quality: int = 80
    timeout_s: float = 3600.0
    memory_bytes: int = 4 * 1024**3


@dataclass(frozen=True)
class Outcome:
    status: ConversionStatus  # ready, skipped, failed, or queued (a retry)
    detail: str | None = None


# -- the job table ------------------------------------------------------------------------------


def job(catalogue: Catalogue, slide_id: str) -> Conversion | None:
    with catalogue.session() as session:
        return session.get(Conversion, slide_id)


def _set(catalogue: Catalogue, slide_id: str, slide_status: str | None, **fields: Any) -> None:
    with catalogue.session() as session, session.begin():
        session.execute(
            update(Conversion)
            .where(Conversion.slide_id == slide_id)
            .values(updated_at=utcnow(), **fields)
        )
        if slide_status is not None:
            error = fields.get("error") if slide_status == SlideStatus.FAILED else None
            session.execute(
                update(Slide).where(Slide.id == slide_id).values(status=slide_status, error=error)
            )


def claim(catalogue: Catalogue, slide_id: str | None = None) -> str | None:
    """Marks a queued job (this slide's, or the oldest) as converting; returns its slide id,
    or None if there is none, or another worker took it first."""
    with catalogue.session() as session:
        query = select(Conversion.slide_id).where(Conversion.status == ConversionStatus.QUEUED)
        if slide_id is not None:
            query = query.where(Conversion.slide_id == slide_id)
        candidates = list(session.scalars(query.order_by(Conversion.updated_at).limit(5)))
    for candidate in candidates:
        with catalogue.session() as session, session.begin():
            taken = session.execute(
                update(Conversion)
                .where(
                    Conversion.slide_id == candidate, Conversion.status == ConversionStatus.QUEUED
                )
                .values(
                    status=ConversionStatus.CONVERTING,
                    percent=0.0,
                    attempts=Conversion.attempts + 1,
                    updated_at=utcnow(),
                )
            )
            if taken.rowcount == 1:  # type: ignore[attr-defined]
                session.execute(
                    update(Slide)
                    .where(Slide.id == candidate)
                    .values(status=ConversionStatus.CONVERTING, error=None)
                )
                return candidate
    return None


def requeue(catalogue: Catalogue, slide_id: str) -> bool:
    """Queues a slide's conversion again (after a failure, or to rebuild its pyramid)."""
    with catalogue.session() as session, session.begin():
        if session.get(Slide, slide_id) is None:
            return False
        conversion = session.get(Conversion, slide_id)
        if conversion is None:
            session.add(Conversion(slide_id=slide_id, status=ConversionStatus.QUEUED))
        elif conversion.status == ConversionStatus.CONVERTING:
            return True
        else:
            conversion.status, conversion.error, conversion.percent = (
                ConversionStatus.QUEUED,
                None,
                0.0,
            )
            conversion.attempts, conversion.updated_at = 0, utcnow()
        session.execute(
            update(Slide).where(Slide.id == slide_id).values(status=SlideStatus.QUEUED, error=None)
        )
    catalogue.forget(slide_id)
    return True


def _alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _quiet_for(conversion: Conversion, seconds: float) -> bool:
    return (utcnow() - conversion.updated_at).total_seconds() > seconds


def requeue_interrupted(catalogue: Catalogue) -> list[str]:
    """Jobs left `converting` by a hub or command that stopped: queued again. A job
    claimed a moment ago may not have its worker's pid yet: only quiet ones count."""
    with catalogue.session() as session:
        stale = [
            c.slide_id
            for c in session.scalars(
                select(Conversion).where(Conversion.status == ConversionStatus.CONVERTING)
            )
            if not _alive(c.worker_pid) and _quiet_for(c, STALE_S)
        ]
    for slide_id in stale:
        _set(
            catalogue, slide_id, SlideStatus.QUEUED, status=ConversionStatus.QUEUED, worker_pid=None
        )
    return stale


# -- the worker process ---------------------------------------------------------------------


def _download(store: ObjectStore, loc: SlideLocation, folder: Path) -> Path:
    prefix = original_key(loc.slide_id, "")
    for key in loc.keys:
        dest = folder / key.removeprefix(prefix)
        dest.parent.mkdir(parents=True, exist_ok=True)
        store.download(key, str(dest))
    return folder / loc.main_key.removeprefix(prefix)


Send = Callable[[dict[str, Any]], None]


def _convert(config: ConversionConfig, loc: SlideLocation, send: Send) -> None:
    # Imported here: libvips loads in the worker only, never in the hub.
    from tiles.convert import (
        convert_file,
        one_tile_reason,
        open_stored,
        serves_directly,
        store_pyramid,
    )

    if loc.l0_size.width <= config.tile_size and loc.l0_size.height <= config.tile_size:
        send({"op": "skipped", "reason": one_tile_reason(config.tile_size)})
        return
    store = config.store_factory()
    reader = open_stored(store, loc)
    if reader is not None:
        try:
            reason = serves_directly(reader, config.tile_size)
        finally:
            reader.close()
        if reason is not None:
            send({"op": "skipped", "reason": reason})
            return
    folder = config.work_dir / loc.slide_id
    shutil.rmtree(folder, ignore_errors=True)
    try:
        main = _download(store, loc, folder / "original")
        last = [0.0]

        def progress(percent: float) -> None:
            now = time.monotonic()
            if now - last[0] >= PROGRESS_INTERVAL_S / 2:
                last[0] = now
                send({"op": "progress", "percent": max(0.0, min(99.0, float(percent)))})

        out = folder / "pyramid.tiff"
        started = time.monotonic()
        how = convert_file(
            main,
            out,
            quality=config.jpeg_quality,
            tile_size=config.tile_size,
            progress=progress,
        )
        seconds = time.monotonic() - started
        pyramid = store_pyramid(store, loc.slide_id, out)
        send({"op": "done", "pyramid": _describe(pyramid), "seconds": seconds, "reader": how})
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _describe(pyramid: StoredPyramid) -> dict[str, Any]:
    return {
        "key": pyramid.key,
        "index_key": pyramid.index_key,
        "size": pyramid.size,
        "content_hash": pyramid.content_hash,
        "levels": [[s.width, s.height] for s in pyramid.l_sizes],
    }


def encode_message(message: dict[str, Any]) -> bytes:
    """The frame that carries a worker's message (see PROTOCOL); a reason too long for the
    supervisor to accept is cut short here."""
    reason = message.get("reason")
    if isinstance(reason, str) and len(reason) > MAX_REASON_CHARS:
        message = {**message, "reason": reason[: MAX_REASON_CHARS - 1] + "…"}
    return frame(encode(message))


def _worker(config: ConversionConfig, loc: SlideLocation, conn: Connection) -> None:
    confine_converter()  # first: before libvips starts its threads
    resource.setrlimit(resource.RLIMIT_AS, (config.memory_bytes, config.memory_bytes))

    def send(message: dict[str, Any]) -> None:
        send_all(conn, encode_message(message))  # raw bytes: conn.send would pickle

    try:
        _convert(config, loc, send)
    except TilesError as exc:
        send({"op": "failed", "reason": exc.message})
    except StorageError as exc:
        send({"op": "failed", "reason": f"storage error: {exc}"})
    except MemoryError:
        send({"op": "failed", "reason": "the conversion needs more memory than allowed"})
    except Exception as exc:  # a converter bug: report it, never crash the supervisor
        send({"op": "failed", "reason": f"conversion error ({type(exc).__name__}: {exc})"})
    conn.close()


# -- the supervisor's side of the pipe: strict decoding -----------------------------------------


def _decode_levels(value: object) -> tuple[Size, ...]:
    levels = expect_list(value, "levels", MAX_LEVELS)
    if not levels:
        raise InvalidReply("a pyramid without levels")
    sizes = []
    for level in levels:
        pair = expect_list(level, "a level size", 2)
        if len(pair) != 2:
            raise InvalidReply("a level size is not [width, height]")
        sizes.append(Size(*(expect_int(n, "a level side", 1, MAX_SIDE) for n in pair)))
    return tuple(sizes)


def _decode_pyramid(value: object, slide_id: str) -> Pyramid:
    """A pyramid description, whose keys must be this slide's pyramid keys: a worker cannot
    point the slide at another slide's objects, or at its original."""
    body = expect_obj(value, "pyramid", {"key", "index_key", "size", "content_hash", "levels"})
    key = expect_str(body["key"], "pyramid key", MAX_KEY_CHARS)
    index_key = expect_str(body["index_key"], "pyramid index key", MAX_KEY_CHARS)
    prefix = f"{slide_prefix(slide_id)}pyramid-"
    build = key.removeprefix(prefix).removesuffix(".tiff")
    if not (key == f"{prefix}{build}.tiff" and _BUILD.fullmatch(build)):
        raise InvalidReply(f"pyramid key {quote(key)} is not one of this slide's")
    if index_key != f"{prefix}{build}-index.bin":
        raise InvalidReply(f"pyramid index key {quote(index_key)} is not the pyramid's")
    content_hash = expect_str(body["content_hash"], "content_hash", 64)
    if not _SHA256.fullmatch(content_hash):
        raise InvalidReply("content_hash is not a SHA-256 in hexadecimal")
    return Pyramid(
        key=key,
        size=expect_int(body["size"], "pyramid size", 1, 2**63 - 1),
        index_key=index_key,
        content_hash=content_hash,
        l_sizes=_decode_levels(body["levels"]),
    )


def _float(value: object, what: str, low: float, high: float) -> float:
    if type(value) is not float or not (math.isfinite(value) and low <= value <= high):
        raise InvalidReply(f"{what} is not a number from {low:g} to {high:g}")
    return value


def decode_message(data: bytes, slide_id: str) -> Message:
    """A worker's message (one frame's bytes), as the supervisor acts on it; InvalidReply
    when it does not follow the protocol."""
    message = parse(data)
    op = message.get("op")
    if op == "progress":
        expect_obj(message, "progress", {"op", "percent"})
        return "progress", _float(message["percent"], "percent", 0.0, 100.0)
    if op in ("skipped", "failed"):
        expect_obj(message, str(op), {"op", "reason"})
        return str(op), expect_str(message["reason"], "reason", MAX_REASON_CHARS)
    if op == "done":
        expect_obj(message, "done", {"op", "pyramid", "seconds", "reader"})
        pyramid = _decode_pyramid(message["pyramid"], slide_id)
        seconds = _float(message["seconds"], "seconds", 0.0, math.inf)
        reader = message["reader"]
        if reader not in READERS:
            raise InvalidReply(f"reader {quote(reader)} is not one of the protocol")
        return "done", (pyramid, seconds, reader)
    raise InvalidReply(f"op {quote(op)} is not one of the protocol")


def _receive(receiver: Connection, slide_id: str, deadline: float) -> Message:
    """The worker's next message, once its first bytes are there."""
    limit = min(deadline, time.monotonic() + MESSAGE_READ_S)
    return decode_message(recv_frame(receiver, limit, MAX_MESSAGE_BYTES), slide_id)


def _died(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        return f"the conversion worker was killed (signal {-exitcode})"
    return f"the conversion worker crashed (exit code {exitcode})"


def run_job(
    catalogue: Catalogue,
    config: ConversionConfig,
    slide_id: str,
    *,
    on_progress: Callable[[float], None] | None = None,
    stop: threading.Event | None = None,
) -> Outcome:
    """Runs a claimed job in a worker process and records how it ended."""
    slide = catalogue.get(slide_id)
    conversion = job(catalogue, slide_id)
    if slide is None or conversion is None:
        return Outcome(ConversionStatus.FAILED, "the slide is gone")
    # Pickled to the worker: the hub's own data (see PROTOCOL).
    args = (config, location_of(slide))
    return _supervise(
        catalogue,
        slide_id,
        conversion.attempts,
        _worker,
        args,
        config.timeout_s,
        on_progress=on_progress,
        stop=stop,
    )


def _supervise(
    catalogue: Catalogue,
    slide_id: str,
    attempts: int,
    target: Callable[..., None],
    args: tuple[object, ...],
    timeout_s: float,
    *,
    on_progress: Callable[[float], None] | None = None,
    stop: threading.Event | None = None,
) -> Outcome:
    """Runs target(*args, conn) in a worker process, follows its messages on conn, and
    records how the job ended."""
    receiver, sender = _CONTEXT.Pipe(duplex=False)
    child = _CONTEXT.Process(target=target, args=(*args, sender), daemon=True)
    child.start()
    sender.close()
    _set(catalogue, slide_id, None, worker_pid=child.pid)
    deadline = time.monotonic() + timeout_s
    last_write = 0.0
    too_long = ("failed", f"the conversion took longer than {timeout_s:g} s")
    result: Message | None = None
    try:
        while result is None:
            if stop is not None and stop.is_set():
                # The hub is stopping: the job goes back to the queue, untouched.
                _set(
                    catalogue,
                    slide_id,
                    SlideStatus.QUEUED,
                    status=ConversionStatus.QUEUED,
                    worker_pid=None,
                    attempts=max(0, attempts - 1),
                )
                return Outcome(ConversionStatus.QUEUED, "the hub stopped")
            if time.monotonic() > deadline:
                result = too_long
                break
            if not receiver.poll(0.2):  # a wait on the pipe: reads nothing
                continue
            try:
                message = _receive(receiver, slide_id, deadline)
            except (EOFError, OSError):
                child.join(5)
                result = ("died", _died(child.exitcode))
                break
            except TimedOut:
                stalled = ("failed", "the conversion worker stopped in the middle of a message")
                result = too_long if time.monotonic() >= deadline else stalled
                break
            except InvalidReply as exc:
                result = ("failed", f"the conversion worker sent an invalid message ({exc})")
                break
            if message[0] == "progress":
                percent: float = message[1]
                if on_progress is not None:
                    on_progress(percent)
                now = time.monotonic()
                if now - last_write >= PROGRESS_INTERVAL_S:
                    last_write = now
                    _set(catalogue, slide_id, None, percent=round(percent, 1))
            else:
                result = message
    finally:
        receiver.close()
        if child.is_alive():
            child.kill()
        child.join(5)
    return _record(catalogue, slide_id, result)


def _record(catalogue: Catalogue, slide_id: str, result: Message) -> Outcome:
    kind, detail = result
    if kind == "done":
        pyramid, seconds, how = detail
        _set(
            catalogue,
            slide_id,
            SlideStatus.READY,
            status=ConversionStatus.READY,
            percent=100.0,
            error=None,
            worker_pid=None,
            note=f"pyramid written in {seconds:.1f} s (pixels read by {how})",
            seconds=seconds,
            pyramid_key=pyramid.key,
            pyramid_size=pyramid.size,
            pyramid_index_key=pyramid.index_key,
            pyramid_hash=pyramid.content_hash,
            pyramid_levels=[[s.width, s.height] for s in pyramid.l_sizes],
        )
        return Outcome(ConversionStatus.READY)
    if kind == "skipped":
        _set(
            catalogue,
            slide_id,
            SlideStatus.READY,
            status=ConversionStatus.SKIPPED,
            percent=100.0,
            error=None,
            worker_pid=None,
            note=detail,
        )
        return Outcome(ConversionStatus.SKIPPED, detail)
    conversion = job(catalogue, slide_id)
    if kind == "died" and conversion is not None and conversion.attempts < MAX_ATTEMPTS:
        _set(
            catalogue,
            slide_id,
            SlideStatus.QUEUED,
            status=ConversionStatus.QUEUED,
            worker_pid=None,
            error=f"{detail}; retrying",
        )
        return Outcome(ConversionStatus.QUEUED, detail)
    _set(
        catalogue,
        slide_id,
        SlideStatus.FAILED,
        status=ConversionStatus.FAILED,
        error=detail,
        worker_pid=None,
    )
    return Outcome(ConversionStatus.FAILED, detail)


# -- supervisors ------------------------------------------------------------------------------


def convert_now(
    catalogue: Catalogue,
    config: ConversionConfig,
    slide_id: str,
    on_progress: Callable[[float], None] | None = None,
) -> Outcome:
    """Converts one queued slide here and now (retrying a dead worker once), or follows
    the worker that took it first; returns how it ended."""
    while True:
        if claim(catalogue, slide_id) == slide_id:
            outcome = run_job(catalogue, config, slide_id, on_progress=on_progress)
            if outcome.status != ConversionStatus.QUEUED:
                return outcome
            continue
        conversion = job(catalogue, slide_id)
        if conversion is None:
            return Outcome(ConversionStatus.FAILED, "the slide is gone")
        if conversion.status in FINISHED:
            detail = (
                conversion.error
                if conversion.status == ConversionStatus.FAILED
                else conversion.note
            )
            return Outcome(ConversionStatus(conversion.status), detail)
        if on_progress is not None:
            on_progress(conversion.percent)
        time.sleep(IDLE_POLL_S)


class ConversionWorker:
    """The hub's supervisor: a thread that runs queued jobs, one at a time, each in its own
    worker process."""

    def __init__(
        self,
        catalogue: Catalogue,
        config: ConversionConfig,
        on_done: Callable[[str], None] | None = None,
    ) -> None:
        self.catalogue = catalogue
        self.config = config
        self.on_done = on_done
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        requeue_interrupted(self.catalogue)
        self._thread = threading.Thread(target=self._run, name="iain-conversions", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        last_sweep = time.monotonic()
        while not self._stop.is_set():
            try:
                if time.monotonic() - last_sweep > ORPHAN_SWEEP_S:
                    # A worker orphaned by a killed hub ends without recording anything.
                    last_sweep = time.monotonic()
                    requeue_interrupted(self.catalogue)
                slide_id = claim(self.catalogue)
                if slide_id is None:
                    self._stop.wait(IDLE_POLL_S)
                    continue
                run_job(self.catalogue, self.config, slide_id, stop=self._stop)
                if self.on_done is not None:
                    self.on_done(slide_id)
            except Exception:  # the database is busy or gone: keep serving, try later
                with contextlib.suppress(Exception):
                    self._stop.wait(IDLE_POLL_S * 4)
