"""Every command and event that crosses the bus, as versioned pydantic models (design.md §2, §4).

Big payloads never ride here: files and parsed timetables are in the blob store, messages carry hashes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar, Literal, Protocol, overload

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = 1

# Site and establishment ids (the REST paths, the WebDAV paths, every message's `site`/`establishment`).
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"

# Exchanges and queues (design.md §2).
STATUS_EXCHANGE = "edt.status"
CHANGES_EXCHANGE = "edt.changes"
NOTIFICATIONS_EXCHANGE = "edt.notifications"
DEAD_LETTER_EXCHANGE = "edt.dlx"


class Stage(StrEnum):
    DEPOSIT = "deposit"
    VALIDATION = "validation"
    THRESHOLDS = "thresholds"
    GROUPS = "groups"
    SESSIONS = "sessions"


# The queue each pipeline stage consumes; the deposit stage has none (it is fed by WebDAV and REST).
STAGE_QUEUES: dict[Stage, str] = {
    Stage.VALIDATION: "edt.validate",
    Stage.THRESHOLDS: "edt.thresholds",
    Stage.GROUPS: "edt.groups",
    Stage.SESSIONS: "edt.sessions",
}
PIPELINE: tuple[Stage, ...] = (Stage.VALIDATION, Stage.THRESHOLDS, Stage.GROUPS, Stage.SESSIONS)


def next_stage(stage: Stage) -> Stage | None:
    index = PIPELINE.index(stage)
    return PIPELINE[index + 1] if index + 1 < len(PIPELINE) else None


class StepStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    OK = "ok"
    WARNING = "warning"
    ERROR = "error"
    SKIPPED = "skipped"  # produced by no stage; histories recorded by earlier versions may still hold it


class ImportStatus(StrEnum):
    WAITING = "waiting"
    RECEIVED = "received"
    VALIDATING = "validating"
    CHECKING_THRESHOLDS = "checking_thresholds"
    CREATING_GROUPS = "creating_groups"
    GENERATING_SESSIONS = "generating_sessions"
    AWAITING_SELECTION = "awaiting_selection"
    DONE = "done"
    PREVIEWED = "previewed"
    REJECTED = "rejected"
    BLOCKED = "blocked"
    FAILED = "failed"
    SUPERSEDED = "superseded"
    CANCELLED = "cancelled"


TERMINAL_STATUSES = frozenset(
    {
        ImportStatus.DONE,
        ImportStatus.PREVIEWED,
        ImportStatus.REJECTED,
        ImportStatus.BLOCKED,
        ImportStatus.FAILED,
        ImportStatus.SUPERSEDED,
        ImportStatus.CANCELLED,
    }
)


class Mode(StrEnum):
    AUTO = "auto"
    MANUAL = "manual"
    # Extension: the import made by POST /imports/{id}/undo, restoring what the undone import changed.
    UNDO = "undo"


# What a deposit (WebDAV, REST upload) may ask for: an undo is made by the history API only.
DEPOSIT_MODES: tuple[Mode, ...] = (Mode.AUTO, Mode.MANUAL)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Outgoing(Protocol):
    """Anything a unit of work can emit: where it goes (exchange, routing key) and its bytes."""

    @property
    def exchange(self) -> str: ...

    @property
    def routing_key(self) -> str: ...

    def to_bytes(self) -> bytes: ...


@dataclass(frozen=True)
class Envelope:
    """An outgoing message spelled out: a command for a stage queue (exchange "" = straight to the queue
    named `routing_key`), or a body whose shape the receiving side owns (notifications, change events)."""

    exchange: str
    routing_key: str
    body: bytes
    message_id: str | None = None

    def to_bytes(self) -> bytes:
        return self.body
@overload
def iso(value: datetime) -> str: ...
@overload
def iso(value: None) -> None: ...
def iso(value: datetime | None) -> str | None:
    """An instant as the API and the events write it: ISO 8601 in UTC with a `Z` (design.md §5). A naive
    value is UTC (SQLite hands those back)."""
    if value is None:
        return None
    moment = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return moment.isoformat().replace("+00:00", "Z")


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")
    v: int = SCHEMA_VERSION

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Any:
        return cls.model_validate_json(data)


class FileRef(BaseModel):
    name: str
    sha256: str
    size: int


class Deposit(BaseModel):
    """What the dropzone recorded; rides on the deposit status event so the notifier can admit it."""

    file: FileRef
    mode: Mode
    dry_run: bool = False
    # A manual import whose client asked for the wizard: it pauses at awaiting_selection after the
    # reconciler computed its preview (GET /imports/{id}/preview, PUT …/selection, POST …/confirm).
    review: bool = False
    source: Literal["webdav", "rest"]
    account: str | None = None
    # Establishment id → UAI for every establishment the import covers (one, or all for a site-wide file).
    establishments: dict[str, str] = Field(default_factory=dict)
    target_uais: list[str] = Field(default_factory=list)
    # Establishment id → name for every establishment of the site: what the history shows (never read
    # from the dropzone's tables).
    establishment_names: dict[str, str] = Field(default_factory=dict)


class StatusEvent(Message):
    """Published by every stage when a step starts and ends; routing key import.<stage>.<step_status>."""

    exchange: ClassVar[str] = STATUS_EXCHANGE

    import_id: str
    site: str
    establishment: str | None
    stage: Stage
    step_status: StepStatus
    at: datetime = Field(default_factory=utcnow)
    message: str | None = None  # user-facing French, only on problems (seed 001)
    message_en: str | None = None
    counts: dict[str, Any] | None = None
    alerts: list[dict[str, Any]] | None = None
    # Extension: the import status this step leads to when it ends the import (rejected, blocked, done…).
    outcome: ImportStatus | None = None
    deposit: Deposit | None = None  # only on the deposit stage's event

    @property
    def routing_key(self) -> str:
        return f"import.{self.stage.value}.{self.step_status.value}"


class StageCommand(Message):
    """Sent to a stage queue: 'run your step for this import'. Same shape for every stage."""

    import_id: str
    site: str
    establishment: str | None
    establishments: dict[str, str] = Field(default_factory=dict)
    mode: Mode
    dry_run: bool = False
    review: bool = False  # manual import paused for the wizard after the reconciler's preview (see Deposit)
    file: FileRef
    received_at: datetime
    started_at: datetime  # when the import was admitted: sessions are generated from here on (seed 001)
    # Blob hashes and small results produced by earlier stages (e.g. the canonical timetable's hash).
    artifacts: dict[str, Any] = Field(default_factory=dict)

    def to(self, stage: Stage) -> Envelope:
        """This command on `stage`'s queue; its message id makes a resend recognisable."""
        return Envelope("", STAGE_QUEUES[stage], self.to_bytes(), f"{self.import_id}:{stage.value}")


