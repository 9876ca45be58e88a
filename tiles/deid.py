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
  key, which holds the slide id and the original file name.

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
