"""The sandboxed parser's answer is data the hub decodes strictly, never code it runs.

A child standing for a parser taken over by a crafted slide writes the bytes it likes on its
pipe: a pickle that would run a command on unpickling, oversize or ill-typed fields, paths
out of the slide's folder. Each time the slide is refused with a reason, nothing runs in the
hub, and the next (honest) inspection works as before."""

from __future__ import annotations

import dataclasses
import json
import pickle
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.hostile_child import RunsCommand, frame, replay
from tests.hostile_child import drop_at as _drop
from tests.hostile_child import set_at as _set
from tests.testdata import sample
from tiles.errors import CorruptSlide, UnsupportedSlide
from tiles.ingest import Inspection, inspect_slide, inspect_stored
from tiles.labels import MAX_CODES, MAX_TEXT, Barcode
from tiles.sandbox import (
    MAX_INDEX_BYTES,
    MAX_MESSAGE_BYTES,
    _Expected,
    _run_in_place,
    _run_on_disk,
    encode_answer,
    inspect_in_sandbox,
    inspect_stored_in_sandbox,
)

SVS = "aperio/CMU-1-Small-Region.svs"
STORED_ROOT = Path("/stored")


def split(answer: bytes) -> tuple[dict[str, Any], bytes]:
    """The JSON message of an honest answer, and the frames after it."""
    (length,) = struct.unpack("!Q", answer[:8])
    return json.loads(answer[8 : 8 + length]), answer[8 + length :]


def on_disk(path: Path) -> _Expected:
    return _Expected(name=path.name, root=path.parent, main=path, size=None, in_place=False)


def from_child(
    data: bytes, path: Path, *, stall_s: float = 0.0, timeout_s: float = 30
) -> Inspection:
    return _run_on_disk(replay, (data, stall_s), on_disk(path), timeout_s)


@pytest.fixture(scope="module")
def honest() -> tuple[Path, Inspection, dict[str, Any], bytes]:
    """A real slide's inspection, and the answer an honest child sends for it."""
    path = sample(SVS)
    inspection = inspect_slide(path)
    message, rest = split(encode_answer(inspection))
    return path, inspection, message, rest


def test_an_honest_answer_decodes_to_the_very_inspection(
    honest: tuple[Path, Inspection, dict[str, Any], bytes],
) -> None:
    path, inspection, message, rest = honest
    assert from_child(frame(json.dumps(message).encode()) + rest, path) == inspection
    assert inspect_in_sandbox(path) == inspection


def test_a_pickle_from_the_child_is_refused_and_never_run(tmp_path: Path) -> None:
    path = sample(SVS)
    marker = tmp_path / "pwned"
    payload = pickle.dumps(RunsCommand(f"touch {marker}"))
    # As our frame, and as multiprocessing's own framing (4-byte length) that the hub used
    # to unpickle.
    for data in (frame(payload), struct.pack("!i", len(payload)) + payload):
        with pytest.raises(CorruptSlide, match=r"parser sent an invalid answer") as refused:
            from_child(data, path)
        assert refused.value.message.startswith(f"{path.name}: ")
    assert not marker.exists()
    # The hub is fine: the next slide is inspected as ever.
    assert inspect_in_sandbox(path).properties.l0_size.width == 2220


def test_the_label_barcodes_come_through_as_the_child_read_them(
    honest: tuple[Path, Inspection, dict[str, Any], bytes],
) -> None:
    path, inspection, _, _ = honest
    codes = (Barcode("DataMatrix", "S26-01234 A1"), Barcode("Code128", "S26-01234"))
    labelled = dataclasses.replace(inspection, barcodes=codes)
    assert from_child(encode_answer(labelled), path).barcodes == codes


def _code(text: object = "S26-01234", fmt: str = "DataMatrix", **extra: object) -> dict[str, Any]:
    return {"format": fmt, "text": text, **extra}


def tampered(message: dict[str, Any], change: Callable[[dict[str, Any]], None]) -> bytes:
    copy = json.loads(json.dumps(message))
    change(copy)
    return frame(json.dumps(copy).encode())


def _unknown_error(message: dict[str, Any]) -> None:
    message.clear()
    message.update(op="done", outcome="refused", error={"type": "SystemExit", "message": "x"})


def _other_main(message: dict[str, Any]) -> None:
    message["inspection"]["main"] = message["inspection"]["files"][0] = "other.svs"


