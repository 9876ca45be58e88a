"""Settings, read from IAIN_* environment variables: the only place that reads them."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_SECRET = "iain-development-secret-change-me"


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
    # Resumable uploads: part size in bytes (S3 needs at least 5 MiB) and the largest upload.
    upload_part_size: int = 16 * 1024 * 1024
    upload_max_gb: int = 200

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
        """Production refuses to run with the development secret."""
        if self.mode == "production" and self.secret_key.get_secret_value() == DEFAULT_SECRET:
            raise ValueError("IAIN_SECRET_KEY must be set to a real secret in production mode")