class ImportLifecycle(Message):
    """Published by the notifier when an import reaches a status; routing key import.history.<status>."""

    exchange: ClassVar[str] = STATUS_EXCHANGE

    import_id: str
    site: str
    establishment: str | None
    establishments: dict[str, str] = Field(default_factory=dict)
    status: ImportStatus
    mode: Mode
    file: FileRef
    at: datetime = Field(default_factory=utcnow)
    no_change: bool = False

    @property
    def routing_key(self) -> str:
        return f"import.history.{self.status.value}"


class DirectoryUpdated(Message):
    """Published by the reconciler (exchange edt.status, routing key directory.updated.<site>) when an ENT
    directory or IdPN upload of an establishment commits: the new snapshot (shared.reconcile.Directory
    JSON) is the blob `sha256`. Consumers keep the newest by `at` (the commit order of the reconciler)."""

    exchange: ClassVar[str] = STATUS_EXCHANGE

    site: str
    establishment: str
    sha256: str
    at: datetime = Field(default_factory=utcnow)
    counts: dict[str, int] = Field(default_factory=dict)

    @property
    def routing_key(self) -> str:
        return f"directory.updated.{self.site}"


class EstablishmentUpdated(Message):
    """Published by the dropzone (exchange edt.status, routing key establishment.updated.<site>) when an
    establishment is created or renamed, so that the services showing its name keep their own copy."""

    exchange: ClassVar[str] = STATUS_EXCHANGE

    site: str
    establishment: str
    uai: str
    name: str
    at: datetime = Field(default_factory=utcnow)

    @property
    def routing_key(self) -> str:
        return f"establishment.updated.{self.site}"


