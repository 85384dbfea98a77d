"""One Settings object for every service and both run modes (design.md §3, prefix EDT_)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
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
    # Base of the URLs handed out (WebDAV, iCal subscriptions); unset: http://EDT_HOST:EDT_PORT.
    public_url: str = ""
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
    # An import's end reaches threshold control (its settings lock) and the dropzone (a site's first import,
    # which deposit accounts wait for) a moment after the history shows it: a request that depends on that
    # end waits this long for it before being refused, so a client that saw `done` is not.
    import_end_wait_s: float = Field(default=2.0, ge=0)
    # Software accepted by file validation (design.md §8a): products, first year, format major versions.
    accepted_products: str = "EDT,PRONOTE"
    accepted_min_year: int = 2013
    parse_workers: int = Field(default=1, ge=1)  # processes parsing exports, per validator process

    # Pipeline tuning (extensions of the contract).
    max_in_flight: int = Field(default=4, ge=1)  # imports running at once across all sites (fairness, §2)
    max_retries: int = Field(default=3, ge=0)  # redeliveries before a message goes to the dead-letter queue
    retry_backoff_s: float = 0.5
    # A database or broker outage spends no retry: a handler is tried again for up to this long (then the
    # failure counts as an attempt); and an import in flight whose stage gave no sign of life (heartbeat,
    # event) for `import_lease_s` is failed with its reason unless its stage's queue still holds messages,
    # for at most 5 leases (docs/reliability.md).
    outage_wait_s: float = Field(default=900.0, ge=0)
    import_lease_s: float = Field(default=60.0, gt=0)
    prefetch: int = 4
    # PostgreSQL connections each process keeps open, and how many more it may open past them under a burst
    # (closed again when given back: a new connection costs PostgreSQL a backend and a TLS handshake, and
    # its prepared statements start empty). Ten answer 200 history reads/s beside the events' transactions.
    db_pool_size: int = Field(default=10, ge=1)
    db_pool_overflow: int = Field(default=10, ge=0)
    rabbitmq_management_url: str = "http://guest:guest@127.0.0.1:15672"
    # Read-your-writes: how long a deposit's answer waits for the notifier and threshold control to have
    # recorded it (they normally take milliseconds; past this bound, 504 without an id if the history has not).
    deposit_ack_timeout_s: float = 10.0
    # Change events kept for GET /sites/{site}/changes (per site: the newest events, at most this many
    # and none older than this many hours).
    changes_retention_h: float = Field(default=72.0, gt=0)
    changes_max_events: int = Field(default=200, ge=1)
    # Distributed mode: every service instance's base URL, by service ({"dropzone": ["http://…"], …}). Set,
    # this process answers for the whole product at the base URL (readiness, the merged OpenAPI).
    service_urls: dict[str, list[str]] = Field(default_factory=dict)
    login_max_failures: int = 5  # failed WebDAV logins before an account is locked out
    login_lockout_s: int = 900

    # Observability: log level and format (json: one object per line with import_id, site, establishment,
    # stage, trace_id), and where spans go (none: traces still propagate and name every log line).
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"
    tracing_exporter: Literal["none", "console", "otlp"] = "none"

    @model_validator(mode="after")
    def _public_url_follows_host_and_port(self) -> Settings:
        if not self.public_url:
            host = "127.0.0.1" if self.host in ("", "0.0.0.0", "::") else self.host
            self.public_url = f"http://{f'[{host}]' if ':' in host else host}:{self.port}"
        return self
    # Personal data (docs/privacy.md). Encryption at rest of the blob store and the WebDAV folder:
    # the current key `id:base64` (32 bytes, AES-256-GCM; `make run` generates it) and, comma-separated,
    # retired keys that still open what they sealed.
    blob_key: str = ""
    blob_keys: str = ""
    # How long a deposited file stays visible in the WebDAV folder once it is safely in the blob store
    # (clients read back what they wrote), and how long any other file left there (temporaries, empty
    # placeholders, client folders) is kept untouched.
    webdav_grace_s: float = Field(default=300.0, ge=0)
    webdav_stale_s: float = Field(default=24 * 3600.0, ge=0)
    # The longest a WebDAV lock lasts (a client asking for days or `Infinite` gets this; a refresh renews
    # it): a client that crashed holding a lock blocks its file this long at most.
    webdav_lock_timeout_s: int = Field(default=600, ge=1)
    # Retention, in days after the end of the import (docs/privacy.md says why these defaults): the
    # deposited files, the canonical models (never the establishment's baseline), the superseded ENT
    # directory snapshots, and the unreconciled lists and wizard previews. The history rows stay.
    retention_source_days: float = Field(default=30.0, ge=0)
    retention_model_days: float = Field(default=30.0, ge=0)
    retention_directory_days: float = Field(default=7.0, ge=0)
    retention_lists_days: float = Field(default=30.0, ge=0)
    retention_access_log_days: float = Field(default=365.0, ge=0)  # the access log itself (accountability)
    retention_interval_s: float = Field(default=3600.0, gt=0)  # how often each service purges by itself
    # How long a fan-out request (retention run, person export or erasure) waits for every service.
    privacy_timeout_s: float = Field(default=30.0, gt=0)

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
