"""The scheduler stage's handlers on the real databases (SQLite and PostgreSQL), with an explicit import
time: diff against what is stored, earlier sessions untouched, idempotent after a crash, follow-up
exports change exactly what changed."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from deploy.migrate import upgrade
from services.scheduler import store
from services.scheduler.handlers import SchedulerStage
from shared.blobs import BlobStore, Keyring
from shared.bus import MemoryBus
from shared.db import Database, as_utc
from shared.messages import FileRef, Mode, StageCommand
from shared.outbox import Outbox
from shared.settings import Settings
from shared.timetable import Timetable, dumps
from tests.factory import make_school
from tests.golden.scheduler import golden_timetable
from tests.harness import database

PARIS = ZoneInfo("Europe/Paris")
SITE, EST = "4817", "1754"
BEFORE_YEAR = datetime(2026, 8, 1, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with database(str(request.param), tmp_path) as url:
        upgrade(url)
        yield url


class Stage:
    def __init__(self, url: str, tmp: Path) -> None:
        settings = Settings(database_url=url, blob_dir=tmp / "blobs", data_dir=tmp)
        self.db = Database(url)
        self.blobs = BlobStore(tmp / "blobs", Keyring.generate())
        self.outbox = Outbox(self.db, store.outbox, MemoryBus())
        self.stage = SchedulerStage(self.db, self.blobs, settings)

    def command(self, tt: Timetable, now: datetime, **kw: Any) -> StageCommand:
        sha = self.blobs.put_bytes(dumps(tt))[0]
        return StageCommand(import_id=uuid.uuid4().hex, site=SITE, establishment=EST, mode=Mode.MANUAL,
                            file=FileRef(name="f.xml", sha256=sha, size=1), received_at=now, started_at=now,
                            artifacts={"timetables": {EST: sha}, **kw.pop("artifacts", {})}, **kw)

    async def run(self, tt: Timetable, now: datetime, *, crash: bool = False, **kw: Any) -> dict[str, Any]:
        cmd = self.command(tt, now, **kw)
        prepared = await self.stage.prepare(cmd)
        try:
            async with self.outbox.unit_of_work() as uow:
                result = await self.stage.apply(uow, cmd, prepared)
                if crash:
                    raise RuntimeError("process died mid-way")
        except RuntimeError:
            return {}
        return {a["action"]: a["success"] for a in result.counts["actions"]} | {"_result": result}

    async def sessions(self) -> dict[str, Any]:
        async with self.db.read() as conn:
            rows = (await conn.execute(sa.select(store.sessions))).all()
        return {r.key: r for r in rows}

    async def outbox_bodies(self) -> list[bytes]:
        async with self.db.read() as conn:
            return [r.body for r in await conn.execute(sa.select(store.outbox.c.body).where(
                store.outbox.c.exchange == "edt.changes"))]


@pytest.fixture
async def stage(db_url: str, tmp_path: Path) -> Any:
    s = Stage(db_url, tmp_path)
    yield s
    await s.db.close()


async def test_first_import_stores_the_golden_sessions_and_a_second_changes_nothing(stage: Stage) -> None:
    first = await stage.run(golden_timetable(), BEFORE_YEAR)
    assert (first["sessions_created"], first["sessions_updated"], first["sessions_deleted"]) == (12, 0, 0)
    assert first["courses_created"] == 6
    rows = await stage.sessions()
    fr = rows["S1|class:C6A|2026-09-01|0"]
    assert as_utc(fr.start) == datetime(2026, 9, 1, 6, 0, tzinfo=UTC) and fr.rooms == ["R1"]
    assert fr.teachers == ["T1"] and fr.classes == ["C6A"] and fr.groups == []
    again = await stage.run(golden_timetable(), BEFORE_YEAR)
    assert (again["sessions_created"], again["sessions_updated"], again["sessions_deleted"]) == (0, 0, 0)
    assert again["courses_created"] == again["courses_updated"] == again["courses_deleted"] == 0
    assert {k: r.import_id for k, r in (await stage.sessions()).items()} == {k: r.import_id for k, r in rows.items()}


async def test_reimport_mid_week_leaves_earlier_sessions_untouched(stage: Stage) -> None:
    await stage.run(golden_timetable(), BEFORE_YEAR)
    tt = golden_timetable()
    no_spanish = replace(tt, slots=tuple(s for i, s in enumerate(tt.slots) if i != 2))
    got = await stage.run(no_spanish, datetime(2026, 9, 5, 9, 0, tzinfo=PARIS))
    assert (got["sessions_created"], got["sessions_updated"], got["sessions_deleted"]) == (0, 0, 1)
    keys = set(await stage.sessions())
    assert "S2|group:G1|2026-09-03|1" in keys and "S2|group:G1|2026-09-10|1" not in keys
    assert got["courses_deleted"] == 1


async def test_a_crash_mid_apply_leaves_nothing_and_the_redelivery_does_it_all(stage: Stage) -> None:
    assert await stage.run(golden_timetable(), BEFORE_YEAR, crash=True) == {}
    assert await stage.sessions() == {} and await stage.outbox_bodies() == []
    got = await stage.run(golden_timetable(), BEFORE_YEAR)
    assert got["sessions_created"] == 12 and len(await stage.sessions()) == 12
    assert len(await stage.outbox_bodies()) == 1


async def test_dry_run_reports_and_writes_nothing(stage: Stage) -> None:
    got = await stage.run(golden_timetable(), BEFORE_YEAR, dry_run=True)
    assert got["sessions_created"] == 12 and got["_result"].outcome == "previewed"
    assert await stage.sessions() == {} and await stage.outbox_bodies() == []


async def test_establishment_closures_from_the_thresholds_stage_remove_sessions(stage: Stage) -> None:
    closures = {EST: [{"start": "2026-11-02", "end": "2026-11-08", "label": "Toussaint"}]}
    await stage.run(golden_timetable(), BEFORE_YEAR, artifacts={"closures": closures})
    assert "S5|class:C6A|2026-11-02|3" not in await stage.sessions()
    assert len(await stage.sessions()) == 11


async def test_follow_up_with_10_percent_changes_changes_exactly_those_courses(stage: Stage) -> None:
    now = datetime(2026, 9, 1, tzinfo=UTC)
    base = make_school("S", 5, year=2026)
    first = await stage.run(base.timetable, now)
    before = {k: (r.id, r.fp) for k, r in (await stage.sessions()).items()}
    assert first["sessions_created"] == len(before) > 5000
    follow = make_school("S", 5, year=2026, changes=10)
    got = await stage.run(follow.timetable, now)
    after = await stage.sessions()
    touched = {r.course for k, r in after.items() if k not in before or before[k][1] != r.fp}
    touched |= {k.rsplit("|", 2)[0] for k in before if k not in after}
    assert touched == set(follow.changed_courses)
    assert got["sessions_created"] == sum(1 for k in after if k not in before)
    assert got["sessions_deleted"] == sum(1 for k in before if k not in after)
    assert got["sessions_updated"] == sum(1 for k, r in after.items() if k in before and before[k][1] != r.fp)
    assert got["sessions_updated"] > 0 and got["sessions_created"] == got["sessions_deleted"] > 0
    assert got["courses_updated"] >= len(follow.changed_courses) // 2  # the teacher changes


def test_statistics_are_refreshed_only_when_a_write_is_a_good_part_of_the_table() -> None:
    assert not store.statistics_stale(store.ANALYZE_AFTER_ROWS - 1, None)  # a few rows: never worth it
    assert store.statistics_stale(store.ANALYZE_AFTER_ROWS, None)  # never analysed: the first import's
    assert store.statistics_stale(5_000, 40_000)
    assert not store.statistics_stale(5_000, 9_000_000)  # one school of an académie's hundreds


async def test_a_first_import_leaves_the_planner_statistics_of_its_sessions(stage: Stage) -> None:
    async with stage.db.read() as conn:
        assert await store.rows_counted(stage.db, conn, store.sessions) is None
    await stage.run(make_school("S", 1).timetable, BEFORE_YEAR)
    async with stage.db.read() as conn:
        stored = await conn.scalar(sa.select(sa.func.count()).select_from(store.sessions))
        counted = await store.rows_counted(stage.db, conn, store.sessions)
    assert stored >= store.ANALYZE_AFTER_ROWS and counted == pytest.approx(stored, rel=0.05)
