"""The personal-data migrations on a database written before them (SQLite and PostgreSQL): retention learns
when each past import ended and which snapshots each establishment had (0015b), and the history forgets
the homonyms' names its warnings quoted (0015c)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command

from deploy.migrate import alembic_config, upgrade
from services.notifier import store as notifier
from services.reconciler import store as reconciler
from services.validator import store as validator
from shared.db import Database
from tests.harness import database
from tests.integration.conftest import BOTH_BACKENDS

ENDED = datetime(2026, 9, 10, 8, 0, tzinfo=UTC)
OLD_FR = "3 homonyme(s) parmi les élèves (ex. ALUN Alain, MARTIN Léa) : le rapprochement par nom sera ambigu."
OLD_EN = "3 homonym(s) among élèves (e.g. ALUN Alain, MARTIN Léa): matching by name will be ambiguous."
HOMONYMS = {"code": "homonyms", "severity": "warning", "effect": "none", "message": OLD_FR, "message_en": OLD_EN,
            "detail": {"kind": "élèves", "count": 3, "samples": ["ALUN Alain", "MARTIN Léa"]}}


def run(url: str, work: Callable[[Any], Coroutine[Any, Any, Any]]) -> Any:
    async def go() -> Any:
        db = Database(url)
        try:
            async with db.transaction() as conn:
                return await work(conn)
        finally:
            await db.close()

    return asyncio.run(go())


@BOTH_BACKENDS
def test_past_imports_get_their_end_their_snapshots_and_lose_the_names(db_kind: str, tmp_path: Path) -> None:
    with database(db_kind, tmp_path, migrated=False) as url:
        command.upgrade(alembic_config(url), "0008")

        def sql(schema: str, text: str) -> Any:
            return sa.text(text.replace("@", "" if db_kind == "sqlite" else f"{schema}."))

        async def before(conn: Any) -> None:
            await conn.execute(sql("notifier", (
                "INSERT INTO @imports (id, site, establishment, scope, establishments, mode, dry_run, status, source, "
                "file_name, sha256, size, created_at, ended_at, no_change, message, message_en, counts, alerts, "
                "artifacts) VALUES ('i1', '4817', '1754', '4817/1754', '{}', 'manual', false, 'done', 'rest', "
                "'x.xml', :sha, 10, :created, :ended, false, :fr, :en, :counts, :alerts, '{}')")),
                {"sha": "a" * 64, "created": ENDED - timedelta(minutes=1), "ended": ENDED, "fr": OLD_FR, "en": OLD_EN,
                 "counts": json.dumps({"validation": {"warnings": 1}}),
                 "alerts": json.dumps([{**HOMONYMS, "stage": "validation"}])})
            await conn.execute(notifier.steps.insert().values(import_id="i1", stage="validation", status="warning",
                                                              message="1 avertissement(s) : " + OLD_FR,
                                                              message_en="1 warning(s): " + OLD_EN))
            await conn.execute(notifier.event_log.insert().values(import_id="i1", site="4817", at=ENDED,
                                                                  payload={"status": "done", "message": OLD_FR}))
            await conn.execute(sql("dropzone", (
                "INSERT INTO @deposits (import_id, site, name, sha256, size, source, mode, dry_run, created_at) "
                "VALUES ('i1', '4817', 'x.xml', :sha, 10, 'rest', 'manual', false, :created)")),
                {"sha": "a" * 64, "created": ENDED})
            await conn.execute(sql("validator", (
                "INSERT INTO @validation_reports (import_id, site, ok, problems, meta, counts, timetable_sha256, "
                "timetables, created_at) VALUES ('i1', '4817', true, :problems, '{}', '{}', :sha, :parts, :created)")),
                {"problems": json.dumps([HOMONYMS]), "sha": "b" * 64, "parts": json.dumps({"1754": "b" * 64}),
                 "created": ENDED})
            await conn.execute(reconciler.snapshots.insert().values(site="4817", establishment="1754",
                                                                    sha256="c" * 64, counts={}, updated_at=ENDED))
            await conn.execute(sql("reconciler", (
                "INSERT INTO @reconciliation_results (import_id, establishment, site, snapshot_sha256, counts, "
                "unmatched, created_at) VALUES ('i0', '1754', '4817', :old, '{}', '{}', :at)")),
                {"old": "d" * 64, "at": ENDED - timedelta(days=3)})

        run(url, before)
        upgrade(url)

        async def after(conn: Any) -> dict[str, Any]:
            def one(query: Any) -> Any:
                return conn.execute(query)

            return {
                "deposit": (await one(sql("dropzone", "SELECT ended_at FROM @deposits"))).scalar(),
                "report": (await one(sa.select(validator.reports))).one(),
                "import": (await one(sa.select(notifier.imports))).one(),
                "step": (await one(sa.select(notifier.steps))).one(),
                "event": (await one(sa.select(notifier.event_log))).one(),
                "history": sorted((await one(sa.select(reconciler.snapshot_history))).all(), key=lambda r: r.sha256),
            }

        found = run(url, after)
    assert found["deposit"] is not None
    report = found["report"]
    assert (report.status, report.ended_at is not None) == ("done", True)
    assert [(h.sha256[0], h.superseded_at is None) for h in found["history"]] == [("c", True), ("d", False)]
    texts = [report.problems[0]["message"], report.problems[0]["message_en"], found["import"].message,
             found["import"].message_en, found["import"].alerts[0]["message"], found["step"].message,
             found["step"].message_en, found["event"].payload["message"]]
    assert all("ALUN" not in t and "MARTIN" not in t for t in texts), texts
    assert "3 homonyme(s) parmi les élèves : le rapprochement par nom sera ambigu" in found["step"].message
    assert report.problems[0]["detail"] == {"kind": "élèves", "count": 3, "samples": []}
    assert found["import"].counts == {"validation": {"warnings": 1}}
