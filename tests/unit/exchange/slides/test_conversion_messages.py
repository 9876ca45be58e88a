"""The conversion worker's messages, as the hub decodes them: exact keys, exact types,
bounded sizes, this slide's pyramid keys only. Anything else is refused with a short reason
(tests/integration/test_conversion_protocol.py: the job then fails, the hub goes on)."""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from exchange.slides.conversion import (
    MAX_MESSAGE_BYTES,
    MAX_REASON_CHARS,
    Pyramid,
    decode_message,
    encode_message,
)
from tests.hostile_child import RunsCommand
from tests.hostile_child import drop_at as _drop
from tests.hostile_child import set_at as _set
from tiles.frames import InvalidReply
from tiles.geometry import Size
from tiles.ingest import MAX_SIDE

SLIDE = "s1"
BUILD = "0123456789ab"
HASH = "ab" * 32


def done() -> dict[str, Any]:
    """What an honest worker sends when the pyramid is stored."""
    return {
        "op": "done",
        "pyramid": {
            "key": f"slides/{SLIDE}/pyramid-{BUILD}.tiff",
            "index_key": f"slides/{SLIDE}/pyramid-{BUILD}-index.bin",
            "size": 123_456,
            "content_hash": HASH,
            "levels": [[2220, 2967], [1110, 1483]],
        },
        "seconds": 1.5,
        "reader": "libvips",
    }


def decoded(message: dict[str, Any]) -> tuple[str, Any]:
    data = encode_message(message)
    assert int.from_bytes(data[:8], "big") == len(data) - 8  # one frame, nothing after it
    return decode_message(data[8:], SLIDE)


def test_honest_messages_decode_to_what_the_supervisor_records() -> None:
    pyramid = Pyramid(
        key=f"slides/{SLIDE}/pyramid-{BUILD}.tiff",
        size=123_456,
        index_key=f"slides/{SLIDE}/pyramid-{BUILD}-index.bin",
        content_hash=HASH,
        l_sizes=(Size(2220, 2967), Size(1110, 1483)),
    )
    assert decoded(done()) == ("done", (pyramid, 1.5, "libvips"))
    assert decoded({"op": "progress", "percent": 42.5}) == ("progress", 42.5)
    assert decoded({"op": "skipped", "reason": "fits in one tile"}) == (
        "skipped",
        "fits in one tile",
    )
    assert decoded({"op": "failed", "reason": "x.svs: cannot be converted"}) == (
        "failed",
        "x.svs: cannot be converted",
    )


def test_a_long_reason_is_cut_by_the_worker_to_what_the_hub_accepts() -> None:
    kind, reason = decoded({"op": "failed", "reason": "é" * 100_000})
    assert kind == "failed" and len(reason) == MAX_REASON_CHARS and reason.endswith("…")
    assert len(encode_message({"op": "failed", "reason": "\U0001f600" * 10**5})) < MAX_MESSAGE_BYTES


def test_a_pickle_is_not_a_message_and_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    for message in (("done", RunsCommand(f"touch {marker}")), RunsCommand(f"touch {marker}")):
        with pytest.raises(InvalidReply, match=r"^not a JSON message$"):
            decode_message(pickle.dumps(message), SLIDE)
    assert not marker.exists()
    # The same command really runs when unpickled: the test would see it.
    pickle.loads(pickle.dumps(RunsCommand(f"touch {marker}")))
    assert marker.exists()


def _replace(message: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    def change(target: dict[str, Any]) -> None:
        target.clear()
        target.update(message)

    return change


P = ("pyramid",)
OTHER = f"slides/s2/pyramid-{BUILD}"
BAD_MESSAGES: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    # wrong types
    "percent as text": (_replace({"op": "progress", "percent": "50"}), "percent"),
    "percent as true": (_replace({"op": "progress", "percent": True}), "percent"),
    "percent over 100": (_replace({"op": "progress", "percent": 150.0}), "percent"),
    "reason a number": (_replace({"op": "failed", "reason": 7}), "reason"),
    "reason a list": (_replace({"op": "skipped", "reason": ["a"]}), "reason"),
    "seconds as text": (_set("seconds", value="1.5"), "seconds"),
    "seconds negative": (_set("seconds", value=-1.0), "seconds"),
    "size as text": (_set(*P, "size", value="123456"), "pyramid size"),
    "size as true": (_set(*P, "size", value=True), "pyramid size"),
    "levels an object": (_set(*P, "levels", value={"0": [1, 1]}), "levels"),
    "a side a float": (_set(*P, "levels", 0, 0, value=2220.0), "level side"),
    "a level of three": (_set(*P, "levels", 0, value=[1, 2, 3]), "a level size"),
    "no levels": (_set(*P, "levels", value=[]), "without levels"),
    "pyramid a list": (_set("pyramid", value=[1]), "pyramid is not an object"),
    "hash not hex": (_set(*P, "content_hash", value="z" * 64), "content_hash"),
    "reader unknown": (_set("reader", value="pickle"), "reader 'pickle'"),
    # oversize fields
    "reason too long": (_replace({"op": "failed", "reason": "x" * 4097}), "reason"),
    "key of a megabyte": (_set(*P, "key", value="k" * 2**20), "pyramid key"),
    "ten thousand levels": (_set(*P, "levels", value=[[1, 1]] * 10_000), "levels"),
    "side beyond the limit": (_set(*P, "levels", 0, 0, value=MAX_SIDE + 1), "level side"),
    "huge integer": (_set(*P, "size", value=10**1000), "pyramid size"),
    # unknown kinds, keys
    "op died": (_replace({"op": "died", "reason": "retry me"}), "op 'died'"),
    "op exec": (_replace({"op": "exec", "code": "os.system('id')"}), "op 'exec'"),
    "no op": (_drop("op"), "op None"),
    "op a list": (_set("op", value=["done"]), "op ['done']"),
    "extra key": (_set("exec", value="os.system"), "done has 1 unknown key(s)"),
    "missing key": (_drop("reader"), "done lacks reader"),
    "extra pyramid key": (_set(*P, "path", value="/etc"), "pyramid has 1 unknown key(s)"),
    # keys of other objects
    "another slide's pyramid": (_set(*P, "key", value=f"{OTHER}.tiff"), "pyramid key"),
    "the original": (_set(*P, "key", value=f"slides/{SLIDE}/original/x.svs"), "pyramid key"),
    "a way out": (_set(*P, "key", value=f"slides/{SLIDE}/pyramid-../../s2/x.tiff"), "key"),
    "another build's index": (
        _set(*P, "index_key", value=f"slides/{SLIDE}/pyramid-ba9876543210-index.bin"),
        "pyramid index key",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_MESSAGES))
def test_an_ill_formed_message_is_refused_with_a_short_reason(case: str) -> None:
    change, reason = BAD_MESSAGES[case]
    message = done()
    change(message)
    with pytest.raises(InvalidReply) as refused:
        decode_message(json.dumps(message).encode(), SLIDE)
    assert reason in str(refused.value)
    assert len(str(refused.value)) < 200  # the worker's megabytes are not echoed back


@pytest.mark.parametrize(
    "data",
    [
        b'{"op": "progress", "percent": NaN}',
        b'{"op": "progress", "percent": 1.0, "percent": 2.0}',
        b'["progress", 50.0]',
        b"\xff\xfe",
        b"[" * 100_000 + b"]" * 100_000,
    ],
    ids=["nan", "repeated key", "a list", "not utf-8", "deep nesting"],
)
def test_what_is_not_a_json_object_of_the_protocol_is_refused(data: bytes) -> None:
    with pytest.raises(InvalidReply):
        decode_message(data, SLIDE)
