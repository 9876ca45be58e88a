"""The de-identified view of a slide: what another centre may see of it.

A slide file carries patient identifiers in places that have nothing to do with its
pixels: the label image (a photograph of the glass label, often with name and number),
the macro image (the whole glass, label included), vendor metadata (Aperio's `Filename`,
`Patient`, `Date`; TIFF `Artist`, `DocumentName`...), and the file name itself. The
de-identified view keeps the pyramid (its tiles are byte-identical to the full view's)
and drops the rest:

- no associated image at all: label and macro are dropped, not blanked. Where the label
  sits on a macro photograph varies by scanner, rotation and glass, and a blanking box
  that misses by a few pixels leaks a name; the vendor `thumbnail` is redundant with the
  pyramid's own thumbnail. Every associated name answers the same 404 as a nonexistent
  one, so the view does not even tell which images exist;
- metadata reduced to an allow-list, normalised to our own keys (`public_metadata`):
  numbers are parsed and re-emitted as numbers, so no text can ride along in them; the
  few text fields (scanner make and model, format) come only from keys that name a device,
  and must match a plain charset and length;
- the slide is addressed by an opaque id (random, unrelated to its id) and named by it;
- error messages are generic (see `public_message`): a storage error names the object
  key, which holds the slide id and the original file name;
- JPEG tiles served as stored lose their text segments (`strip_jpeg_text`) on both views,
  so tiles stay one and the same for every caller.

Which view a caller gets is decided outside the tiles package (the hub's catalogue maps
an opaque id to the de-identified view); the tile layer only honours `SlideLocation.view`.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum

from tiles.errors import ImageNotFound, InvalidRequest, SlideNotFound, TileNotFound
from tiles.readers.base import SlideProperties


class View(StrEnum):
    FULL = "full"  # the owning centre: everything the slide has
    DEIDENTIFIED = "deidentified"  # another centre: pixels and allow-listed metadata only


# Associated images offered on the de-identified view: none (see the module docstring).
DEIDENTIFIED_ASSOCIATED: tuple[str, ...] = ()

# Text fields of the public metadata, from vendor keys that name a device, never a person
# or a case (first key present wins).
TEXT_FIELDS: dict[str, tuple[str, ...]] = {
    "scanner_manufacturer": (
        "tiff.Make",
        "dicom.Manufacturer",
        "philips.DICOM_MANUFACTURER",
        "leica.device-vendor",
    ),
    "scanner_model": (
        "tiff.Model",
        "aperio.ScannerType",
        "hamamatsu.Product",
        "dicom.ManufacturerModelName",
        "philips.DICOM_MANUFACTURERS_MODEL_NAME",
        "leica.device-model",
        "ventana.ScannerModel",
    ),
}
# A device name: letters, digits, spaces and a little punctuation; no separators that
# DICOM person names (^) or free text (newlines, |, =) use.
_PLAIN_TEXT = re.compile(r"[A-Za-z0-9][A-Za-z0-9 .,_()/+-]{0,63}")
_VENDOR = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")

PublicValue = str | int | float | list[list[int]]


def plain_text(value: str | None) -> str | None:
    """A device name kept as it is when it is plain short text; anything else is dropped."""
    if value is None:
        return None
    value = value.strip()
    return value if _PLAIN_TEXT.fullmatch(value) else None


def public_vendor(vendor: str) -> str:
    """The format name (aperio, hamamatsu, generic-tiff...) when it is one; else "unknown"."""
    return vendor if _VENDOR.fullmatch(vendor) else "unknown"


def public_metadata(props: SlideProperties) -> dict[str, PublicValue]:
    """The allow-listed metadata of a slide, under our own keys."""
    out: dict[str, PublicValue] = {
        "vendor": public_vendor(props.vendor),
        "width": props.l0_size.width,
        "height": props.l0_size.height,
        "levels": [[s.width, s.height] for s in props.l_sizes],
    }
    for key, value in (
        ("mpp_x", props.mpp_x),
        ("mpp_y", props.mpp_y),
        ("objective_power", props.objective_power),
    ):
        if value is not None:
            out[key] = float(value)
    for field, sources in TEXT_FIELDS.items():
        for source in sources:
            text = plain_text(props.vendor_metadata.get(source))
            if text is not None:
                out[field] = text
                break
    return out


def public_date(moment: datetime) -> datetime:
    """A date on the de-identified view keeps only its year: ingest follows the scan, which
    follows the biopsy, so a full date narrows down who the patient is."""
    return moment.replace(month=1, day=1, hour=0, minute=0, second=0, microsecond=0)


# Errors on the de-identified view. These classes only say what was wrong with the request
# (an id, a tile, an image name, a parameter the caller sent) and keep their message; any
# other may quote storage keys (the slide id, the original file name) or parser output, so
# its message is replaced by a generic one for its status.
_ECHOING = (SlideNotFound, TileNotFound, ImageNotFound, InvalidRequest)
_PUBLIC_MESSAGES = {
    415: "the slide cannot be served",
    422: "the slide's data cannot be decoded",
    503: "the slide's data is unavailable right now; retry later",
}


def public_message(exc: Exception, status: int) -> str:
    """The error message the de-identified view returns for an error."""
    if isinstance(exc, _ECHOING):
        return exc.message
    return _PUBLIC_MESSAGES.get(status, "the request cannot be answered")


def check_associated(view: View, name: str) -> None:
    """Raises the same ImageNotFound for every image the view hides as for a nonexistent
    one, so the de-identified view does not tell whether a slide has a label."""
    if view is not View.FULL and name not in DEIDENTIFIED_ASSOCIATED:
        raise ImageNotFound(f"no associated image {name!r}")


# JPEG segments kept in a stored tile: those that only say how to show the pixels.
_KEPT_APP = (
    (0xE0, b"JFIF\x00"),  # JFIF density (16 bytes; a longer one embeds a thumbnail)
    (0xE2, b"ICC_PROFILE\x00"),  # colour profile
    (0xEE, b"Adobe"),  # colour transform (the reader adds it to RGB tiles)
)


def _kept(marker: int, payload: bytes) -> bool:
    if marker == 0xE0 and len(payload) != 14:
        return False
    return any(marker == m and payload.startswith(sig) for m, sig in _KEPT_APP)


def strip_jpeg_text(data: bytes) -> bytes:
    """A stored JPEG tile without the segments that can carry text: comments (COM), EXIF and
    XMP (APP1), and the other application segments; the tables, frame and scan data are left
    byte for byte. Tiles served as stored (zero-transcode) pass through here on both views,
    so a tile is the same for every caller; a usual tile has no such segment and is returned
    as it is."""
    if not data.startswith(b"\xff\xd8"):
        return data
    out: list[bytes] | None = None
    pos = 2
    size = len(data)
    while pos + 4 <= size and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xDA or not (0xC0 <= marker <= 0xFE) or 0xD0 <= marker <= 0xD9:
            break  # start of scan (or something unexpected): the rest is kept as it is
        end = pos + 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
        text = marker == 0xFE or (0xE0 <= marker <= 0xEF and not _kept(marker, data[pos + 4 : end]))
        if end > size:
            # Cut short: the tile is broken either way, but its text must not go out.
            return b"".join(out or [data[:pos]]) if text else data
        if text and out is None:
            out = [data[:pos]]
        elif not text and out is not None:
            out.append(data[pos:end])
        pos = end
    if out is None:
        return data
    out.append(data[pos:])
    return b"".join(out)
