"""The transactional outbox (design.md §8b), its relay, and the unit of work built on both.

aio-pika's robust connection does not resend a publish that failed, so nothing a handler decides is
published from inside its transaction: `uow.emit(event)` writes an outbox row in the same transaction
(a rollback drops it), and the relay publishes the rows after commit, deleting each one only once the
broker confirmed it. A crash in between only means a resend, which every consumer tolerates.

    async with outbox.unit_of_work() as uow:
        await uow.conn.execute(...)
        await uow.emit(event)
    # committed: the relay has been woken, the event is on its way

The relay is a `LoopService` (the shape of Prefect's server services): `run_once` every `loop_seconds`,
sooner when a commit kicks it; `start(loops=1)` is the one-shot tests use.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.bus import Bus, Delivery
from shared.db import Database
from shared.messages import STATUS_EXCHANGE, Outgoing
from shared.observability import OUTBOX_PUBLISHED, trace_headers

log = logging.getLogger("edt.outbox")


class LoopService(ABC):
    """Periodic work: `run_once` every `loop_seconds` (counted from the previous start) or as soon as
    `kick()` is called. A failed run is logged and the next one waits a whole interval."""

    loop_seconds: float = 60.0

    def __init__(self, loop_seconds: float | None = None) -> None:
        if loop_seconds is not None:
            self.loop_seconds = loop_seconds
        self._wake = asyncio.Event()
        self._should_stop = False
        self._task: asyncio.Task[None] | None = None
        self.completed_runs = 0  # failed ones included

    @property
    def name(self) -> str:
        return type(self).__name__

    @abstractmethod
    async def run_once(self) -> None: ...

    def kick(self) -> None:
        """Run again as soon as the current run (if any) ends."""
        self._wake.set()

    async def start(self, loops: int | None = None) -> None:
        """Run until `stop()` (or `loops` runs, for tests)."""
        self._should_stop = False
        done = 0
        while not self._should_stop:
            started = time.monotonic()
            failed = False
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - a periodic service outlives any one failure
                log.exception("%s failed; next run in %.1f s", self.name, self.loop_seconds)
                failed = True
            done += 1
            self.completed_runs += 1
            if loops is not None and done >= loops:
                return
            if failed:  # whatever failed (the broker, SMTP) gets a whole interval to come back
                await asyncio.sleep(self.loop_seconds)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.0, started + self.loop_seconds - time.monotonic()))
            self._wake.clear()

    def start_in_background(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self.start(), name=self.name)

    async def stop(self) -> None:
        """Let the current run finish (at most one interval), then stop."""
        task, self._task = self._task, None
        if task is None:
            return
        self._should_stop = True
        self._wake.set()
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout=self.loop_seconds)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


class Periodic(LoopService):
    """A coroutine function run as a LoopService (e.g. a retention sweep composed in a service's main.py)."""

    def __init__(self, job: Callable[[], Awaitable[None]], loop_seconds: float, name: str) -> None:
        super().__init__(loop_seconds)
        self.job = job
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    async def run_once(self) -> None:
        await self.job()


class Outbox:
    """One service's outbox table: rows written inside the service's transactions, published by `relay`."""

    def __init__(self, db: Database, table: sa.Table, bus: Bus, *, loop_seconds: float = 1.0) -> None:
        self.db = db
        self.table = table
        self.relay = OutboxRelay(self, bus, loop_seconds=loop_seconds)
        self._lz4: bool | None = None

    @contextlib.asynccontextmanager
    async def unit_of_work(self) -> AsyncIterator[OutboxUnitOfWork]:
        """ONE transaction: committed when the block ends (rolled back, events included, on an exception);
        then the relay is kicked and the `after_commit` callbacks run."""
        async with self.db.transaction() as conn:
            uow = OutboxUnitOfWork(conn, self)
            yield uow
        if uow.emitted:
            self.relay.kick()
        for callback in uow.callbacks:
            callback()

    async def write(self, conn: AsyncConnection, events: Sequence[Outgoing], message_id: str | None = None, *,
                    bulk: bool = False, headers: dict[str, str] | None = None) -> None:
        """The rows of `events`; their headers are `headers`, by default the trace context of the caller."""
        sent_with = (headers if headers is not None else trace_headers()) or None
        rows = [{"exchange": e.exchange, "routing_key": e.routing_key, "body": e.to_bytes(),
                 "message_id": message_id or getattr(e, "message_id", None) or uuid.uuid4().hex,
                 "headers": sent_with} for e in events]
        if not rows:
            return
        big = bulk and await self._toast_lz4(conn)
        if big:  # a first import's change events are megabytes: lz4 compresses them 4× faster than pglz
            await conn.execute(sa.text("SET LOCAL default_toast_compression = 'lz4'"))
        await conn.execute(self.table.insert(), rows)
        if big:
            await conn.execute(sa.text("SET LOCAL default_toast_compression TO DEFAULT"))

    async def _toast_lz4(self, conn: AsyncConnection) -> bool:
        """PostgreSQL ≥ 14 built with lz4 can compress TOASTed values with it (asked once per process)."""
        if not self.db.is_postgres:
            return False
        if self._lz4 is None:
            self._lz4 = bool((await conn.execute(sa.text(
                "SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'"))).scalar())
        return self._lz4

    def kick(self) -> None:
        self.relay.kick()


class OutboxUnitOfWork:
    """The concrete `shared.stage.UnitOfWork`: one transaction's connection, its outbox, its callbacks."""

    def __init__(self, conn: AsyncConnection, outbox: Outbox) -> None:
        self._conn = conn
        self._outbox = outbox
        self.emitted = 0
        self.callbacks: list[Callable[[], None]] = []

    @property
    def conn(self) -> AsyncConnection:
        return self._conn

    async def emit(self, event: Outgoing, *, message_id: str | None = None,
                   headers: dict[str, str] | None = None) -> None:
        await self._outbox.write(self._conn, [event], message_id, headers=headers)
        self.emitted += 1

    async def emit_many(self, events: Sequence[Outgoing]) -> None:
        await self._outbox.write(self._conn, events, bulk=True)
        self.emitted += len(events)

    def after_commit(self, callback: Callable[[], None]) -> None:
        self.callbacks.append(callback)


class OutboxRelay(LoopService):
    """Publishes the outbox's rows in order after commit; broker down: the rows stay, tried again."""

    loop_seconds = 1.0
    BATCH = 100

    def __init__(self, outbox: Outbox, bus: Bus, *, loop_seconds: float | None = None) -> None:
        super().__init__(loop_seconds)
        self.outbox = outbox
        self.bus = bus

    @property
    def name(self) -> str:
        return f"outbox:{self.outbox.table.name}"

    async def run_once(self) -> None:
        await self.flush()

    async def flush(self, *, wait: bool = False) -> int:
        """Publish every pending row in order; each row is deleted only after the broker confirmed it.
        `wait`: rows another relay is publishing are waited for, not skipped, so that on return everything
        committed before the call is on the broker (a caller about to answer a client relies on it)."""
        db, table = self.outbox.db, self.outbox.table
        sent = 0
        while True:
            async with db.transaction() as conn:
                query = sa.select(table).order_by(table.c.id).limit(self.BATCH)
                if db.is_postgres:
                    query = query.with_for_update(skip_locked=not wait)
                rows: list[Any] = list((await conn.execute(query)).all())
                for row in rows:
                    await self.bus.publish(row.exchange, row.routing_key, row.body, message_id=row.message_id,
                                           headers=dict(row.headers or {}))
                    await conn.execute(table.delete().where(table.c.id == row.id))
                    sent += 1
                if rows:
                    OUTBOX_PUBLISHED.labels(table.schema or table.name).inc(len(rows))
            if len(rows) < self.BATCH:
                return sent


class AcknowledgedCopy:
    """A service's own copy of a list the dropzone announces on edt.status (revoked tokens, the sites'
    establishments): each event is recorded in the service's table and acknowledged in the same unit of
    work, so that the dropzone answers its client once every service holds it (read-your-writes)."""

    topic = ""  # the durable queue is edt.<service>.<topic>
    binding = ""  # its routing-key pattern on edt.status

    def __init__(self, db: Database, table: sa.Table, outbox: Outbox, service: str) -> None:
        self.db = db
        self.table = table
        self.outbox = outbox
        self.service = service

    @property
    def queue(self) -> str:
        return f"edt.{self.service}.{self.topic}"

    async def start(self, bus: Bus) -> None:
        await bus.consume(self.queue, self.on_event, bindings=((STATUS_EXCHANGE, self.binding),))

    async def on_event(self, delivery: Delivery) -> None:
        async with self.outbox.unit_of_work() as uow:
            await self.record(uow, delivery.body)

    async def record(self, uow: OutboxUnitOfWork, body: bytes) -> None:
        raise NotImplementedError
