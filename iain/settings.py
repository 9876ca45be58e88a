"""Settings, read from IAIN_* environment variables: the only place that reads them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import IPvAnyNetwork, PositiveInt, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_SECRET = "iain-development-secret-change-me"
# Client secrets seen in examples and quick starts: never a production one.
WEAK_OIDC_SECRETS = frozenset(
    {"", "secret", "changeme", "change-me", "client-secret", DEFAULT_SECRET}
)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="IAIN_", extra="ignore")

    mode: Literal["development", "production"] = "development"
    # All embedded state (local storage, SQLite catalogue, caches) lives under home.
    home: Path = Path(".iain")
    storage_url: str = ""  # a directory, or s3://HOST:PORT/BUCKET; default: HOME/storage
    s3_access_key: str = ""
    s3_secret_key: SecretStr = SecretStr("")
    s3_secure: bool = True
    s3_region: str | None = None
    database_url: str = ""  # SQLAlchemy URL; default: sqlite under HOME
    secret_key: SecretStr = SecretStr(DEFAULT_SECRET)
    host: str = "127.0.0.1"
    port: int = 8000
    tile_size: int = 256
    jpeg_quality: int = 80
    tile_cache_mb: int = 256
    # Serve stored JPEG tiles without decoding when they match the DeepZoom grid; false
    # forces decode + re-encode of every tile (for comparison).
    zero_transcode: bool = True
    max_open_slides: int = 64
    local_copy_cache_mb: int = 4096
    testdata: Path = Path("../shared/testdata")
    # Normalised pyramids (tiles.convert): the hub runs queued conversions in a worker
    # process, within these limits; false leaves them queued (another hub may run them).
    convert_worker: bool = True
    convert_timeout_s: float = 3600.0
    convert_memory_mb: int = 4096
    # Inference jobs (exchange.jobs.queue): how long a worker's lease lasts without a
    # heartbeat, and how many lost leases a job survives before it fails.
    # The embedded default's CPU worker, a child process of `iain serve` (`iain demo` has it).
    inference_worker: bool = False
    job_lease_s: float = 60.0
    job_max_lost_leases: int = 3
    # Second opinions (exchange.sharing): days to answer a routine / urgent request, and how
    # long after the due date the addressee may still open its slides.
    consultation_routine_days: PositiveInt = 7
    consultation_urgent_days: PositiveInt = 2
    consultation_grant_margin_days: int = 7
    # Notifications: how often each hub process looks for new ones (the live bell), and
    # e-mail over SMTP ("" host: in the app only). MSSanté is SMTP with a client
    # certificate: smtp_client_cert / smtp_client_key (PEM).
    notify_poll_s: float = 0.25
    reminders_every_s: float = 60.0
    smtp_host: str = ""
    smtp_port: int = 587
    smtp_sender: str = "iain@localhost"
    smtp_starttls: bool = True
    smtp_tls: bool = False
    smtp_username: str = ""
    smtp_password: SecretStr = SecretStr("")
    smtp_ca_file: str = ""
    smtp_client_cert: str = ""
    smtp_client_key: str = ""
    # Resumable uploads: part size in bytes (S3 needs at least 5 MiB) and the largest upload.
    upload_part_size: int = 16 * 1024 * 1024
    upload_max_gb: int = 200
    # Audit events older than this are removed by `iain audit prune` (the chain stays
    # verifiable). Ten years: French health-data rules keep access traces for long.
    audit_retention_days: PositiveInt = 3650
    # Browser login sessions and the throttle on failed logins (per username and address).
    session_hours: float = 12.0
    login_max_failures: int = 5
    login_window_s: float = 300.0
    # Reverse proxies whose X-Forwarded-For gives the client address (the login throttle's
    # key), as addresses or CIDR networks separated by commas, e.g. "10.0.0.0/8,::1".
    # Default none: the TCP peer is the client, whatever a header says.
    trusted_proxies: Annotated[list[IPvAnyNetwork], NoDecode] = []
    # OpenID Connect (authorisation code + PKCE), e.g. Pro Santé Connect or Keycloak: on
    # when an issuer is set. The callback is PUBLIC_URL/api/login/oidc/callback (PUBLIC_URL
    # defaults to the URL the browser used).
    public_url: str = ""
    oidc_issuer: str = ""
    oidc_client_id: str = ""
    oidc_client_secret: SecretStr = SecretStr("")
    oidc_scopes: str = "openid profile email"
    oidc_label: str = "OpenID Connect"  # the login page's button
    # Which claims carry the user's centre, roles, RPPS number and username; claim values
    # go through the maps (JSON objects in the environment: claim value -> centre code or
    # role); a centre value neither mapped nor a centre code is refused, role values that
    # map to no IAIN role are ignored.
    oidc_centre_claim: str = "centre"
    oidc_roles_claim: str = "roles"
    oidc_rpps_claim: str = "rpps"
    oidc_username_claim: str = "preferred_username"
    oidc_centre_map: dict[str, str] = {}
    oidc_role_map: dict[str, str] = {}

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @model_validator(mode="after")
    def _defaults_under_home(self) -> Settings:
        if not self.storage_url:
            self.storage_url = str(self.home / "storage")
        if not self.database_url:
            self.database_url = f"sqlite:///{self.home / 'iain.db'}"
        return self

    @property
    def cache_dir(self) -> Path:
        return self.home / "cache"

    def check_production(self) -> None:
        """Production refuses to run with the development secret, or with OpenID Connect
        configured but no real client secret."""
        if self.mode == "production" and self.secret_key.get_secret_value() == DEFAULT_SECRET:
            raise ValueError("IAIN_SECRET_KEY must be set to a real secret in production mode")
        if self.mode == "production" and self.oidc_issuer:
            secret = self.oidc_client_secret.get_secret_value()
            if len(secret) < 16 or secret in WEAK_OIDC_SECRETS:
                raise ValueError(
                    "IAIN_OIDC_CLIENT_SECRET must be set to the provider's client secret "
                    "(at least 16 characters) in production mode"
                )
            if not self.oidc_client_id:
                raise ValueError("IAIN_OIDC_CLIENT_ID must be set when IAIN_OIDC_ISSUER is")

    @property
    def oidc_enabled(self) -> bool:
        return bool(self.oidc_issuer)
