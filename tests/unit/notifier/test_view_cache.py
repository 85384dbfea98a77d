"""The history API's kept views (services/notifier/views.py): what a read answers from them is what rendering
the import afresh would answer, and a view is kept only for the revision it was rendered from."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from services.notifier.views import ViewCache, import_view, render

# Text that looks like the two fields a read fills in, where a name (before them) and a message (after) go.
TRAP = '"queue_position":null,"eta_s":null'


def row(revision: int = 1, *, id_: str = "a1", name: str | None = f"Collège {TRAP}", status: str = "waiting",
        message: str | None = f"Fichier {TRAP} reçu", alerts: int = 3) -> Any:
    at = datetime(2026, 12, 4, 8, 0, tzinfo=UTC)
    return SimpleNamespace(
        id=id_, site="4817", establishment="1754", establishment_name=name, establishments={"1754": "0490856P"},
        mode="auto", dry_run=False, status=status, created_at=at, started_at=None, ended_at=None,
        file_name="EDT_To_KOSMOS.xml", sha256="0" * 64, size=1234, source="webdav", account="edt-4817",
        message=message, message_en=None, no_change=False, superseded_by=None,
        counts={"validation": {"courses": 812}}, alerts=[{"code": "unknown_room", "n": n} for n in range(alerts)],
        undo_of=None, abort_requested_at=None, revision=revision)


def step(stage: str, status: str) -> Any:
    return SimpleNamespace(stage=stage, status=status, started_at=datetime(2026, 12, 4, 8, 0, 1, tzinfo=UTC),
                           ended_at=None, message=None, message_en=None)


def stamp(r: Any) -> Any:
    return SimpleNamespace(id=r.id, revision=r.revision, establishment_name=r.establishment_name)


def test_a_kept_view_answers_what_rendering_the_import_afresh_answers() -> None:
    r, steps = row(), [step("deposit", "ok"), step("validation", "running")]
    kept = render(r, steps)
    for position, eta in ((None, None), (0, 30), (17, 545)):
        assert kept.body(position, eta) == import_view(r, steps, position, eta).model_dump_json(by_alias=True).encode()
        assert json.loads(kept.body(position, eta))["queue_position"] == position


def test_a_view_is_kept_for_its_revision_and_its_establishment_name_only() -> None:
    cache = ViewCache(max_bytes=1 << 20)
    r = row(revision=4)
    cache.keep(r.id, render(r, []))
    assert cache.current(stamp(r)) is not None
    assert cache.current(stamp(row(revision=5))) is None  # a write since
    assert cache.current(stamp(row(revision=4, name="Collège Rostand"))) is None  # the establishment renamed
    assert cache.current(stamp(row(revision=4, id_="a2"))) is None


def test_an_older_rendering_never_replaces_a_newer_one() -> None:
    cache = ViewCache(max_bytes=1 << 20)
    cache.keep("a1", render(row(revision=6, status="done"), []))
    cache.keep("a1", render(row(revision=5), []))  # a slower read of the revision before
    kept = cache.current(stamp(row(revision=6)))
    assert kept is not None and json.loads(kept.body(None, None))["status"] == "done"


def test_the_views_kept_stay_within_their_byte_budget_least_recently_read_dropped_first() -> None:
    one = render(row(alerts=50), [])
    cache = ViewCache(max_bytes=3 * one.size)
    for n in range(3):
        cache.keep(f"i{n}", render(row(id_=f"i{n}", alerts=50), []))
    assert cache.current(stamp(row(id_="i0"))) is not None  # read: now the most recent
    cache.keep("i3", render(row(id_="i3", alerts=50), []))
    assert cache.size <= cache.max_bytes
    assert cache.current(stamp(row(id_="i1"))) is None  # the least recently read went
    assert all(cache.current(stamp(row(id_=i))) is not None for i in ("i0", "i2", "i3"))
