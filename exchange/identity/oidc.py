"""OpenID Connect login (authorisation code flow with PKCE), for Pro Santé Connect, Keycloak
or any conforming provider.

The flow's secrets (state, nonce, PKCE verifier, where to go back) travel in a short-lived
cookie signed with the hub's secret key, so any hub process can finish a login another one
began. The ID token is checked with PyJWT against the provider's published keys (JWKS):
signature, issuer, audience, expiry and our nonce. Claims then give the user's centre,
roles and RPPS number through configurable claim names and value maps."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
import secrets
import threading
import time
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import httpx
import jwt
from sqlalchemy import select
from sqlalchemy.orm import Session

from exchange.core.errors import ExchangeError
from exchange.core.ids import new_id
from exchange.core.models import Centre, User
from exchange.core.principal import Role

log = logging.getLogger(__name__)

PENDING_COOKIE = "iain_oidc"
PENDING_S = 600  # a login left at the provider's page longer than this starts again
_METADATA_S = 3600.0
_ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"]
_LEEWAY_S = 60  # clock skew between the provider and the hub


class OidcError(ExchangeError):
    """A login answer that cannot be trusted (state, nonce, token): 400.

    `reason` is a short code the login page turns into a message for the user (FR/EN in
    viewer/src/lib/strings.ts); the message itself may name internals and stays in the JSON
    answer and the audit trail."""

    http_status = 400
    default_reason = "invalid"

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason or self.default_reason


class OidcRefused(OidcError):
    """A genuine login whose claims give no IAIN account (unknown centre, no role): 403."""

    http_status = 403

    default_reason = "refused"


class OidcUnavailable(OidcError):
    """The provider did not answer, or answered nonsense: 502."""

    http_status = 502

    default_reason = "unavailable"


@dataclass(frozen=True)
class OidcConfig:
    issuer: str
    client_id: str
    client_secret: str
    scopes: str = "openid profile email"
    label: str = "OpenID Connect"
    centre_claim: str = "centre"
    roles_claim: str = "roles"
    rpps_claim: str = "rpps"
    username_claim: str = "preferred_username"
    centre_map: Mapping[str, str] = field(default_factory=dict)
    role_map: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Claimed:
    """What the ID token says about the user, mapped to IAIN's terms."""

    subject: str  # "issuer|sub": unique across providers
    username: str
    display_name: str
    centre: str
    roles: list[str]
    rpps: str | None