class DirectoryBarrier(Message):
    """Sent by the thresholds stage straight to its own directory queue: once its consumer has handled this
    marker, every directory event queued before it has been applied (see services/thresholds/handlers.py)."""

    barrier: str


class DepositAck(Message):
    """Published on edt.status (routing key deposit.ack.<by>) once a service has recorded what a deposit
    means for it: the notifier the import (readable, listed, queued), threshold control the lock of the
    establishment's settings. The dropzone answers the upload (202) or the PUT (201) after both, so that a
    client reads its own write at once (design.md §5 read-your-writes)."""

    exchange: ClassVar[str] = STATUS_EXCHANGE

    import_id: str
    by: Literal["notifier", "thresholds"]

    @property
    def routing_key(self) -> str:
        return f"deposit.ack.{self.by}"


DEPOSIT_ACKERS: tuple[str, ...] = ("notifier", "thresholds")


class EstablishmentAck(Message):
    """Published on edt.status (routing key establishment.ack.<by>) once a service has recorded an
    establishment of a site (EstablishmentUpdated): the PUT is answered after every one has."""

    exchange: ClassVar[str] = STATUS_EXCHANGE

    site: str
    establishment: str
    by: str

    @property
    def routing_key(self) -> str:
        return f"establishment.ack.{self.by}"


# The services that answer routes under /sites/{site}/establishments/{est}/ from their own list of the
# site's establishments (shared.establishments.KnownEstablishments).
ESTABLISHMENT_ACKERS: tuple[str, ...] = ("thresholds", "reconciler", "scheduler")


class TokenRevoked(Message):
    """Published by the dropzone (exchange edt.status, routing key token.revoked.<site>) when a site token is
    revoked: every service records it in its own revocation list before it acknowledges, and the DELETE is
    answered once they all have (revoked at once for the request after the answer, in every service)."""

    exchange: ClassVar[str] = STATUS_EXCHANGE

    token_id: str
    site: str
    at: datetime = Field(default_factory=utcnow)

    @property
    def routing_key(self) -> str:
        return f"token.revoked.{self.site}"


class TokenRevocationAck(Message):
    """Published on edt.status (routing key token.ack.<by>) once a service has recorded a revocation."""

    exchange: ClassVar[str] = STATUS_EXCHANGE

    token_id: str
    by: str

    @property
    def routing_key(self) -> str:
        return f"token.ack.{self.by}"


# The services that keep a revocation list of their own besides the dropzone (which writes its own in the
# DELETE's transaction).
REVOCATION_ACKERS: tuple[str, ...] = ("validator", "thresholds", "reconciler", "scheduler", "notifier")


class ImportAbort(Message):
    """Published by the notifier (exchange edt.status, routing key abort.requested.<site>) when a running import
    is to stop at its next stage boundary: every stage service records it (its StageWorker checks it inside
    the stage's transaction before committing) and acknowledges (AbortAck)."""

    exchange: ClassVar[str] = STATUS_EXCHANGE

    import_id: str
    site: str
    at: datetime = Field(default_factory=utcnow)

    @property
    def routing_key(self) -> str:
        return f"abort.requested.{self.site}"


