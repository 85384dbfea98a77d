"""The unit of work, the outbox relay (a LoopService) and StageWorker, on a SQLite file and the in-process
bus: events leave only after commit, a rollback drops them, a commit wakes the relay, a redelivered
command is dropped, and the wizard's confirm and the worker end a step the same way (`finish_step`)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from services.validator import store
from shared.bus import Delivery, MemoryBus
from shared.db import Database
from shared.messages import (
    STAGE_QUEUES,
    STATUS_EXCHANGE,
    AbortAck,
    Envelope,
    FileRef,
    ImportAbort,
    ImportStatus,
    Mode,
    Outgoing,
    StageCommand,
    StatusEvent,
    StepStatus,
)
from shared.messages import Stage as StageName
from shared.outbox import LoopService, Outbox
from shared.stage import StageResult, UnitOfWork
from shared.worker import StageWorker, finish_step

NOW = datetime(2026, 9, 1, 8, tzinfo=UTC)


def command(**artifacts: Any) -> StageCommand:
    return StageCommand(import_id="imp1", site="4817", establishment="1754", mode=Mode.AUTO,
                        file=FileRef(name="x.xml", sha256="0" * 64, size=1), received_at=NOW, started_at=NOW,
                        artifacts=artifacts)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'edt.db'}")
    async with database.transaction() as conn:
        await conn.run_sync(lambda c: store.metadata.create_all(c, tables=[store.outbox, store.runs, store.aborts]))
    yield database
    await database.close()


async def pending(db: Database) -> int:
    async with db.read() as conn:
        return int((await conn.execute(sa.select(sa.func.count()).select_from(store.outbox))).scalar_one())


async def test_a_rollback_drops_the_events_and_a_commit_publishes_them(db: Database) -> None:
    bus = MemoryBus()
    outbox = Outbox(db, store.outbox, bus)
    with pytest.raises(RuntimeError):
        async with outbox.unit_of_work() as uow:
            await uow.emit(Envelope("", "q", b"lost"))
            raise RuntimeError("handler failed")
    async with outbox.unit_of_work() as uow:
        await uow.emit(Envelope("", "q", b"kept", "m1"))
        assert list(bus.published) == []  # nothing leaves before the commit
    await outbox.relay.start(loops=1)
    assert list(bus.published) == [("", "q", b"kept")]
    assert await pending(db) == 0


async def test_a_commit_wakes_the_relay_at_once(db: Database) -> None:
    bus = MemoryBus()
    outbox = Outbox(db, store.outbox, bus, loop_seconds=3600)  # only a kick can make it publish in time
    outbox.relay.start_in_background()
    try:
        await _until(lambda: outbox.relay.completed_runs >= 1)  # its first, empty, run
        called: list[str] = []
        async with outbox.unit_of_work() as uow:
            await uow.emit(StatusEvent(import_id="imp1", site="4817", establishment=None, stage=StageName.DEPOSIT,
                                       step_status=StepStatus.OK))
            uow.after_commit(lambda: called.append("after"))
            assert called == []
        assert called == ["after"]
        await _until(lambda: bool(bus.published))
        assert bus.published[0][:2] == (STATUS_EXCHANGE, "import.deposit.ok")
    finally:
        await outbox.relay.stop()


async def _until(condition: Callable[[], bool], within_s: float = 5.0) -> None:
    for _ in range(int(within_s / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise TimeoutError("condition never met")


class Flaky(LoopService):
    loop_seconds = 0.01

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    async def run_once(self) -> None:
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("broker down")


async def test_a_loop_service_outlives_a_failed_run() -> None:
    service = Flaky()
    await service.start(loops=3)
    assert service.calls == 3


class FakeUnitOfWork:
    """What a Stage sees, without a database: the events it emitted."""

    def __init__(self) -> None:
        self.events: list[tuple[Outgoing, str | None]] = []
        self.callbacks: list[Callable[[], None]] = []

    @property
    def conn(self) -> Any:
        raise AssertionError("no database here")

    async def emit(self, event: Outgoing, *, message_id: str | None = None) -> None:
        self.events.append((event, message_id))

    async def emit_many(self, events: Sequence[Outgoing]) -> None:
        self.events += [(e, None) for e in events]

    def after_commit(self, callback: Callable[[], None]) -> None:
        self.callbacks.append(callback)


async def test_a_step_that_goes_on_sends_its_event_then_the_next_command() -> None:
    uow = FakeUnitOfWork()
    await finish_step(uow, StageName.GROUPS, command(timetable_sha256="a"),
                      StageResult(StepStatus.WARNING, message="Non rapprochés : 2 enseignant(s).",
                                  artifacts={"courses_kept": ["k"]}))
    (event, _), (nxt, _) = uow.events
    assert isinstance(event, StatusEvent) and event.routing_key == "import.groups.warning"
    assert event.message == "Non rapprochés : 2 enseignant(s)."
    assert isinstance(nxt, Envelope) and (nxt.exchange, nxt.routing_key) == ("", STAGE_QUEUES[StageName.SESSIONS])
    assert nxt.message_id == "imp1:sessions"  # a resend of the same command is recognisable
    assert json.loads(nxt.body)["artifacts"] == {"timetable_sha256": "a", "courses_kept": ["k"]}


async def test_a_step_that_ends_the_import_sends_only_its_event() -> None:
    for stage, result in ((StageName.THRESHOLDS, StageResult(StepStatus.ERROR, outcome=ImportStatus.BLOCKED)),
                          (StageName.SESSIONS, StageResult(StepStatus.OK))):  # the last stage
        uow = FakeUnitOfWork()
        await finish_step(uow, stage, command(), result)
        assert [type(e) for e, _ in uow.events] == [StatusEvent]


class CountingStage:
    name = StageName.VALIDATION

    def __init__(self) -> None:
        self.applied = 0

    async def prepare(self, cmd: StageCommand) -> str:
        return "prepared"

    async def apply(self, uow: UnitOfWork, cmd: StageCommand, prepared: str) -> StageResult:
        assert prepared == "prepared"
        self.applied += 1
        await uow.emit(Envelope("edt.changes", "x", b"in the same transaction"))
        return StageResult(StepStatus.OK, artifacts={"timetable_sha256": "b"})

    def close(self) -> None:
        return None


async def test_the_worker_applies_a_command_once_even_when_redelivered(db: Database) -> None:
    bus = MemoryBus()
    outbox = Outbox(db, store.outbox, bus)
    stage = CountingStage()
    worker = StageWorker(stage, outbox=outbox, bus=bus, runs=store.runs, aborts=store.aborts)
    delivery = Delivery(command().to_bytes(), STAGE_QUEUES[StageName.VALIDATION], "m")
    await worker.handle(delivery)
    await worker.handle(delivery)  # redelivered after its run finished
    assert stage.applied == 1
    await outbox.relay.start(loops=1)
    keys = [(exchange, key) for exchange, key, _ in bus.published if not key.startswith("lease.")]
    assert keys == [(STATUS_EXCHANGE, "import.validation.running"), ("edt.changes", "x"),
                    (STATUS_EXCHANGE, "import.validation.ok"), ("", STAGE_QUEUES[StageName.THRESHOLDS])]
    async with db.read() as conn:
        run = (await conn.execute(sa.select(store.runs))).one()
    assert run.step_status == "ok" and run.finished_at is not None


class AbortedWhilePreparing(CountingStage):
    """A stage whose import is aborted while it prepares (the abort recorded before its transaction ends)."""

    def __init__(self, worker_ref: list[StageWorker]) -> None:
        super().__init__()
        self.worker_ref = worker_ref

    async def prepare(self, cmd: StageCommand) -> str:
        abort = ImportAbort(import_id=cmd.import_id, site=cmd.site)
        await self.worker_ref[0].on_abort(Delivery(abort.to_bytes(), abort.routing_key, "a"))
        return "prepared"


async def test_an_abort_rolls_the_step_back_and_cancels_the_import(db: Database) -> None:
    bus = MemoryBus()
    outbox = Outbox(db, store.outbox, bus)
    ref: list[StageWorker] = []
    stage = AbortedWhilePreparing(ref)
    worker = StageWorker(stage, outbox=outbox, bus=bus, runs=store.runs, aborts=store.aborts)
    ref.append(worker)
    await worker.handle(Delivery(command().to_bytes(), STAGE_QUEUES[StageName.VALIDATION], "m"))
    assert stage.applied == 1  # it ran, then its transaction rolled back
    await outbox.relay.start(loops=1)
    published = [(exchange, key, body) for exchange, key, body in bus.published]
    keys = [(exchange, key) for exchange, key, _ in published]
    assert ("edt.changes", "x") not in keys, "what the step emitted rolled back with it"
    assert ("", STAGE_QUEUES[StageName.THRESHOLDS]) not in keys, "nothing sent on"
    ack = AbortAck.from_bytes(next(b for e, k, b in published if k == "abort.ack.validation"))
    assert not ack.finished  # recorded before the step committed
    ended = StatusEvent.from_bytes(next(b for e, k, b in published if k == "import.validation.error"))
    assert ended.outcome is ImportStatus.CANCELLED and "rien de cette étape" in (ended.message or "")

    # a later abort of a step that committed says so: too late for that step
    done = StageWorker(CountingStage(), outbox=outbox, bus=bus, runs=store.runs, aborts=store.aborts)
    other = command().model_copy(update={"import_id": "imp2"})
    await done.handle(Delivery(other.to_bytes(), STAGE_QUEUES[StageName.VALIDATION], "n"))
    abort = ImportAbort(import_id="imp2", site="4817")
    await done.on_abort(Delivery(abort.to_bytes(), abort.routing_key, "b"))
    await outbox.relay.start(loops=1)
    acks = [AbortAck.from_bytes(b) for e, k, b in bus.published if k == "abort.ack.validation"]
    assert [a.finished for a in acks if a.import_id == "imp2"] == [True]
    # and a command arriving after its abort is dropped without running
    third = StageWorker(CountingStage(), outbox=outbox, bus=bus, runs=store.runs, aborts=store.aborts)
    late = command().model_copy(update={"import_id": "imp3"})
    abort = ImportAbort(import_id="imp3", site="4817")
    await third.on_abort(Delivery(abort.to_bytes(), abort.routing_key, "c"))
    await third.handle(Delivery(late.to_bytes(), STAGE_QUEUES[StageName.VALIDATION], "o"))
    assert third.stage.applied == 0  # type: ignore[attr-defined]


class AbortedWhileApplying(CountingStage):
    """The abort arrives while the step's transaction is open: on SQLite its recording waits for that
    transaction (one writer), and the step sees it all the same."""

    def __init__(self, worker_ref: list[StageWorker]) -> None:
        super().__init__()
        self.worker_ref = worker_ref
        self.recording: asyncio.Task[None] | None = None

    async def apply(self, uow: UnitOfWork, cmd: StageCommand, prepared: str) -> StageResult:
        result = await super().apply(uow, cmd, prepared)
        abort = ImportAbort(import_id=cmd.import_id, site=cmd.site)
        self.recording = asyncio.create_task(self.worker_ref[0].on_abort(Delivery(abort.to_bytes(),
                                                                                  abort.routing_key, "a")))
        await asyncio.sleep(0)  # the recording starts: it marks the import, then waits for SQLite's one writer
        assert cmd.import_id in self.worker_ref[0]._aborting
        return result


async def test_an_abort_during_the_steps_transaction_rolls_it_back(db: Database) -> None:
    bus = MemoryBus()
    outbox = Outbox(db, store.outbox, bus)
    ref: list[StageWorker] = []
    stage = AbortedWhileApplying(ref)
    worker = StageWorker(stage, outbox=outbox, bus=bus, runs=store.runs, aborts=store.aborts)
    ref.append(worker)
    await worker.handle(Delivery(command().to_bytes(), STAGE_QUEUES[StageName.VALIDATION], "m"))
    assert stage.recording is not None
    await stage.recording
    await outbox.relay.start(loops=1)
    keys = [key for _, key, _ in bus.published if not key.startswith("lease.")]
    assert "x" not in keys and STAGE_QUEUES[StageName.THRESHOLDS] not in keys and "import.validation.error" in keys
    ack = AbortAck.from_bytes(next(b for _, k, b in bus.published if k == "abort.ack.validation"))
    assert not ack.finished
