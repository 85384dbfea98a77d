"""Two notifier processes on one PostgreSQL: admission is decided in the database, so concurrent deposit
events handled by both never start more imports than EDT_MAX_IN_FLIGHT, and both read the same positions."""

from __future__ import annotations

import asyncio
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from deploy.migrate import upgrade
from services.notifier import store
from services.notifier.api import QueueBoard
from services.notifier.handlers import NotifierHandlers
from services.notifier.store import imports
from shared.blobs import BlobStore, Keyring, generate_key
from shared.bus import Delivery, make_bus
from shared.db import Database
from shared.messages import Deposit, FileRef, Mode, Stage, StatusEvent, StepStatus
from shared.outbox import Outbox
from shared.settings import Settings
from tests.harness import postgres_database


def deposit_event(n: int) -> Delivery:
    event = StatusEvent(
        import_id=uuid.uuid4().hex, site=f"S{n}", establishment="E", stage=Stage.DEPOSIT,
        step_status=StepStatus.OK, at=datetime.now(UTC),
        deposit=Deposit(file=FileRef(name="EDT.xml", sha256=f"{n:064x}", size=1), mode=Mode.AUTO, dry_run=False,
                        review=False, source="webdav", account=None, establishments={"E": "0490856P"},
                        target_uais=["0490856P"]))
    return Delivery(event.to_bytes(), event.routing_key, event.import_id)


def test_two_notifier_processes_never_exceed_the_capacity_and_agree_on_positions() -> None:
    with postgres_database() as url:
        upgrade(url)
        asyncio.run(scenario(url))


async def scenario(url: str) -> None:
    settings = Settings(database_url=url, broker_url="memory://", max_in_flight=2)
    processes = []
    blobs = BlobStore(Path(tempfile.mkdtemp(prefix="edt-blobs-")), Keyring.parse(generate_key()))
    for _ in range(2):  # each its own engine and connection pool, as two processes have
        db = Database(url)
        processes.append((db, NotifierHandlers(db, Outbox(db, store.outbox, make_bus("memory://")), settings, blobs)))
    try:
        events = [deposit_event(n) for n in range(24)]
        await asyncio.gather(*(processes[n % 2][1].on_status(e) for n, e in enumerate(events)))
        async with processes[0][0].read() as conn:
            statuses = [r.status for r in (await conn.execute(sa.select(imports.c.status))).all()]
        assert len(statuses) == 24
        assert statuses.count("received") == 2 and statuses.count("waiting") == 22, statuses
        boards = [QueueBoard(2), QueueBoard(2)]
        views = []
        for (db, _), board in zip(processes, boards, strict=True):
            async with db.read() as conn:
                views.append((await board.read(conn, []))[0])
        assert views[0] == views[1]
        assert len(views[0]) == 22
        # A change made by one process is seen by the other's cached positions (the admission version).
        first = min(views[0], key=lambda i: views[0][i])
        assert await processes[1][1].cancel(first) is not None
        async with processes[0][0].read() as conn:
            after = (await boards[0].read(conn, []))[0]
        assert first not in after and len(after) == 21
    finally:
        for db, _ in processes:
            await db.close()
