"""Record ids: random, lowercase letters and digits (safe in URLs, paths and S3 keys).

Every record the hub makes (slides, users, tokens, grants, cases, overlays, uploads...)
gets `new_id()`; a de-identified view's opaque id is `new_public_id()`, longer so that it
is never guessed nor taken for a record id."""

from __future__ import annotations

import re
import secrets
import string

ID_ALPHABET = string.ascii_lowercase + string.digits
ID_LENGTH = 12  # 62 random bits
# Opaque ids are longer than record ids (124 random bits): never guessed, never confused.
PUBLIC_ID_LENGTH = 24


def new_id(length: int = ID_LENGTH) -> str:
    return "".join(secrets.choice(ID_ALPHABET) for _ in range(length))


def new_public_id() -> str:
    """The opaque id of a slide's de-identified view: random, so it says nothing of the
    slide id, the file or the centre."""
    return "".join(secrets.choice(ID_ALPHABET) for _ in range(PUBLIC_ID_LENGTH))


# What any id the hub ever made (or a client may name) looks like: checked before a query.
_ANY_ID = re.compile(r"[a-z0-9]{1,64}")


def looks_like_id(value: str) -> bool:
    return _ANY_ID.fullmatch(value) is not None
