"""One Settings object for every service and both run modes (design.md §3, prefix EDT_)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EDT_", extra="ignore")

    database_url: str = "sqlite+aiosqlite:///./.edt-import/edt.db"
    broker_url: str = "memory://"
    blob_dir: Path = Path(".edt-import/blobs")
    data_dir: Path = Path(".edt-import")
    admin_token: str = ""
    # Signs site tokens so that every service can check them without reading dropzone's tables.
    secret_key: str = ""
    public_url: str = "http://127.0.0.1:8000"
    host: str = "127.0.0.1"
    port: int = 8000
    max_upload_mb: int = 100
    partner_name: str = "EDT-IMPORT"
    private_key_file: Path | None = None
    timezone: str = "Europe/Paris"
    school_year_start: str = "08-01"
    smtp_url: str | None = None  # smtp://[user:pass@]host:port (smtps:// for TLS, ?starttls=1); unset = no e-mail
    smtp_from: str = "edt-import@localhost"
    # Threshold control: how long a stage waits for the previous import's lifecycle event before deciding
    # without it, and after how long an import never seen ending stops locking its site's thresholds.
    thresholds_lifecycle_wait_s: float = 10.0
    thresholds_lock_ttl_s: int = 6 * 3600
    # Software accepted by file validation (design.md §8a): products, first year, format major versions.
    accepted_products: str = "EDT,PRONOTE"
    accepted_min_year: int = 2013
    parse_workers: int = Field(default=1, ge=1)  # processes parsing exports, per validator process

    # Pipeline tuning (extensions of the contract).
    max_in_flight: int = Field(default=4, ge=1)  # imports running at once across all sites (fairness, §2)
    max_retries: int = Field(default=3, ge=0)  # redeliveries before a message goes to the dead-letter queue
    retry_backoff_s: float = 0.5
    prefetch: int = 4
    rabbitmq_management_url: str = "http://guest:guest@127.0.0.1:15672"
    # Read-your-writes: how long a deposit's answer waits for the notifier and threshold control to have
    # recorded it (they normally take milliseconds; past this bound the client is answered anyway).
    deposit_ack_timeout_s: float = 10.0
    login_max_failures: int = 5  # failed WebDAV logins before an account is locked out
    login_lockout_s: int = 900

    # Observability: log level and format (json: one object per line with import_id, site, establishment,
    # stage, trace_id), and where spans go (none: traces still propagate and name every log line).
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"
    tracing_exporter: Literal["none", "console", "otlp"] = "none"

    @property
    def max_upload_bytes(self) -> int:
        return self.max_upload_mb * 1024 * 1024

    @property
    def is_memory_bus(self) -> bool:
        return self.broker_url.startswith("memory://")

    @property
    def effective_secret(self) -> str:
        return self.secret_key or self.admin_token


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
