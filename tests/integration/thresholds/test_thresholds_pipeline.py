"""Threshold control through the real pipeline (REST upload → validator → thresholds → …), on SQLite and
PostgreSQL: blocking, notification, non-blocking alerts, the automatic-import precondition, dry run,
settings with audit, 423 while an import runs, e-mail through a real SMTP server."""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from services.thresholds import domain
from services.thresholds.store import lifecycle, models
from shared.bus import Delivery
from shared.messages import NOTIFICATIONS_EXCHANGE
from tests.factory import make_school
from tests.harness import database, free_port
from tests.integration.conftest import Stack, start_stack

SITE, EST, UAI = "4817", "1754", "0490856P"
SEED = 11


def school(changes: float = 0, size: str = "S") -> bytes:
    return make_school(size, SEED, uai=UAI, changes=changes, year=2026).to_xml_bytes()


def run(stack: Stack, coro: Any) -> Any:
    assert stack.server.loop is not None
    return asyncio.run_coroutine_threadsafe(coro, stack.server.loop).result(30)


def listen_notifications(stack: Stack, pattern: str = "threshold.#") -> list[dict[str, Any]]:
    """Bind a queue of the in-process bus to edt.notifications, as the ENT messaging would."""
    seen: list[dict[str, Any]] = []

    async def handler(d: Delivery) -> None:
        seen.append({"routing_key": d.routing_key, **json.loads(d.body)})

    run(stack, stack.runtime.bus.consume(f"test.notifications.{pattern}", handler,
                                         bindings=((NOTIFICATIONS_EXCHANGE, pattern),)))
    return seen


