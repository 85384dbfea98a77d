"""Session generation benchmark: the scheduler stage beside a raw floor, on SQLite and PostgreSQL, same run.

    python -m tests.bench.sessions [--size L] [--repeat 3]

For the factory's school of that size (school year 2026, every session after the import time):
`stage` = the scheduler's own prepare + apply in one transaction (load the canonical blob, derive courses
and sessions, UTC instants, diff against the store, write sessions + courses + members + change events,
commit) on a freshly migrated database; `floor` = a bare bulk insert of the same session rows into the
same table on a fresh database (stdlib sqlite3 executemany / asyncpg COPY, one transaction, nothing else;
the rows are built before the clock starts). `plan` = the stage's share spent before the transaction (blob
load + planning). Then, on the stage's database: `same` = the same export again (0 changes) and `10%` = a
follow-up with 10 % of its courses changed. Goal: stage ≤ 3 × floor. Times are the best of --repeat (fresh
databases each time); every timed section starts after a `gc.collect()`, on both sides, so none pays for
the garbage of the setup before it.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sqlite3
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from deploy.migrate import upgrade
from services.scheduler import store
from services.scheduler.handlers import SchedulerStage
from services.scheduler.store import SESSION_COLUMNS, session_records
from shared.blobs import BlobStore, Keyring
from shared.bus import MemoryBus
from shared.db import Database
from shared.messages import FileRef, Mode, StageCommand
from shared.outbox import Outbox
from shared.settings import Settings
from shared.timetable import Timetable, dumps
from tests.factory import make_school
from tests.harness import database

SITE, EST = "4817", "1754"
NOW = datetime(2026, 8, 1, tzinfo=UTC)


class Stage:
    def __init__(self, url: str, tmp: Path) -> None:
        self.db = Database(url)
        self.blobs = BlobStore(tmp / "blobs", Keyring.generate())
        self.outbox = Outbox(self.db, store.outbox, MemoryBus())
        self.stage = SchedulerStage(self.db, self.blobs, Settings(database_url=url, blob_dir=tmp / "blobs"))

    async def run(self, tt: Timetable) -> tuple[float, dict[str, int]]:
        sha = self.blobs.put_bytes(dumps(tt))[0]
        cmd = StageCommand(import_id=uuid.uuid4().hex, site=SITE, establishment=EST, mode=Mode.MANUAL,
                           file=FileRef(name="x.xml", sha256=sha, size=1), received_at=NOW, started_at=NOW,
                           artifacts={"timetables": {EST: sha}})
        gc.collect()
        start = time.perf_counter()
        prepared = await self.stage.prepare(cmd)
        self.prepare_s = time.perf_counter() - start
        async with self.outbox.unit_of_work() as uow:
            result = await self.stage.apply(uow, cmd, prepared)
        elapsed = time.perf_counter() - start
        del prepared
        return elapsed, {a["action"]: a["success"] for a in result.counts["actions"]}


async def floor(url: str, records: list[tuple[Any, ...]]) -> float:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1]
        conn = sqlite3.connect(path)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        cols = ", ".join(f'"{c}"' for c in SESSION_COLUMNS)
        sql = f"INSERT INTO {store.sessions.name} ({cols}) VALUES ({', '.join('?' * len(SESSION_COLUMNS))})"
        gc.collect()
        start = time.perf_counter()
        with conn:
            conn.executemany(sql, records)
        elapsed = time.perf_counter() - start
        conn.close()
        return elapsed
    import asyncpg

    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        gc.collect()
        start = time.perf_counter()
        async with conn.transaction():
            await conn.copy_records_to_table(store.sessions.name, schema_name="scheduler",
                                             columns=list(SESSION_COLUMNS), records=records)
        return time.perf_counter() - start
    finally:
        await conn.close()


def floor_records(kind: str, tt: Timetable) -> list[tuple[Any, ...]]:
    """The session rows the stage writes for `tt` (its plan is dropped: only the rows stay in memory)."""
    from services.scheduler.domain import plan_establishment

    plan = plan_establishment(tt, site=SITE, establishment=EST, cutoff=NOW, tz=ZoneInfo("Europe/Paris"))
    return session_records(plan.sessions.values(), SITE, EST, "bench", sqlite=kind == "sqlite")


def measure(kind: str, tt: Timetable, follow: Timetable, repeat: int) -> dict[str, Any]:
    records = floor_records(kind, tt)
    out: dict[str, Any] = {"sessions": len(records), "stage": [], "floor": [], "plan": []}
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as tmp, database(kind, Path(tmp)) as url:
            upgrade(url)
            out["floor"].append(asyncio.run(floor(url, records)))
        with tempfile.TemporaryDirectory() as tmp, database(kind, Path(tmp)) as url:
            upgrade(url)

            async def stage_runs(url: str = url, tmp: str = tmp) -> None:
                stage = Stage(url, Path(tmp))
                t, counts = await stage.run(tt)
                assert counts["sessions_created"] == len(records), counts
                out["stage"].append(t)
                out["plan"].append(stage.prepare_s)
                t, counts = await stage.run(tt)
                assert counts["sessions_created"] == counts["sessions_deleted"] == counts["sessions_updated"] == 0
                out.setdefault("same", []).append(t)
                t, counts = await stage.run(follow)
                out.setdefault("10%", []).append(t)
                out["10%_counts"] = counts
                await stage.db.close()

            asyncio.run(stage_runs())
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="L")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    tt = make_school(args.size, 1, year=2026).timetable  # only the timetables stay in memory
    follow = make_school(args.size, 1, year=2026, changes=10).timetable
    print(f"session generation, school {args.size} (year 2026, every session after the import time); "
          f"best of {args.repeat} (first run in brackets), seconds")
    print(f"{'db':<9} {'sessions':>8} {'floor':>14} {'stage':>14} {'(plan)':>7} {'ratio':>6} {'same again':>11} "
          f"{'10% changed':>12}  10% counts (created/updated/deleted)")
    ok = True
    for kind in ("sqlite", "postgres"):
        m = measure(kind, tt, follow, args.repeat)
        ratio = min(m["stage"]) / min(m["floor"])
        ok &= ratio <= 3
        c = m["10%_counts"]
        print(f"{kind:<9} {m['sessions']:>8} {min(m['floor']):>6.3f} ({m['floor'][0]:.3f}) "
              f"{min(m['stage']):>6.3f} ({m['stage'][0]:.3f}) {min(m['plan']):>7.3f} {ratio:>5.2f}× "
              f"{min(m['same']):>11.3f} "
              f"{min(m['10%']):>12.3f}  {c['sessions_created']}/{c['sessions_updated']}/{c['sessions_deleted']}",
              flush=True)
    print(f"goal stage ≤ 3 × floor: {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
