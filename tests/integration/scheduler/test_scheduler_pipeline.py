"""Session generation through the real path (SQLite and PostgreSQL): REST upload → every stage → `done`
→ sessions, courses and iCal feeds read back through the REST API; re-deposits diff; change events."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from icalendar import Calendar

from services.scheduler.domain import plan_establishment, session_view
from tests.factory import make_school, to_xml
from tests.golden.scheduler import UAI, golden_timetable
from tests.integration.conftest import Stack

SITE, EST = "4817", "1754"
BASE = f"/sites/{SITE}/establishments/{EST}"
GOLDEN_YEAR = 2027  # a school year wholly after "now": every session of the file is generated
FR, ESP, SVT_B = "S1|class:C6A", "S2|group:G1", "S3|class:C6B"


def import_file(stack: Stack, data: bytes, **kw: object) -> dict:
    done = stack.api.wait(stack.api.upload(SITE, EST, data, **kw), timeout=60)  # type: ignore[arg-type]
    assert done["status"] in ("done", "previewed"), done
    return done


def actions(stack: Stack, import_id: str) -> dict[str, tuple[int, int]]:
    report = stack.api.ok("GET", f"/imports/{import_id}/report")
    return {a["action"]: (a["success"], a["error"]) for a in report["actions"]}


def all_sessions(stack: Stack, token: str | None = None, **params: object) -> list[dict]:
    out, cursor = [], None
    while True:
        page = stack.api.ok("GET", f"{BASE}/sessions", token, params={**params, "limit": 500,
                                                                        **({"cursor": cursor} if cursor else {})})
        out += page["items"]
        cursor = page["next_cursor"]
        if not cursor:
            return out


def test_golden_export_through_the_pipeline_gives_exactly_its_sessions(stack: Stack) -> None:
    stack.api.create_site(SITE, {EST: UAI})
    tt = golden_timetable(GOLDEN_YEAR)
    done = import_file(stack, to_xml(tt))
    steps = {s["stage"]: s["status"] for s in done["steps"]}
    assert steps["sessions"] == "ok"
    assert actions(stack, done["id"])["sessions_created"] == (12, 0)
    assert done["counts"]["sessions"]["sessions"] == 12
    want = plan_establishment(tt, site=SITE, establishment=EST, cutoff=datetime.now(UTC),
                              tz=ZoneInfo("Europe/Paris"))
    expected = sorted((session_view(s) for s in want.sessions.values()), key=lambda v: (v["start"], v["id"]))
    got = all_sessions(stack)
    assert [{k: v for k, v in s.items() if k != "names"} for s in got] == expected
    courses_planned = want.courses
    for s in got:  # display names, in the same order as the ids
        def person(ident: str) -> str:
            return f"{tt.teachers[ident].last_name} {tt.teachers[ident].first_name}"
        assert s["names"] == {
            "course": courses_planned[s["course"]].label,
            "subject": tt.subjects[courses_planned[s["course"]].subject].display,
            "rooms": [tt.rooms[r].name for r in s["rooms"]], "teachers": [person(t) for t in s["teachers"]],
            "classes": [tt.classes[c].name for c in s["classes"]], "groups": [tt.groups[g].name for g in s["groups"]]}
    fr = next(s for s in got if s["course"] == FR)
    assert fr["start"] == "2027-08-31T06:00:00Z" and fr["end"] == "2027-08-31T08:00:00Z"  # two places
    # (DST ends on 31 October 2027: both in summer time; the DST week is a unit golden test on 2026)
    assert {s["start"] for s in got if s["course"] == SVT_B} == {"2027-10-25T06:00:00Z", "2027-10-18T06:00:00Z"}

    # filters
    assert {s["course"] for s in all_sessions(stack, course=ESP)} == {ESP}
    assert {s["course"] for s in all_sessions(stack, **{"class": "C6B"})} == {ESP, SVT_B, "S4|class:C6B"}
    assert {s["course"] for s in all_sessions(stack, group="G1")} == {ESP}
    substitute = all_sessions(stack, person="teacher:T9")
    assert [(s["course"], s["teachers"]) for s in substitute] == [(FR, ["T9"])]  # only the week they teach
    assert len(all_sessions(stack, person="T1")) == 3  # bare id: any kind of person
    e3 = all_sessions(stack, person="student:E3")  # 6A until 30 September, 6B afterwards
    assert all(s["start"] < "2027-10-01" or "C6B" in s["classes"] for s in e3)
    assert any("C6A" in s["classes"] and s["course"] != ESP for s in e3)
    assert any(s["course"] == SVT_B for s in e3)
    assert [s["start"][:10] for s in all_sessions(stack, **{"from": "2027-09-01", "to": "2027-09-09"})] == [
        "2027-09-02", "2027-09-09"]
    page = stack.api.ok("GET", f"{BASE}/sessions", params={"limit": 5})
    assert len(page["items"]) == 5 and page["next_cursor"]
    assert stack.api.call("GET", f"{BASE}/sessions", params={"from": "soon"}).status_code == 400
    assert stack.api.call("GET", f"{BASE}/sessions", params={"person": "parent:1"}).status_code == 400
    # filters take idents: a name says which ident it is, an unknown value lists known ones (422)
    r = stack.api.call("GET", f"{BASE}/sessions", params={"class": "6a"})
    assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")
    problem = r.json()
    assert problem["code"] == "unknown_filter_value" and problem["parameter"] == "class"
    assert problem["matches"] == [{"id": "C6A", "name": "6A"}]
    assert "takes an ident" in problem["detail"] and "'C6A'" in problem["detail"]
    assert problem["errors"][0]["loc"] == ["query", "class"]
    unknown = stack.api.call("GET", f"{BASE}/sessions", params={"group": "NOPE"}).json()
    assert unknown["matches"] == [] and {"id": "G1", "name": tt.groups["G1"].name} in unknown["known"]
    teacher = stack.api.call("GET", f"{BASE}/sessions", params={"person": "martin anne"}).json()
    assert {"id": "teacher:T1", "name": "MARTIN Anne"} in teacher["matches"]
    course = stack.api.call("GET", f"{BASE}/sessions", params={"course": "Francais - 6A"}).json()
    assert course["matches"] == [{"id": FR, "name": "FRANCAIS - 6A"}] and course["parameter"] == "course"
    assert stack.api.call("GET", f"{BASE}/sessions", params={"person": "student:T1"}).status_code == 422

    courses = stack.api.ok("GET", f"{BASE}/courses")["items"]
    assert {c["key"]: c["label"] for c in courses}[ESP] == "ESPAGNOL - 6AB ESP"
    assert len(courses) == 6 and all(c["active"] for c in courses)

    # iCal feeds, validated by the icalendar package
    for kind, ident, count in (("class", "C6A", 9), ("group", "G1", 2), ("teacher", "T2", 6), ("student", "E2", 5)):
        r = stack.api.call("GET", f"{BASE}/calendar/{kind}/{ident}.ics")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/calendar")
        cal = Calendar.from_ical(r.content)
        events = cal.walk("VEVENT")
        assert len(events) == count, (kind, ident)
        assert all(e.get("uid") and e.get("dtstamp") and e.get("dtstart") for e in events)
    cal = Calendar.from_ical(stack.api.call("GET", f"{BASE}/calendar/teacher/T9.ics").content)
    (event,) = cal.walk("VEVENT")
    assert str(event["summary"]) == "FRANCAIS - 6A" and str(event["location"]) == "Labo 2"
    assert event.decoded("dtstart") == datetime(2027, 9, 14, 6, 0, tzinfo=UTC)
    assert str(cal["x-wr-calname"]) == "REMPLA Çanté"
    assert stack.api.call("GET", f"{BASE}/calendar/class/NOPE.ics").status_code == 404
    assert stack.api.call("GET", f"{BASE}/calendar/room/R1.ics").status_code == 404


def test_site_tokens_see_only_their_sessions(stack: Stack) -> None:
    stack.api.create_site(SITE, {EST: UAI})
    stack.api.create_site("9999", {"1": "0490857R"})
    import_file(stack, to_xml(golden_timetable(GOLDEN_YEAR)))
    mine, other = stack.api.site_token(SITE), stack.api.site_token("9999")
    assert len(all_sessions(stack, mine)) == 12
    for path in (f"{BASE}/sessions", f"{BASE}/courses", f"{BASE}/calendar/class/C6A.ics"):
        r = stack.api.call("GET", path, other)
        assert r.status_code == 404 and r.headers["content-type"].startswith("application/problem+json")
    assert stack.api.call("GET", f"{BASE}/sessions", "nope").status_code == 401


def test_redeposit_changes_nothing_and_a_10_percent_follow_up_exactly_what_changed(stack: Stack) -> None:
    stack.api.create_site(SITE, {EST: UAI})
    base = make_school("XS", 7, uai=UAI, year=2026)
    first = import_file(stack, base.to_xml_bytes())
    created = actions(stack, first["id"])["sessions_created"][0]
    before = {s["id"]: s for s in all_sessions(stack)}
    assert created == len(before) > 100
    # the same export again (other bytes, so not short-cut as identical): nothing created or deleted
    again = import_file(stack, base.to_xml_bytes() + b"<!-- again -->\n")
    assert not again["no_change"]
    got = actions(stack, again["id"])
    assert got["sessions_created"] == got["sessions_deleted"] == got["sessions_updated"] == (0, 0)
    assert {s["id"]: s for s in all_sessions(stack)} == before
    follow = make_school("XS", 7, uai=UAI, year=2026, changes=10)
    changed = import_file(stack, follow.to_xml_bytes())
    after = {s["id"]: s for s in all_sessions(stack)}
    touched = {s["course"] for i, s in after.items() if before.get(i) != s}
    touched |= {s["course"] for i, s in before.items() if i not in after}
    assert touched == set(follow.changed_courses)
    got = actions(stack, changed["id"])
    assert got["sessions_created"][0] == len(after.keys() - before.keys())
    assert got["sessions_deleted"][0] == len(before.keys() - after.keys())
    assert got["sessions_updated"][0] == sum(1 for i in after.keys() & before.keys() if after[i] != before[i])


def test_dry_run_previews_counts_and_writes_nothing(stack: Stack) -> None:
    stack.api.create_site(SITE, {EST: UAI})
    done = import_file(stack, to_xml(golden_timetable(GOLDEN_YEAR)), dry_run=True)
    assert done["status"] == "previewed"  # (the thresholds stage may end a dry run before this stage)
    assert all_sessions(stack) == [] and stack.api.ok("GET", f"{BASE}/courses")["items"] == []


def test_change_events_follow_each_import_on_edt_changes(sqlite_stack: Stack) -> None:
    stack = sqlite_stack
    stack.api.create_site(SITE, {EST: UAI})
    import_file(stack, make_school("XS", 7, uai=UAI, year=2026).to_xml_bytes())
    stored = {s["id"] for s in all_sessions(stack)}
    bus = stack.runtime.bus
    deadline = time.monotonic() + 10
    events: list[dict] = []
    while time.monotonic() < deadline:
        events = [json.loads(body) for ex, _, body in list(bus.published) if ex == "edt.changes"]  # type: ignore[attr-defined]
        if events and len(events) == events[0]["batches"]:
            break
        time.sleep(0.05)
    assert len(stored) > 1000 and len(events) == -(-len(stored) // 1000)
    assert all(len(e["created"]) <= 1000 for e in events)
    assert {s["id"] for e in events for s in e["created"]} == stored
    keys = {k for ex, k, _ in bus.published if ex == "edt.changes"}  # type: ignore[attr-defined]
    assert keys == {f"sessions.{SITE}.{EST}"}


@pytest.mark.parametrize("n", [2])
def test_site_wide_import_generates_each_establishment(sqlite_stack: Stack, n: int) -> None:
    stack = sqlite_stack
    uais = ["0490856P", "0490857R"]
    stack.api.create_site(SITE, {"1754": uais[0], "1755": uais[1]})
    school = make_school("XS2", 3, uai=uais, year=2026)
    done = stack.api.wait(stack.api.upload(SITE, None, school.to_xml_bytes()), timeout=60)
    assert done["status"] == "done", done
    per = done["counts"]["sessions"]["establishments"]
    assert set(per) == {"1754", "1755"} and all(c["sessions_created"] > 0 for c in per.values())
    for est in ("1754", "1755"):
        items = stack.api.ok("GET", f"/sites/{SITE}/establishments/{est}/sessions", params={"limit": 1000})["items"]
        assert len(items) == min(per[est]["sessions_created"], 1000)