def until(predicate: Any, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition never met"
        time.sleep(0.05)


def thresholds_step(item: dict[str, Any]) -> dict[str, Any]:
    return next(s for s in item["steps"] if s["stage"] == "thresholds")


def test_60_percent_follow_up_is_blocked_and_notified_10_percent_passes(stack: Stack) -> None:
    api = stack.api
    api.create_site(SITE, {EST: UAI})
    notes = listen_notifications(stack)
    per_account = listen_notifications(stack, "account.#")
    first = api.first_import(SITE, EST, school())
    assert thresholds_step(first)["status"] in ("ok", "warning")  # a manual import never blocks
    notified = api.create_account(SITE, "Thibault", "Bourgeois")["login"]
    quiet = api.create_account(SITE, "Franck", "Gillet")["login"]
    api.ok("PATCH", f"/sites/{SITE}/accounts/{quiet}", json={"notify": False})
    assert set(first["counts"]["thresholds"]["controls"]) == {c.name for c in domain.CONTROLS}

    blocked = api.wait(api.upload(SITE, EST, school(60), mode="auto"))
    assert blocked["status"] == "blocked" and blocked["label"] == "Interrompu"
    step = thresholds_step(blocked)
    assert step["status"] == "error" and "services d'enseignement modifiés" in step["message"]
    assert [s["status"] for s in blocked["steps"][3:]] == ["pending", "pending"], "nothing downstream ran"
    named = {a["control"]: a for a in blocked["alerts"] if a["stage"] == "thresholds"}
    assert set(named) == {"courses_modified"}
    assert named["courses_modified"]["computed"] == pytest.approx(60, abs=1)
    assert named["courses_modified"]["value"] == 30 and named["courses_modified"]["blocking"] is True
    assert "import manuel" in named["courses_modified"]["message"]
    table = blocked["counts"]["thresholds"]["controls"]
    assert table["courses_modified"]["status"] == "exceeded" and table["courses_created"]["status"] == "ok"
    assert table["teachers_unreconciled"]["status"] == "not_computed"

    until(lambda: len(notes) == 1)
    note = notes[0]
    assert note["routing_key"] == f"threshold.blocked.{SITE}" and note["import_id"] == blocked["id"]
    assert note["site"] == SITE and note["establishment"] == EST
    assert [c["control"] for c in note["controls"]] == ["courses_modified"]
    assert note["controls"][0]["computed"] == named["courses_modified"]["computed"]
    # Every deposit account with notify on gets its own message for the ENT messaging; the others none.
    until(lambda: len(per_account) == 1)
    assert per_account[0]["routing_key"] == f"account.{SITE}.{notified}"
    assert per_account[0]["recipient"]["login"] == notified and per_account[0]["import_id"] == blocked["id"]
    assert per_account[0]["controls"] == note["controls"]

    # The baseline is still the first import: a 10 % follow-up passes.
    passed = api.wait(api.upload(SITE, EST, school(10), mode="auto"))
    assert passed["status"] == "done", passed["message"]
    assert thresholds_step(passed)["status"] == "ok"
    assert passed["counts"]["thresholds"]["controls"]["courses_modified"]["computed"] == pytest.approx(10, abs=1)
    assert len(notes) == 1 and len(per_account) == 1


def test_non_blocking_excess_passes_with_alerts_in_history_and_bilan(stack: Stack) -> None:
    api = stack.api
    api.create_site(SITE, {EST: UAI})
    api.first_import(SITE, EST, school(size="XS"))
    api.ok("PUT", f"/sites/{SITE}/thresholds", json={"controls": {"courses_modified": {"blocking": False}}})
    done = api.wait(api.upload(SITE, EST, make_school("XS", SEED, uai=UAI, changes=60, year=2026).to_xml_bytes(),
                               mode="auto"))
    assert done["status"] == "done"
    assert thresholds_step(done)["status"] == "warning"
    alerts = [a for a in done["alerts"] if a["stage"] == "thresholds"]
    assert [(a["control"], a["blocking"], a["severity"]) for a in alerts] == [("courses_modified", False, "warning")]
    report = api.ok("GET", f"/imports/{done['id']}/report")
    assert any(a.get("control") == "courses_modified" for a in report["alerts"])


def test_automatic_import_before_any_manual_one_is_refused(stack: Stack) -> None:
    api = stack.api
    api.create_site(SITE, {EST: UAI})
    refused = api.wait(api.upload(SITE, EST, school(size="XS"), mode="auto"))
    assert refused["status"] == "rejected" and refused["message"] == domain.NEVER_MANUAL[0]
    assert thresholds_step(refused)["status"] == "error"


def test_school_year_change_refuses_automatic_imports_until_a_manual_one(stack: Stack) -> None:
    api = stack.api
    api.create_site(SITE, {EST: UAI})
    api.first_import(SITE, EST, school(size="XS"))
    until(lambda: bool(run(stack, _lifecycle_rows(stack))))

    async def last_year() -> None:  # the manual import was integrated last school year
        async with stack.runtime.db.transaction() as conn:
            await conn.execute(lifecycle.update().values(at=sa.func.now() - sa.text("INTERVAL '400 days'"))
                               if stack.runtime.db.is_postgres else
                               lifecycle.update().values(at=sa.text("datetime(at, '-400 days')")))

    run(stack, last_year())
    data = make_school("XS", SEED, uai=UAI, changes=10, year=2026).to_xml_bytes()
    refused = api.wait(api.upload(SITE, EST, data, mode="auto"))
    assert refused["status"] == "rejected" and refused["message"] == domain.NEW_YEAR[0]
    api.first_import(SITE, EST, school(size="XS") + b"<!-- new year -->")
    assert api.wait(api.upload(SITE, EST, data, mode="auto"))["status"] == "done"


async def _lifecycle_rows(stack: Stack) -> list[Any]:
    async with stack.runtime.db.read() as conn:
        return list((await conn.execute(sa.select(lifecycle))).all())


def test_dry_run_returns_every_control_and_writes_nothing(stack: Stack) -> None:
    api = stack.api
    api.create_site(SITE, {EST: UAI})
    notes = listen_notifications(stack)
    api.first_import(SITE, EST, school(size="XS"))
    data = make_school("XS", SEED, uai=UAI, changes=60, year=2026).to_xml_bytes()
    dry = api.wait(api.upload(SITE, EST, data, mode="auto", dry_run=True))
    assert dry["status"] == "previewed"
    assert set(dry["counts"]["thresholds"]["controls"]) == {c.name for c in domain.CONTROLS}
    assert dry["counts"]["thresholds"]["controls"]["courses_modified"]["exceeded"] is True
    assert [s["status"] for s in dry["steps"][3:]] == ["pending", "pending"]

    async def recorded() -> list[str]:
        async with stack.runtime.db.read() as conn:
            return list((await conn.execute(sa.select(models.c.import_id))).scalars())

    assert dry["id"] not in run(stack, recorded())
    stack.drain()  # every message sent has been handled: a notification would be there
    assert notes == []
    # The dry run is no baseline: the same file deposited for real is still compared with the first import.
    assert api.wait(api.upload(SITE, EST, data, mode="auto"))["status"] == "blocked"


def test_settings_validation_audit_and_site_isolation(stack: Stack) -> None:
    api = stack.api
    api.create_site(SITE, {EST: UAI})
    api.create_site("9001", {"9001": "0490858S"})
    got = api.ok("GET", f"/sites/{SITE}/thresholds")
    assert got["controls"]["courses_modified"]["value"] == 30 and got["controls"]["courses_modified"]["blocking"]
    assert list(got["controls"]) == [c.name for c in domain.CONTROLS] and got["locked"] is False

    token = api.site_token(SITE)
    put = api.ok("PUT", f"/sites/{SITE}/thresholds", token, headers={"X-EDT-User": "j.dupont"},
                 json={"controls": {"courses_modified": {"value": 45}, "closure_coherence": {"blocking": False}},
                       "notification_emails": ["vie.scolaire@example.fr"]})
    assert put["controls"]["courses_modified"]["value"] == 45
    assert [w["code"] for w in put["warnings"]] == ["closure_coherence_not_blocking"]
    assert "archivage légal" in put["warnings"][0]["message"]
    assert api.ok("GET", f"/sites/{SITE}/thresholds")["notification_emails"] == ["vie.scolaire@example.fr"]

    for body in ({"controls": {"courses_modified": {"value": 101}}}, {"controls": {"nope": {"value": 1}}},
                 {"controls": {"closure_coherence": {"value": 3}}}, {"notification_emails": ["not-an-address"]},
                 {"controls": {"courses_modified": {"value": -1}}}):
        r = api.call("PUT", f"/sites/{SITE}/thresholds", json=body)
        assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json", body
        assert r.json()["errors"]

    audit = api.ok("GET", f"/sites/{SITE}/thresholds/audit")["items"]
    changed = {(a["control"], a["field"]): (a["old"], a["new"]) for a in audit}
    assert changed == {("courses_modified", "value"): (30, 45), ("closure_coherence", "blocking"): (True, False),
                       ("notification_emails", "addresses"): ([], ["vie.scolaire@example.fr"])}
    assert all(a["actor"].startswith("site-token:") and a["actor"].endswith(":j.dupont") and a["at"] for a in audit)
    page = api.ok("GET", f"/sites/{SITE}/thresholds/audit", params={"limit": 2})
    assert len(page["items"]) == 2 and page["next_cursor"]

    other = api.site_token("9001")
    assert api.call("GET", f"/sites/{SITE}/thresholds", other).status_code == 404
    assert api.call("PUT", f"/sites/{SITE}/thresholds", other, json={}).status_code == 404
    assert api.call("GET", f"/sites/{SITE}/thresholds/audit", other).status_code == 404
    assert api.ok("GET", "/sites/9001/thresholds")["controls"]["courses_modified"]["value"] == 30, "per site"


def test_settings_locked_while_an_import_of_the_site_runs(sqlite_stack: Stack) -> None:
    stack = sqlite_stack
    api = stack.api
    api.create_site(SITE, {EST: UAI})
    stack.pause("edt.thresholds")
    running = api.upload(SITE, EST, school(size="XS"))
    until(lambda: api.call("GET", f"/sites/{SITE}/thresholds").json()["locked"])
    r = api.call("PUT", f"/sites/{SITE}/thresholds", json={"controls": {"courses_modified": {"value": 10}}})
    assert r.status_code == 423 and r.json()["code"] == "import_in_progress"
    stack.resume("edt.thresholds")
    assert api.wait(running)["status"] == "done"
    until(lambda: not api.call("GET", f"/sites/{SITE}/thresholds").json()["locked"])
    api.ok("PUT", f"/sites/{SITE}/thresholds", json={"controls": {"courses_modified": {"value": 10}}})


# --- e-mail ----------------------------------------------------------------------------------------


@pytest.fixture
def smtp_server() -> Iterator[tuple[int, list[Any]]]:
    from aiosmtpd.controller import Controller

    received: list[Any] = []

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd API
            received.append(envelope)
            return "250 OK"

    port = free_port()
    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port, received
    finally:
        controller.stop()


def test_blocked_import_is_mailed_through_smtp(tmp_path: Path, smtp_server: tuple[int, list[Any]]) -> None:
    port, received = smtp_server
    with database("sqlite", tmp_path) as url:
        for stack in start_stack(tmp_path, url, EDT_SMTP_URL=f"smtp://127.0.0.1:{port}",
                                 EDT_SMTP_FROM="edt@ent.example"):
            api = stack.api
            api.create_site(SITE, {EST: UAI})
            api.ok("PUT", f"/sites/{SITE}/thresholds",
                   json={"notification_emails": ["chef@college.example", "cpe@college.example"]})
            api.first_import(SITE, EST, school(size="XS"))
            data = make_school("XS", SEED, uai=UAI, changes=60, year=2026).to_xml_bytes()
            blocked = api.wait(api.upload(SITE, EST, data, mode="auto"))
            assert blocked["status"] == "blocked"
            until(lambda: len(received) == 1)
            mail = received[0]
            assert mail.mail_from == "edt@ent.example"
            assert sorted(mail.rcpt_tos) == ["chef@college.example", "cpe@college.example"]
            message = email.message_from_bytes(mail.content, policy=email.policy.default)
            assert "bloqué" in message["Subject"] and SITE in message["Subject"]
            text = message.get_body().get_content()  # type: ignore[union-attr]
            assert blocked["id"] in text and "% de services d'enseignement modifiés" in text
            assert "seuil 30 %" in text and "import manuel" in text