class AbortAck(Message):
    """A stage service recorded an abort (routing key abort.ack.<by>): `finished` when its own step of the
    import had already committed (for the last stage: the import is integrated, too late to abort)."""

    exchange: ClassVar[str] = STATUS_EXCHANGE

    import_id: str
    by: str
    finished: bool

    @property
    def routing_key(self) -> str:
        return f"abort.ack.{self.by}"


class ImportHeartbeat(Message):
    """A stage is at work on an import (routing key lease.<stage>): sent while its step runs, also while it
    waits out an outage, so that the notifier can tell an import being worked on from one nobody owns. Sent
    straight to the bus, not through the outbox — it must leave while the database is down; a lost one
    costs nothing."""

    exchange: ClassVar[str] = STATUS_EXCHANGE

    import_id: str
    stage: Stage
    at: datetime = Field(default_factory=utcnow)

    @property
    def routing_key(self) -> str:
        return f"lease.{self.stage.value}"


ABORT_ACKERS: tuple[str, ...] = tuple(s.value for s in PIPELINE)


# --- personal data (docs/privacy.md) --------------------------------------------------------------------

PrivacyAction = Literal["retention", "export", "erase"]
# Who holds what: the services each request goes to. Retention: the owners of what expires (deposited files,
# canonical models, directory snapshots, unreconciled lists and previews). A person: the reconciler first
# (the ENT id's directory entry, associations, memberships, matches — and the person's idents in the files),
# then those holding data by file ident.
RETENTION_OWNERS: tuple[str, ...] = ("dropzone", "validator", "reconciler")
PERSON_FIRST: tuple[str, ...] = ("reconciler",)
PERSON_THEN: tuple[str, ...] = ("scheduler", "validator")


class FileIdent(BaseModel):
    """A person of a timetable file, as the reconciler matched it to an ENT id."""

    establishment: str
    kind: Literal["teachers", "students"]
    ident: str


class PrivacyRequest(Message):
    """Sent by the notifier (exchange edt.status, routing key privacy.request.<action>.<service>) to one service:
    run a retention purge now, or export / erase what it holds about an ENT person. The service answers
    with a PrivacyReply from the same transaction as its erasure (outbox), so that an answer is a proof."""

    exchange: ClassVar[str] = STATUS_EXCHANGE

    request_id: str
    action: PrivacyAction
    service: str  # the addressee
    site: str | None = None
    person: str | None = None  # ENT id
    file_idents: list[FileIdent] = Field(default_factory=list)  # the person in the files (from the reconciler)
    by: str = ""  # who asked (the access log's actor)
    at: datetime = Field(default_factory=utcnow)

    @property
    def routing_key(self) -> str:
        return f"privacy.request.{self.action}.{self.service}"


class PrivacyReply(Message):
    """A service's answer to a PrivacyRequest (routing key privacy.reply.<by>): what it holds (export), what
    it erased or purged (counts), and `file_idents` when it is the reconciler answering about a person."""

    exchange: ClassVar[str] = STATUS_EXCHANGE

    request_id: str
    action: PrivacyAction
    by: str
    data: dict[str, Any] = Field(default_factory=dict)
    file_idents: list[FileIdent] = Field(default_factory=list)
    error: str | None = None

    @property
    def routing_key(self) -> str:
        return f"privacy.reply.{self.by}"


class AccessRecorded(Message):
    """A read of personal data (routing key access.<service>), for the notifier's access log: who (`actor`,
    a token id, `admin` or a deposit account), when, what (`action` and `resource`)."""

    exchange: ClassVar[str] = STATUS_EXCHANGE

    actor: str
    actor_kind: Literal["admin", "site_token", "account"]
    action: str  # source.download | webdav.read | unreconciled.read | preview.read | person.export | person.erase
    resource: str
    site: str | None = None
    import_id: str | None = None
    service: str = ""
    at: datetime = Field(default_factory=utcnow)

    @property
    def routing_key(self) -> str:
        return f"access.{self.service or 'unknown'}"
