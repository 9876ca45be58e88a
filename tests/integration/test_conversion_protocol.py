"""The conversion worker parses untrusted slides: the hub reads its messages as data, never
unpickles them. A worker standing for one taken over by a crafted slide writes what it likes
on its pipe; the job then fails with a reason, nothing runs in the hub, the slide is still
served from its original, and the next conversion works as before. An honest worker's
stream, replayed, gives the very outcome the worker itself gives."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import pickle
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from exchange.core.statuses import ConversionStatus
from exchange.slides import conversion
from exchange.slides.catalogue import Catalogue, location_of
from exchange.slides.conversion import (
    MAX_MESSAGE_BYTES,
    ConversionConfig,
    Outcome,
    Pyramid,
    _supervise,
    _worker,
    claim,
    decode_message,
    encode_message,
    job,
    requeue,
    run_job,
)
from iain.app import build_store, conversion_config
from iain.settings import Settings
from storage import ObjectStore
from tests import database
from tests.hostile_child import frame, replay
from tests.hub import hub_client, ingest
from tests.testdata import sample
from tiles.geometry import Size

SVS = "aperio/CMU-1-Small-Region.svs"  # 2220 x 2967: converted
TINY = "aperio/small.svs"  # fits in one tile: skipped
TILE = "_files/12/1_1.jpeg"

_FORKSERVER = multiprocessing.get_context("forkserver")


@dataclass(frozen=True)
class Hub:
    settings: Settings
    catalogue: Catalogue
    config: ConversionConfig
    store: ObjectStore


@pytest.fixture
def hub(tmp_path: Path) -> Hub:
    settings = database.settings(tmp_path / "home", tile_cache_mb=16)
    catalogue = Catalogue.open(settings.database_url)
    return Hub(settings, catalogue, conversion_config(settings), build_store(settings))


def from_worker(
    hub: Hub, slide_id: str, data: bytes, *, stall_s: float = 0.0, timeout_s: float = 30
) -> Outcome:
    """Runs the slide's job (queued and claimed anew) with `data` as the worker's messages."""
    assert requeue(hub.catalogue, slide_id)
    assert claim(hub.catalogue, slide_id) == slide_id
    return _supervise(hub.catalogue, slide_id, 1, replay, (data, stall_s), timeout_s)


def honest_stream(hub: Hub, slide_id: str) -> bytes:
    """Everything the real worker writes while converting the slide."""
    slide = hub.catalogue.get(slide_id)
    assert slide is not None
    receiver, sender = _FORKSERVER.Pipe(duplex=False)
    child = _FORKSERVER.Process(target=_worker, args=(hub.config, location_of(slide), sender))
    child.start()
    sender.close()
    chunks = []
    while chunk := os.read(receiver.fileno(), 1 << 16):
        chunks.append(chunk)
    child.join(30)
    receiver.close()
    assert child.exitcode == 0
    return b"".join(chunks)


def frames(data: bytes) -> Iterator[bytes]:
    while data:
        (length,) = struct.unpack("!Q", data[:8])
        yield data[8 : 8 + length]
        data = data[8 + length :]


def recorded(hub: Hub, slide_id: str) -> dict[str, Any]:
    """What the catalogue holds of the job and its slide."""
    conv, slide = job(hub.catalogue, slide_id), hub.catalogue.get(slide_id)
    assert conv is not None and slide is not None
    fields = ["status", "percent", "error", "note", "seconds", "pyramid_key", "pyramid_size"]
    fields += ["pyramid_index_key", "pyramid_hash", "pyramid_levels"]
    return {
        **{name: getattr(conv, name) for name in fields},
        "slide": (slide.status, slide.error),
    }


def test_an_honest_stream_replayed_gives_the_workers_own_outcome(hub: Hub) -> None:
    slide_id = ingest(hub.settings, sample(SVS))
    stream = honest_stream(hub, slide_id)
    messages = [decode_message(f, slide_id) for f in frames(stream)]
    assert {kind for kind, _ in messages[:-1]} <= {"progress"}
    kind, (pyramid, seconds, reader) = messages[-1]
    assert kind == "done" and reader in ("libvips", "reader") and seconds > 0
    # The description is faithful: the stored pyramid is the one described.
    assert isinstance(pyramid, Pyramid) and pyramid.l_sizes[0] == Size(2220, 2967)
    assert hashlib.sha256(hub.store.get(pyramid.key)).hexdigest() == pyramid.content_hash
    assert len(hub.store.get(pyramid.key)) == pyramid.size
    assert hub.store.exists(pyramid.index_key)

    replayed = from_worker(hub, slide_id, stream)
    after_replay = recorded(hub, slide_id)
    assert replayed == Outcome(ConversionStatus.READY)
    assert after_replay["pyramid_key"] == pyramid.key
    assert after_replay["pyramid_levels"] == [[s.width, s.height] for s in pyramid.l_sizes]
    assert after_replay["note"] == f"pyramid written in {seconds:.1f} s (pixels read by {reader})"

    # The worker itself, run as the hub runs it, ends the same way (a new build's keys).
    assert requeue(hub.catalogue, slide_id)
    assert claim(hub.catalogue, slide_id) == slide_id
    assert run_job(hub.catalogue, hub.config, slide_id) == replayed
    direct = recorded(hub, slide_id)
    variable = {"note", "seconds", "pyramid_key", "pyramid_index_key", "pyramid_size"}
    variable.add("pyramid_hash")  # a new build: new keys, its own time and bytes
    assert {k: v for k, v in direct.items() if k not in variable} == {
        k: v for k, v in after_replay.items() if k not in variable
    }
    assert direct["status"] == "ready" and direct["slide"] == ("ready", None)

    # The hub serves the pyramid the replayed stream described (its stored tiles).
    assert from_worker(hub, slide_id, stream) == Outcome(ConversionStatus.READY)
    with hub_client(hub.settings) as client:
        response = client.get(f"/slides/{slide_id}{TILE}")
        assert response.status_code == 200
        assert response.headers["server-timing"].startswith("stored")


def test_a_skipped_slide_replayed_is_skipped_with_the_same_reason(hub: Hub) -> None:
    slide_id = ingest(hub.settings, sample(TINY))
    stream = honest_stream(hub, slide_id)
    [(kind, reason)] = [decode_message(f, slide_id) for f in frames(stream)]
    assert kind == "skipped" and "fits in one 256x256 tile" in reason
    assert from_worker(hub, slide_id, stream) == Outcome(ConversionStatus.SKIPPED, reason)
    assert recorded(hub, slide_id)["slide"] == ("ready", None)
    assert requeue(hub.catalogue, slide_id)
    assert claim(hub.catalogue, slide_id) == slide_id
    assert run_job(hub.catalogue, hub.config, slide_id) == Outcome(ConversionStatus.SKIPPED, reason)


class RunsCommand:
    """The classic pickle exploit: unpickling it runs a shell command."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[Callable[[str], int], tuple[str]]:
        return os.system, (self.command,)


