"""The contract of a pipeline stage (design.md §9 handlers), pure: no database, bus or web import.

A stage is one class in its service's `handlers.py`; `shared.worker.StageWorker` drives it from the
stage's queue:

    command in → `prepare(cmd)` outside any transaction (CPU work in a thread or a worker process)
               → `apply(uow, cmd, prepared)` inside ONE unit of work: the stage's rows on `uow.conn`,
                 further events with `uow.emit`, the domain's `StageResult` returned
               → the worker records the run, emits the step's event and the next command → commit → ack.

`close()` releases what the stage holds (a process pool). Tests drive a stage with a fake unit of work.

Why the worker is not in this module: every `domain.py` builds its `StageResult` here, so importing this
module must not load SQLAlchemy, the broker client or the metrics — and the worker needs all three. It is
`shared/worker.py`; the concrete unit of work is `shared/outbox.py`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from shared.messages import ImportStatus, Outgoing, StageCommand, StepStatus
from shared.messages import Stage as StageName

if TYPE_CHECKING:  # typing only: the connection type of the unit of work
    from sqlalchemy.ext.asyncio import AsyncConnection


@dataclass
class StageResult:
    """What a stage's domain decided for one import."""

    step_status: StepStatus
    outcome: ImportStatus | None = None  # set when this step ends the import (rejected, blocked, done…)
    message: str | None = None
    message_en: str | None = None
    counts: dict[str, Any] | None = None
    alerts: list[dict[str, Any]] | None = None
    artifacts: dict[str, Any] = field(default_factory=dict)

    @property
    def forwards(self) -> bool:
        return self.outcome is None and self.step_status is not StepStatus.ERROR


INTERNAL_ERROR = ("Erreur interne pendant l'étape « {stage} » ; l'équipe ENT a été prévenue. "
                  "Vous pouvez redéposer le fichier.",
                  "Internal error during the {stage} step; the ENT team has been told. You may deposit "
                  "the file again.")


def internal_error(stage: StageName, exc: BaseException) -> StageResult:
    """A stage that gave up after its retries: the import is `failed`, the user told to deposit again."""
    fr, en = INTERNAL_ERROR
    return StageResult(StepStatus.ERROR, outcome=ImportStatus.FAILED, message=fr.format(stage=stage.value),
                       message_en=en.format(stage=stage.value) + f" ({exc.__class__.__name__}: {exc})")


class UnitOfWork(Protocol):
    """One transaction of a service: what a handler writes on `conn` and what it `emit`s commit together
    (the events as outbox rows; a rollback drops them), and the events leave only after the commit."""

    @property
    def conn(self) -> AsyncConnection: ...

    async def emit(self, event: Outgoing, *, message_id: str | None = None,
                   headers: dict[str, str] | None = None) -> None:
        """Send `event` once this transaction has committed, with `headers` (default: the current trace)."""

    async def emit_many(self, events: Sequence[Outgoing]) -> None:
        """`emit` for a batch (one statement)."""

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Call `callback` once this transaction has committed (e.g. wake a relay of the service's own)."""


class Stage(Protocol):
    """One pipeline stage: the one class of its service's handlers.py."""

    name: StageName  # which stage of the pipeline (its queue, its events)

    async def prepare(self, cmd: StageCommand) -> Any:
        """Outside any transaction: read what the stage needs and do its CPU work off the event loop."""

    async def apply(self, uow: UnitOfWork, cmd: StageCommand, prepared: Any) -> StageResult:
        """Inside the stage's one transaction: write the stage's rows and return the domain's decision."""

    def close(self) -> None:
        """Release what the stage holds (called when the service stops)."""
