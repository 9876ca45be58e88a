"""The de-identified view's allow-list: what metadata survives, and in what form."""

from datetime import UTC, datetime

import pytest

from storage import ObjectNotFound
from tiles.deid import (
    View,
    check_associated,
    public_date,
    public_message,
    public_metadata,
    public_vendor,
    strip_jpeg_text,
)
from tiles.errors import CorruptSlide, ImageNotFound, InvalidRequest, SlideUnavailable
from tiles.geometry import Size
from tiles.readers.base import SlideProperties

KEY = "slides/abc123def456/original/DUPONT^JEAN.svs"


def props(vendor_metadata: dict[str, str], vendor: str = "aperio") -> SlideProperties:
    return SlideProperties(
        vendor=vendor,
        l_sizes=(Size(4000, 3000), Size(1000, 750)),
        mpp_x=0.25,
        mpp_y=0.26,
        objective_power=40.0,
        associated=("label", "macro"),
        vendor_metadata=vendor_metadata,
    )


def test_only_allow_listed_fields_survive_under_our_own_keys():
    metadata = public_metadata(
        props(
            {
                "aperio.Filename": "DUPONT^JEAN",
                "aperio.Patient": "DUPONT^JEAN",
                "tiff.ImageDescription": "Aperio |Patient = DUPONT^JEAN",
                "tiff.Artist": "DUPONT",
                "tiff.Make": "Hamamatsu",
                "hamamatsu.Product": "NanoZoomer S360",
            }
        )
    )
    assert metadata == {
        "vendor": "aperio",
        "width": 4000,
        "height": 3000,
        "levels": [[4000, 3000], [1000, 750]],
        "mpp_x": 0.25,
        "mpp_y": 0.26,
        "objective_power": 40.0,
        "scanner_manufacturer": "Hamamatsu",
        "scanner_model": "NanoZoomer S360",
    }


@pytest.mark.parametrize(
    "value",
    [
        "DUPONT^JEAN",  # a DICOM person name
        "GT450\nPatient = DUPONT",  # free text after a line break
        "GT450|Patient = DUPONT",  # Aperio's pair separator
        "x" * 65,  # too long for a device name
        "",
        "  ",
    ],
)
def test_device_names_that_are_not_plain_short_text_are_dropped(value):
    metadata = public_metadata(props({"tiff.Model": value}))
    assert "scanner_model" not in metadata


def test_a_device_key_that_fails_gives_way_to_the_next_one():
    metadata = public_metadata(props({"tiff.Model": "A^B", "aperio.ScannerType": "GT450"}))
    assert metadata["scanner_model"] == "GT450"


def test_an_odd_vendor_name_is_not_passed_through():
    assert public_vendor("generic-tiff") == "generic-tiff"
    assert public_vendor("DUPONT^JEAN") == "unknown"
    assert public_metadata(props({}, vendor="Patient DUPONT"))["vendor"] == "unknown"


def test_dates_keep_only_their_year():
    assert public_date(datetime(2026, 11, 23, 22, 59, 1, tzinfo=UTC)) == datetime(
        2026, 1, 1, tzinfo=UTC
    )


def test_every_associated_name_is_hidden_alike_on_the_deidentified_view():
    check_associated(View.FULL, "label")  # the owner's view decides nothing here
    messages = set()
    for name in ("label", "macro", "thumbnail", "nothing"):
        with pytest.raises(ImageNotFound) as caught:
            check_associated(View.DEIDENTIFIED, name)
        messages.add(caught.value.message.replace(repr(name), "NAME"))
    assert len(messages) == 1


def test_errors_that_may_quote_storage_keys_get_generic_messages():
    for exc, status in (
        (SlideUnavailable(f"slide data unavailable: no object {KEY!r}"), 503),
        (CorruptSlide(f"cannot decode level 0: no object {KEY!r}"), 422),
        (ObjectNotFound(f"no object {KEY!r}", KEY), 404),
    ):
        message = public_message(exc, status)
        assert "DUPONT" not in message and "abc123def456" not in message
    # What only echoes the request is kept: the caller needs to know what was wrong.
    bad = InvalidRequest("thumbnail size must be within 1..2048")
    assert public_message(bad, 400) == bad.message


def segment(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + (len(payload) + 2).to_bytes(2, "big") + payload


JFIF = segment(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00")
TABLES = segment(0xDB, bytes(65)) + segment(0xC0, bytes(15))
SCAN = segment(0xDA, bytes(10)) + b"\x12\xff\x00\x34DUPONT in the entropy data\xff\xd9"


def test_text_segments_are_stripped_and_the_rest_kept_byte_for_byte():
    icc = segment(0xE2, b"ICC_PROFILE\x00\x01\x01" + bytes(20))
    adobe = segment(0xEE, b"Adobe\x00\x64\x00\x00\x00\x00\x00")
    kept = b"\xff\xd8" + JFIF + icc + adobe + TABLES
    tile = (
        b"\xff\xd8"
        + JFIF
        + segment(0xFE, b"DUPONT^JEAN")  # comment
        + segment(0xE1, b"Exif\x00\x00DUPONT")  # EXIF
        + icc
        + segment(0xED, b"Photoshop 3.0\x00DUPONT")  # IPTC
        + adobe
        + TABLES
        + segment(0xE0, b"JFXX\x00\x10" + bytes(30))  # a JFIF extension thumbnail
        + SCAN
    )
    assert strip_jpeg_text(tile) == kept + SCAN


def test_a_tile_without_text_segments_is_returned_as_it_is():
    tile = b"\xff\xd8" + JFIF + TABLES + SCAN
    assert strip_jpeg_text(tile) is tile


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not a jpeg",
        b"\xff\xd8\xff\xfe\x00",  # a segment cut in its length
    ],
)
def test_malformed_data_is_left_alone_for_the_decoder_to_judge(data):
    assert strip_jpeg_text(data) == data


def test_a_text_segment_longer_than_the_tile_is_cut_off():
    tile = b"\xff\xd8" + JFIF + b"\xff\xfe\x01\x00DUPONT^JEAN"
    assert strip_jpeg_text(tile) == b"\xff\xd8" + JFIF
