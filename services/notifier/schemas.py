"""Response models of the history API (design.md §4, §5): imports with their steps, the bilan, the
stage queues."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from shared.messages import ImportStatus, Mode, Stage, StepStatus
from shared.web import Instant, Page

# Values of `status` in GET /sites/{site}/imports: one status or several, comma-separated (empty: all).
_STATUS = "|".join(s.value for s in ImportStatus)
STATUS_LIST_PATTERN = rf"^(({_STATUS})(,({_STATUS}))*)?$"


class FileRead(BaseModel):
    name: str
    sha256: str
    size: int


class StepRead(BaseModel):
    stage: Stage
    label: str = Field(default="", description="The step as seed 001 names it, e.g. « Vérification des seuils »")
    status: StepStatus
    started_at: Instant | None
    ended_at: Instant | None
    message: str | None = Field(description="French, only on problems (seed 001)")
    message_en: str | None


class ImportLinks(BaseModel):
    self_: str = Field(alias="self")
    report: str
    source: str


class ImportRead(BaseModel):
    id: str
    site: str
    establishment: str | None = Field(description="null: a site-wide import (« Tous »)")
    establishment_label: str
    establishments: dict[str, str] = Field(description="Establishment id → UAI of every establishment covered")
    mode: Mode
    auto: bool
    dry_run: bool
    status: ImportStatus
    label: str = Field(description="The seed's short wording: « Fait », « Interrompu », « En attente »…")
    label_detail: str
    created_at: Instant
    started_at: Instant | None
    ended_at: Instant | None
    queue_position: int | None = Field(ge=0, description="Imports that must finish before this one starts; "
                                                         "null once it runs or has ended")
    eta_s: int | None = Field(ge=0)
    progress: int = Field(ge=0, le=100)
    file: FileRead
    source: str = Field(description="webdav | rest")
    account: str | None = Field(description="The deposit account of a WebDAV deposit")
    message: str | None
    message_en: str | None
    no_change: bool
    superseded_by: str | None
    steps: list[StepRead]
    counts: dict[str, Any] = Field(description="Per stage, what it counted")
    alerts: list[dict[str, Any]]
    links: ImportLinks
    undo_of: str | None = Field(default=None, description="An import of mode `undo`: the import it undoes")
    abort_requested_at: Instant | None = Field(default=None, description="When an abort was asked for (the "
                                               "import ends `cancelled` at its next stage boundary)")


class UndoAccepted(BaseModel):
    """202: the undo import is recorded (readable at once at `links.import`) and queued like any import."""

    import_id: str
    links: dict[str, str]


class ImportList(Page[ImportRead]):
    pass


class ReportAction(BaseModel):
    model_config = ConfigDict(extra="allow")  # a stage may say more about its action
    action: str = Field(examples=["sessions_created"])
    label: str = Field(default="", description="French, e.g. « Nombre de création de séance »")
    success: int = 0
    error: int = 0


class ReportRead(BaseModel):
    """The bilan (seed 001): per action, success and error counts, and the total of tasks."""

    import_id: str
    status: ImportStatus
    label: str
    label_detail: str
    establishment_label: str
    file: FileRead
    steps: list[StepRead]
    actions: list[ReportAction]
    total_tasks: int
    alerts: list[dict[str, Any]]
    message: str | None
    message_en: str | None


class QueueRead(BaseModel):
    queue: str
    ready: int | None
    unacked: int | None
    consumers: int | None
    dead_lettered: int | None
    oldest_message_age_s: float = Field(description="Age of the oldest import queued for this stage")
    rate_per_min: float = Field(description="Steps ended per minute over the last 5 minutes")
    broker: dict[str, Any] = Field(default_factory=dict, description="More figures from the broker, if any")


class ActiveImportRead(BaseModel):
    """An import waiting or in flight, as the ops view lists them."""

    id: str
    site: str
    establishment: str | None
    establishment_label: str
    mode: Mode
    status: ImportStatus
    label: str
    created_at: Instant
    started_at: Instant | None
    queue_position: int | None = Field(ge=0)
    queued_stage: Stage | None = Field(description="The stage queue it waits in, if any")


class QueuesRead(BaseModel):
    stages: dict[str, QueueRead]
    waiting_imports: int
    in_flight_imports: int = Field(description="Admitted and not ended (a manual import awaiting its selection "
                                               "included)")
    max_in_flight: int
    active: list[ActiveImportRead] = Field(default_factory=list,
                                           description="Imports waiting or in flight, oldest first (at most 100)")


class DeadLetterRead(BaseModel):
    """A message its consumer gave up on (after its retry budget), kept in the queue's dead-letter queue."""

    message_id: str
    routing_key: str
    attempts: int = Field(description="Deliveries it had before it was given up")
    import_id: str | None = Field(None, description="The import it is about, when it names one")
    site: str | None = None
    reason: str | None = Field(None, description="Why the broker dead-lettered it (rejected, delivery_limit…)")
    size: int = Field(description="Bytes of its body")


class DeadLetterQueueRead(BaseModel):
    queue: str
    count: int = Field(description="Messages listed (at most `limit`)")
    messages: list[DeadLetterRead]


class DeadLettersRead(BaseModel):
    queues: list[DeadLetterQueueRead]


class ReplayRead(BaseModel):
    queue: str
    replayed: int = Field(description="Messages sent back to the queue, each with a whole retry budget")


# --- personal data (docs/privacy.md) ----------------------------------------------------------------------


class RetainedCopy(BaseModel):
    """A sealed copy of a school file that names the person (a deposited file and its canonical model): never
    rewritten, it leaves the blob store by retention."""

    import_id: str
    establishment: str
    model_kept_until: Instant | None = Field(description="null while the model is the establishment's baseline "
                                                         "(replaced by its next integrated import)")
    baseline: bool
    source_kept_until: Instant | None = Field(description="When the deposited file leaves (null: not yet ended)")


class PersonFileIdent(BaseModel):
    establishment: str
    kind: str = Field(description="teachers | students")
    ident: str = Field(description="The person's Ident in the establishment's timetable file")


class PersonRead(BaseModel):
    """Everything edt-import holds about an ENT person (right of access), per service."""

    site: str
    ent_id: str
    found: bool = Field(description="false: no service holds anything about this id")
    held: dict[str, dict[str, Any]] = Field(description="Per service (reconciler, scheduler, validator), what it "
                                                        "keeps: directory entries, IdPN associations, matches, "
                                                        "memberships, courses, the person as the files name them")
    file_idents: list[PersonFileIdent]
    retained: list[RetainedCopy]


class PersonErasureRead(BaseModel):
    """An erasure, confirmed by every service holding data (right to erasure)."""

    site: str
    ent_id: str
    confirmed_by: list[str] = Field(description="The services that erased and acknowledged, in one transaction each")
    erased: dict[str, Any] = Field(description="Per service, what it deleted")
    retained: list[RetainedCopy] = Field(description="Sealed copies of school files naming the person, which "
                                                     "leave by retention")


class RetentionRunRead(BaseModel):
    ran_at: Instant
    services: dict[str, dict[str, Any]] = Field(description="Per service, what its purge removed (counts)")


class AccessRead(BaseModel):
    id: int
    at: Instant
    actor: str = Field(description="`admin`, a site token's id, or a deposit account's login")
    actor_kind: str = Field(description="admin | site_token | account")
    action: str = Field(description="source.download | webdav.read | unreconciled.read | preview.read | "
                                    "person.export | person.erase")
    resource: str
    site: str | None
    import_id: str | None
    service: str


class AccessList(Page[AccessRead]):
    pass