P = ("inspection", "properties")
BAD_ANSWERS: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    # wrong types
    "width as text": (_set(*P, "levels", 0, 0, value="2220"), "level side"),
    "width as true": (_set(*P, "levels", 0, 0, value=True), "level side"),
    "mpp as text": (_set(*P, "mpp_x", value="0.5"), "mpp_x"),
    "mpp negative": (_set(*P, "mpp_x", value=-0.5), "mpp_x"),
    "metadata value a list": (_set(*P, "metadata", "x", value=[1]), "metadata 'x'"),
    "levels an object": (_set(*P, "levels", value={"0": [1, 1]}), "levels"),
    "no levels": (_set(*P, "levels", value=[]), "without levels"),
    "reader kind unknown": (_set("inspection", "kind", value="pickle"), "reader kind"),
    "error type unknown": (_unknown_error, "error type 'SystemExit' is unknown"),
    "extra key": (
        _set("inspection", "exec", value="os.system"),
        "inspection has 1 unknown key(s)",
    ),
    "missing key": (_drop(*P, "vendor"), "properties lacks vendor"),
    "needs a copy, on disk": (_set("outcome", value="needs-copy"), "outcome"),
    "a read request on disk": (_set("op", value="read"), "no result"),
    # oversize fields
    "side beyond the limit": (_set(*P, "levels", 0, 0, value=10**12), "level side"),
    "huge integer": (_set(*P, "levels", 0, 1, value=10**1000), "level side"),
    "vendor of a megabyte": (_set(*P, "vendor", value="a" * 2**20), "vendor"),
    "ten thousand levels": (_set(*P, "levels", value=[[1, 1]] * 10_000), "levels"),
    "header pack beyond the limit": (
        _set("inspection", "index_bytes", value=MAX_INDEX_BYTES + 1),
        "index_bytes",
    ),
    # paths outside the slide's folder
    "main up and out": (_set("inspection", "main", value="../../etc/passwd"), "main"),
    "main absolute": (_set("inspection", "main", value="/etc/passwd"), "main"),
    "a file up and out": (_set("inspection", "files", value=["x.svs", "../x"]), "a file"),
    "another root": (_set("inspection", "root", value="/etc"), "root"),
    "another main in the folder": (_other_main, "main is not the inspected file"),
    # label barcodes
    "no barcodes key": (_drop("inspection", "barcodes"), "inspection lacks barcodes"),
    "barcodes an object": (_set("inspection", "barcodes", value=_code()), "barcodes"),
    "too many barcodes": (
        _set("inspection", "barcodes", value=[_code(str(i)) for i in range(MAX_CODES + 1)]),
        "barcodes is not a list of at most",
    ),
    "a barcode with an extra key": (
        _set("inspection", "barcodes", value=[_code(exec="os.system")]),
        "a barcode has 1 unknown key(s)",
    ),
    "a barcode text too long": (
        _set("inspection", "barcodes", value=[_code("a" * (MAX_TEXT + 1))]),
        "a barcode text",
    ),
    "a barcode text a number": (_set("inspection", "barcodes", value=[_code(1)]), "barcode text"),
    "a barcode format of a megabyte": (
        _set("inspection", "barcodes", value=[_code(fmt="Q" * 2**20)]),
        "a barcode format",
    ),
    "an empty barcode": (_set("inspection", "barcodes", value=[_code("")]), "without format"),
    "a barcode twice": (_set("inspection", "barcodes", value=[_code(), _code()]), "twice"),
}


@pytest.mark.parametrize("case", sorted(BAD_ANSWERS))
def test_an_ill_formed_answer_is_a_refusal_with_its_reason(
    honest: tuple[Path, Inspection, dict[str, Any], bytes], case: str
) -> None:
    path, _, message, rest = honest
    change, reason = BAD_ANSWERS[case]
    with pytest.raises(CorruptSlide) as refused:
        from_child(tampered(message, change) + rest, path)
    assert refused.value.message.startswith(f"{path.name}: the parser sent an invalid answer (")
    assert reason in refused.value.message
    assert len(refused.value.message) < 300  # the child's megabytes are not echoed back


