"""A job's read capability: what a worker shows to read the tiles of its job's slide.

Short-lived (a lease's length, renewed by each heartbeat), signed by the hub (HMAC-SHA256
over the secret key), and narrow: it stands for the job's requester, seeing one slide
address only — the slide's own id for the full view, its opaque id for a granted slide's
de-identified view — and it opens the tile routes only (exchange.web.auth). No database
row: a worker reads thousands of tiles a second, and each costs one HMAC."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass

from exchange.core.principal import Principal, Role

CAPABILITY_PREFIX = "iaincap_"
MAX_CAPABILITY = 1024


@dataclass(frozen=True)
class Capability:
    job_id: str
    attempt: int
    user_id: str
    centre: str
    roles: frozenset[Role]
    slide_address: str
    expires_at: float  # Unix time

    def principal(self) -> Principal:
        return Principal(
            user_id=self.user_id,
            username=f"job:{self.job_id}",
            centre=self.centre,
            roles=self.roles,
            only_slide=self.slide_address,
        )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Capabilities:
    def __init__(self, secret: bytes) -> None:
        self._key = hashlib.sha256(b"iain job capability\x00" + secret).digest()

    def _mac(self, body: str) -> str:
        return _b64(hmac.new(self._key, body.encode(), hashlib.sha256).digest())

    def issue(self, capability: Capability) -> str:
        payload = {
            "j": capability.job_id,
            "a": capability.attempt,
            "u": capability.user_id,
            "c": capability.centre,
            "r": sorted(capability.roles),
            "s": capability.slide_address,
            "e": int(capability.expires_at),
        }
        body = _b64(json.dumps(payload, separators=(",", ":")).encode())
        return f"{CAPABILITY_PREFIX}{body}.{self._mac(body)}"

    def verify(self, token: str, now: float | None = None) -> Capability | None:
        """The capability a token stands for; None if forged, damaged or expired."""
        if not token.startswith(CAPABILITY_PREFIX) or len(token) > MAX_CAPABILITY:
            return None
        body, _, mac = token[len(CAPABILITY_PREFIX) :].partition(".")
        if not hmac.compare_digest(mac.encode(), self._mac(body).encode()):
            return None
        try:
            payload = json.loads(_unb64(body))
            capability = Capability(
                job_id=str(payload["j"]),
                attempt=int(payload["a"]),
                user_id=str(payload["u"]),
                centre=str(payload["c"]),
                roles=frozenset(Role(r) for r in payload["r"]),
                slide_address=str(payload["s"]),
                expires_at=float(payload["e"]),
            )
        except (ValueError, KeyError, TypeError):
            return None
        if capability.expires_at <= (time.time() if now is None else now):
            return None
        return capability