class OidcClient:
    def __init__(
        self, config: OidcConfig, signing_key: bytes, http: httpx.Client | None = None
    ) -> None:
        self.config = config
        self._key = hashlib.sha256(b"iain-oidc|" + signing_key).digest()
        self._http = http or httpx.Client(timeout=10.0)
        self._metadata: tuple[dict[str, Any], float] | None = None
        self._jwks: dict[str, Any] | None = None
        self._lock = threading.Lock()

    # --- the provider's published configuration and keys

    def metadata(self) -> dict[str, Any]:
        now = time.monotonic()
        cached = self._metadata
        if cached is not None and now - cached[1] < _METADATA_S:
            return cached[0]
        url = self.config.issuer.rstrip("/") + "/.well-known/openid-configuration"
        data = self._get_json(url)
        for name in ("authorization_endpoint", "token_endpoint", "jwks_uri", "issuer"):
            if not isinstance(data.get(name), str):
                raise OidcUnavailable(f"the provider's configuration has no {name}")
        if data["issuer"].rstrip("/") != self.config.issuer.rstrip("/"):
            raise OidcUnavailable("the provider's configuration names another issuer")
        with self._lock:
            self._metadata = (data, now)
            self._jwks = None
        return data

    def _signing_key(self, token: str) -> Any:
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.PyJWTError as exc:
            raise OidcError(f"the ID token is malformed: {exc}") from None
        for refresh in (False, True):
            # A key we do not know yet may be a rotation: fetch the set once more.
            if refresh or self._jwks is None:
                self._jwks = self._get_json(self.metadata()["jwks_uri"])
            try:
                keys = jwt.PyJWKSet.from_dict(self._jwks).keys
            except jwt.PyJWTError as exc:
                raise OidcUnavailable(f"the provider's keys cannot be read: {exc}") from None
            for key in keys:
                if kid is None or key.key_id == kid:
                    return key
        raise OidcError("the ID token is signed with a key the provider does not publish")

    def _get_json(self, url: str) -> dict[str, Any]:
        try:
            response = self._http.get(url, headers={"Accept": "application/json"})
            response.raise_for_status()
            data = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            # The reason (an address, a TLS error) is for the operator's log, not for callers.
            log.warning("OpenID Connect provider unreachable at %s: %s", url, exc)
            raise OidcUnavailable("the login provider did not answer") from None
        if not isinstance(data, dict):
            raise OidcUnavailable("the login provider answered something else than JSON")
        return data

    # --- the flow

    def begin(self, redirect_uri: str, next_url: str) -> tuple[str, str]:
        """The provider's URL to send the browser to, and the pending-login cookie."""
        state = secrets.token_urlsafe(24)
        nonce = secrets.token_urlsafe(24)
        verifier = secrets.token_urlsafe(48)
        challenge = _b64(hashlib.sha256(verifier.encode()).digest())
        query = urlencode(
            {
                "response_type": "code",
                "client_id": self.config.client_id,
                "redirect_uri": redirect_uri,
                "scope": self.config.scopes,
                "state": state,
                "nonce": nonce,
                "code_challenge": challenge,
                "code_challenge_method": "S256",
            }
        )
        endpoint = self.metadata()["authorization_endpoint"]
        pending = {
            "state": state,
            "nonce": nonce,
            "verifier": verifier,
            "next": next_url,
            "exp": int(time.time()) + PENDING_S,
        }
        separator = "&" if "?" in endpoint else "?"
        return f"{endpoint}{separator}{query}", self._sign(pending)

    def finish(
        self, params: Mapping[str, str], pending_cookie: str | None, redirect_uri: str
    ) -> tuple[dict[str, Any], str]:
        """The provider's answer -> the ID token's verified claims and where to go next."""
        if "error" in params:
            why = params.get("error_description") or params["error"]
            raise OidcRefused(f"the login provider refused the login: {why[:200]}", "provider")
        pending = self._verify(pending_cookie)
        state = params.get("state", "")
        if not hmac.compare_digest(state.encode(), str(pending["state"]).encode()):
            raise OidcError("this login answer does not match the login started here (state)")
        code = params.get("code")
        if not code:
            raise OidcError("the login provider sent no authorisation code")
        try:
            response = self._http.post(
                self.metadata()["token_endpoint"],
                data={
                    "grant_type": "authorization_code",
                    "code": code,
                    "redirect_uri": redirect_uri,
                    "code_verifier": pending["verifier"],
                },
                auth=(self.config.client_id, self.config.client_secret),
                headers={"Accept": "application/json"},
            )
        except httpx.HTTPError as exc:
            log.warning("OpenID Connect token endpoint unreachable: %s", exc)
            raise OidcUnavailable("the login provider did not answer") from None
        if response.status_code >= 400:
            raise OidcError(f"the login provider refused the code ({response.status_code})")
        try:
            id_token = response.json()["id_token"]
        except (ValueError, KeyError, TypeError):
            raise OidcError("the login provider sent no ID token") from None
        claims = self.validate_id_token(str(id_token), str(pending["nonce"]))
        return claims, str(pending["next"])

    def validate_id_token(self, token: str, nonce: str) -> dict[str, Any]:
        key = self._signing_key(token)
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=_ALGORITHMS,
                audience=self.config.client_id,
                issuer=self.metadata()["issuer"],
                leeway=_LEEWAY_S,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )
        except jwt.PyJWTError as exc:
            raise OidcError(f"the ID token is not valid: {exc}") from None
        if not hmac.compare_digest(str(claims.get("nonce", "")).encode(), nonce.encode()):
            raise OidcError("the ID token was not issued for this login (nonce)")
        return claims

    # --- claims -> IAIN user

    def claimed(self, claims: Mapping[str, Any], centres: set[str]) -> Claimed:
        config = self.config
        sub = str(claims["sub"])
        raw_centre = claims.get(config.centre_claim)
        if not isinstance(raw_centre, str) or not raw_centre:
            raise OidcRefused(
                f"the login provider gave no centre (claim {config.centre_claim!r}): "
                "ask your administrator to map your account to an IAIN centre",
                "unknown_centre",
            )
        centre = config.centre_map.get(raw_centre, raw_centre)
        if centre not in centres:
            raise OidcRefused(
                f"the centre {raw_centre!r} from the login provider is not an IAIN centre "
                f"(known: {', '.join(sorted(centres))})",
                "unknown_centre",
            )
        roles = []
        for value in _strings(claims.get(config.roles_claim)):
            name = config.role_map.get(value, value).strip().lower().replace("-", "_")
            if name in Role.__members__.values() and name not in roles:
                roles.append(name)
        if not roles:
            raise OidcRefused(
                f"the login provider gave no IAIN role (claim {config.roles_claim!r}): "
                "ask your administrator for one",
                "no_role",
            )
        rpps = claims.get(config.rpps_claim)
        rpps_text = str(rpps) if rpps is not None else None
        if rpps_text is not None and not re.fullmatch(r"\d{11}", rpps_text):
            rpps_text = None  # not an RPPS number (some providers prefix it): kept unset
        wanted = claims.get(config.username_claim) or claims.get("email") or sub
        return Claimed(
            subject=f"{self.config.issuer.rstrip('/')}|{sub}",
            username=_username(str(wanted)),
            display_name=str(claims.get("name") or "")[:200],
            centre=centre,
            roles=roles,
            rpps=rpps_text,
        )

    def upsert_user(self, session: Session, claims: Mapping[str, Any]) -> User:
        """The user linked to this provider account, created on first login; the provider
        is the source of truth for centre, roles and RPPS, so each login updates them."""
        centres = set(session.scalars(select(Centre.code)))
        claimed = self.claimed(claims, centres)
        user = session.scalar(select(User).where(User.oidc_subject == claimed.subject))
        if user is None:
            username = claimed.username
            while session.scalar(select(User.id).where(User.username == username)):
                # A local account has this name: the provider's user gets a distinct one.
                username = f"{claimed.username[:140]}-{secrets.token_hex(3)}"
            user = User(
                id=new_id(),
                username=username,
                centre=claimed.centre,
                roles=claimed.roles,
                display_name=claimed.display_name,
                rpps=claimed.rpps,
                oidc_subject=claimed.subject,
            )
            session.add(user)
        else:
            if not user.active:
                raise OidcRefused("this account is deactivated on IAIN", "disabled")
            user.centre = claimed.centre
            user.roles = claimed.roles
            user.rpps = claimed.rpps or user.rpps
            user.display_name = claimed.display_name or user.display_name
        session.flush()
        return user

    # --- the signed pending-login cookie

    def _sign(self, payload: dict[str, Any]) -> str:
        body = _b64(json.dumps(payload, separators=(",", ":")).encode())
        mac = _b64(hmac.new(self._key, body.encode(), hashlib.sha256).digest())
        return f"{body}.{mac}"

    def _verify(self, cookie: str | None) -> dict[str, Any]:
        if not cookie or "." not in cookie:
            raise OidcError(
                "no login was started from this browser (or it took too long)", "expired"
            )
        body, _, mac = cookie.partition(".")
        expected = _b64(hmac.new(self._key, body.encode(), hashlib.sha256).digest())
        if not hmac.compare_digest(mac.encode(), expected.encode()):
            raise OidcError("the login cookie was altered")
        payload: dict[str, Any] = json.loads(
            base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        )
        if int(payload.get("exp", 0)) < time.time():
            raise OidcError("the login took too long: start again", "expired")
        return payload


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _strings(value: Any) -> list[str]:
    """A claim as a list of strings: providers send a list, or one space-separated string."""
    if isinstance(value, str):
        return value.split()
    if isinstance(value, list):
        return [str(v) for v in value]
    return []


def _username(wanted: str) -> str:
    # Accents dropped, not the letters: "Hélène Lefèvre" is helene-lefevre (an account is
    # found again by its OIDC subject, so this only names new accounts).
    plain = unicodedata.normalize("NFKD", wanted).encode("ascii", "ignore").decode()
    name = re.sub(r"[^a-z0-9._@-]+", "-", plain.strip().lower()).strip("-._@")
    name = name[:150] or "user"
    return name if len(name) >= 2 else f"{name}-user"
