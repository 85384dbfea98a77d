"""Closure periods set by an establishment (design.md §5): stored, validated, locked during its import,
and no session is generated on them."""

from __future__ import annotations

import time
from datetime import date, timedelta

from tests.harness import sample_xml
from tests.integration.conftest import Stack

SITE = "4817"
ESTS = {"1754": "0490856P", "4817": "0490857R"}
CLOSED = [{"start": "2026-12-01", "end": "2026-12-02", "label": "Journées pédagogiques"}]


def sessions_on(stack: Stack, day: str, est: str = "1754") -> list[dict]:
    return stack.api.ok("GET", f"/sites/{SITE}/establishments/{est}/sessions",
                        params={"from": day, "to": day, "limit": 500})["items"]


def school_days_ahead(stack: Stack, est: str) -> list[str]:
    """A Monday, Tuesday and Wednesday to come on which `est`, imported without closures, has sessions
    (sessions are generated from the import's time on, and the school year has holidays)."""
    start = date.today() + timedelta(days=2)
    first_monday = start + timedelta(days=(7 - start.weekday()) % 7)
    for week in range(60):
        days = [(first_monday + timedelta(days=7 * week + d)).isoformat() for d in range(3)]
        if all(sessions_on(stack, day, est) for day in days):
            return days
    raise AssertionError("no school week ahead in the export")


def test_no_session_on_an_establishment_closure(stack: Stack) -> None:
    stack.api.create_site(SITE, ESTS)
    # the twin establishment, without closures, shows which days ahead are school days
    assert stack.api.wait(stack.api.upload(SITE, "4817", sample_xml("0490857R")))["status"] == "done"
    monday, tuesday, wednesday = school_days_ahead(stack, "4817")
    closed = [{"start": monday, "end": tuesday, "label": "Journées pédagogiques"}]
    put = stack.api.ok("PUT", f"/sites/{SITE}/establishments/1754/closures", json=closed)
    assert put["items"] == closed
    assert stack.api.ok("GET", f"/sites/{SITE}/establishments/1754/closures")["items"] == closed
    assert stack.api.wait(stack.api.upload(SITE, "1754", sample_xml("0490856P")))["status"] == "done"
    assert sessions_on(stack, monday) == [] and sessions_on(stack, tuesday) == []
    assert len(sessions_on(stack, wednesday)) > 0, "the day after the closure is a school day"


def test_closures_are_validated_and_isolated(stack: Stack) -> None:
    stack.api.create_site(SITE, ESTS)
    bad = stack.api.call("PUT", f"/sites/{SITE}/establishments/1754/closures",
                         json=[{"start": "2026-12-02", "end": "2026-12-01", "label": "x"}])
    assert bad.status_code == 422 and bad.headers["content-type"] == "application/problem+json"
    stack.api.create_site("B", {"b": "0490858S"})
    other = stack.api.site_token("B")
    assert stack.api.call("GET", f"/sites/{SITE}/establishments/1754/closures", other).status_code == 404
    assert stack.api.call("PUT", f"/sites/{SITE}/establishments/1754/closures", other, json=[]).status_code == 404


def test_closures_locked_only_for_the_establishment_being_imported(stack: Stack) -> None:
    stack.api.create_site(SITE, ESTS)
    stack.pause("edt.thresholds")
    running = stack.api.upload(SITE, "1754", sample_xml("0490856P"))
    stack.api.wait(running, {"checking_thresholds", "validating", "received"})
    deadline = time.monotonic() + 20
    while True:  # locked from the import's first stage event on
        r = stack.api.call("PUT", f"/sites/{SITE}/establishments/1754/closures", json=CLOSED)
        if r.status_code == 423 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert r.status_code == 423 and r.json()["code"] == "import_in_progress"
    assert stack.api.call("PUT", f"/sites/{SITE}/establishments/4817/closures", json=CLOSED).status_code == 200
    stack.resume("edt.thresholds")
    assert stack.api.wait(running)["status"] == "done"
    deadline = time.monotonic() + 20
    while stack.api.call("PUT", f"/sites/{SITE}/establishments/1754/closures", json=CLOSED).status_code != 200:
        assert time.monotonic() < deadline, "still locked after the import ended"
        time.sleep(0.1)