INVALID = "the conversion worker sent an invalid message ("


def test_a_pickle_from_the_worker_fails_the_job_and_never_runs(hub: Hub, tmp_path: Path) -> None:
    slide_id = ingest(hub.settings, sample(SVS))
    marker = tmp_path / "pwned"
    payload = pickle.dumps(("done", RunsCommand(f"touch {marker}")))
    # As our frame, and as multiprocessing's own framing (4-byte length) that the hub used
    # to unpickle with receiver.recv().
    for data in (frame(payload), struct.pack("!i", len(payload)) + payload):
        outcome = from_worker(hub, slide_id, data)
        assert outcome.status == "failed" and outcome.detail is not None
        assert outcome.detail.startswith(INVALID)
        after = recorded(hub, slide_id)
        assert after["status"] == "failed" and after["error"] == outcome.detail
        assert after["slide"] == ("failed", outcome.detail)
    assert not marker.exists()

    # The hub keeps running, shows why, and serves the slide from its original.
    with hub_client(hub.settings) as client:
        detail = client.get(f"/api/slides/{slide_id}").json()
        assert detail["status"] == "failed" and detail["error"].startswith(INVALID)
        response = client.get(f"/slides/{slide_id}{TILE}")
        assert response.status_code == 200
        assert response.headers["server-timing"].startswith("transcode")
    # And the next, honest, conversion works as ever.
    assert requeue(hub.catalogue, slide_id)
    assert claim(hub.catalogue, slide_id) == slide_id
    assert run_job(hub.catalogue, hub.config, slide_id) == Outcome(ConversionStatus.READY)


def _message(**fields: object) -> bytes:
    return encode_message(dict(fields))


BAD_STREAMS: dict[str, tuple[bytes, str]] = {
    "progress as text": (_message(op="progress", percent="50"), "percent"),
    "an unknown kind": (_message(op="exec", code="import os"), "op 'exec'"),
    "a reason too long": (frame(b'{"op": "failed", "reason": "' + b"x" * 5000 + b'"}'), "reason"),
    "a frame too large": (struct.pack("!Q", 2**40), "a message of 1099511627776 bytes"),
    "a frame over the limit": (
        frame(b" " * (MAX_MESSAGE_BYTES + 1)),
        f"at most {MAX_MESSAGE_BYTES}",
    ),
    # A worker cannot claim to have died, which would earn it another attempt.
    "a claimed death": (_message(op="died", reason="retry me"), "op 'died'"),
    # Good progress, then a bad message: the job fails all the same.
    "progress then junk": (
        _message(op="progress", percent=10.0) + frame(b"\x80\x04junk"),
        "not a JSON message",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_STREAMS))
def test_an_invalid_stream_fails_the_job_with_its_reason(hub: Hub, case: str) -> None:
    slide_id = ingest(hub.settings, sample(TINY))
    data, reason = BAD_STREAMS[case]
    started = time.monotonic()
    # The worker holds its pipe open: the hub does not wait for it to finish.
    outcome = from_worker(hub, slide_id, data, stall_s=60)
    assert time.monotonic() - started < 20
    assert outcome.status == "failed" and outcome.detail is not None
    assert outcome.detail.startswith(INVALID) and reason in outcome.detail
    assert len(outcome.detail) < 300
    assert recorded(hub, slide_id)["slide"] == ("failed", outcome.detail)


def test_a_worker_cut_short_is_retried_and_a_stalled_one_fails(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    slide_id = ingest(hub.settings, sample(TINY))
    whole = _message(op="skipped", reason="fits")
    # Gone in the middle of a message: a dead worker, given its second attempt.
    outcome = from_worker(hub, slide_id, whole[:12])
    assert outcome.status == "queued" and "crashed (exit code 0)" in (outcome.detail or "")
    assert recorded(hub, slide_id)["status"] == "queued"
    # Half a message, then silence: the job's time limit holds...
    started = time.monotonic()
    outcome = from_worker(hub, slide_id, whole[:12], stall_s=60, timeout_s=2)
    assert outcome == Outcome(ConversionStatus.FAILED, "the conversion took longer than 2 s")
    # ...and a message must end soon after it began, whatever the job's limit.
    monkeypatch.setattr(conversion, "MESSAGE_READ_S", 1.0)
    outcome = from_worker(hub, slide_id, whole[:12], stall_s=60)
    assert outcome == Outcome(
        ConversionStatus.FAILED, "the conversion worker stopped in the middle of a message"
    )
    assert time.monotonic() - started < 20