def test_oversize_frames_are_refused_before_they_are_read(
    honest: tuple[Path, Inspection, dict[str, Any], bytes],
) -> None:
    path, _, message, rest = honest
    started = time.monotonic()
    # A declared terabyte, of which nothing follows: refused on the length alone.
    with pytest.raises(CorruptSlide, match=r"a message of 1099511627776 bytes, at most"):
        from_child(struct.pack("!Q", 2**40), path, stall_s=60)
    with pytest.raises(CorruptSlide, match=rf"at most {MAX_MESSAGE_BYTES} allowed"):
        from_child(frame(b" " * (MAX_MESSAGE_BYTES + 1)), path)
    # An integer of more digits than Python converts, deep nesting: not JSON we read.
    for text in (b'{"op": ' + b"9" * 5000 + b"}", b"[" * 100_000 + b"]" * 100_000):
        with pytest.raises(CorruptSlide, match=r"not a JSON message"):
            from_child(frame(text), path)
    # A header pack longer than the answer declared.
    with pytest.raises(CorruptSlide, match=r"header pack is not of the declared length"):
        from_child(frame(json.dumps(message).encode()) + frame(rest[8:] + b"x"), path)
    assert time.monotonic() - started < 20


def test_an_answer_cut_short_is_a_crash_and_a_stalled_one_a_timeout(
    honest: tuple[Path, Inspection, dict[str, Any], bytes],
) -> None:
    path, _, message, _ = honest
    whole = frame(json.dumps(message).encode())
    with pytest.raises(CorruptSlide, match=r"the parser crashed"):
        from_child(whole[:100], path)
    # Half a frame, then the child holds its pipe open: the time limit still holds.
    started = time.monotonic()
    with pytest.raises(CorruptSlide, match=r"parsing took longer than 1 s"):
        from_child(whole[:100], path, stall_s=60, timeout_s=1)
    assert time.monotonic() - started < 10


def test_an_error_from_the_child_keeps_its_class_and_message(tmp_path: Path) -> None:
    path = tmp_path / "x.svs"
    with pytest.raises(UnsupportedSlide, match=r"^x\.svs: no such file or directory$"):
        inspect_in_sandbox(path)
    long = encode_answer(UnsupportedSlide("x" * 100_000))
    with pytest.raises(UnsupportedSlide) as refused:
        from_child(long, path)
    assert len(refused.value.message) == 4096


# --- In place: the child's read requests are data too ------------------------------------------


def in_place(data: bytes, size: int, reads: list[tuple[int, int]]) -> Inspection | None:
    content = bytes(size)

    def read(offset: int, length: int) -> bytes:
        reads.append((offset, length))
        return content[offset : offset + length]

    main = STORED_ROOT / "x.svs"
    expected = _Expected(name="x.svs", root=STORED_ROOT, main=main, size=size, in_place=True)
    return _run_in_place(replay, (data, 0.0), read, size, expected, 30)


def request(**fields: object) -> bytes:
    return frame(json.dumps({"op": "read", **fields}).encode())


BAD_REQUESTS = {
    "a pickled request": frame(pickle.dumps(("read", 0, 4))),
    "offset as text": request(offset="0", length=4),
    "length as true": request(offset=0, length=True),
    "negative offset": request(offset=-8, length=4),
    "an extra field": request(offset=0, length=4, path="/etc/passwd"),
    "an unknown op": frame(json.dumps({"op": "open", "path": "/etc/passwd"}).encode()),
}


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_an_ill_formed_read_request_is_a_refusal_and_reads_nothing(case: str) -> None:
    reads: list[tuple[int, int]] = []
    with pytest.raises(CorruptSlide, match=r"^x\.svs: the parser sent an invalid answer \("):
        in_place(BAD_REQUESTS[case], 1000, reads)
    assert reads == []


def test_a_stored_slide_answer_must_name_the_stored_object() -> None:
    path = sample(SVS)
    data = path.read_bytes()

    def fetch(offset: int, length: int) -> bytes:
        return data[offset : offset + length]

    stored = inspect_stored(fetch, len(data), STORED_ROOT / "x.svs", STORED_ROOT)
    assert stored is not None
    message, rest = split(encode_answer(stored))
    reads: list[tuple[int, int]] = []
    honest_reply = request(offset=0, length=4) + frame(json.dumps(message).encode()) + rest
    assert in_place(honest_reply, len(data), reads) == stored
    assert reads == [(0, 4)]
    for change, reason in (
        (_set("inspection", "size_bytes", value=len(data) + 1), "size_bytes"),
        (_set("inspection", "kind", value="openslide"), "TIFF reader"),
        (_set("inspection", "files", value=["x.svs", "y.svs"]), "one file"),
        (_set("inspection", "main", value="../x.svs"), "main"),
    ):
        with pytest.raises(CorruptSlide, match=reason):
            in_place(tampered(message, change) + rest, len(data), [])
    # And the real in-place inspection is unaffected.
    assert inspect_stored_in_sandbox(fetch, len(data), STORED_ROOT / "x.svs", STORED_ROOT) == stored
