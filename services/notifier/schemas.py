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
