"""Group creation and the manual wizard through the real pipeline, on SQLite and PostgreSQL.

A generated M school and an ENT directory with homonyms, missing students, a misspelt name and a changed
birth date: a manual import with the wizard (`review=true`) pauses at awaiting_selection with its preview;
the user overrides two matches and turns a course off; confirm creates the groups and memberships and
generates the sessions of the selected courses only; an automatic import reuses the overrides and keeps the
course out. A redelivered groups command changes nothing; a follow-up export with a student moved to
another class changes exactly that student's memberships."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

from shared.timetable import Membership, derive_courses
from tests.factory import make_school
from tests.harness import CURRENT_SCHOOL_YEAR
from tests.integration.conftest import Stack
from tests.integration.reconciler.test_reconciliation_pipeline import scenario, step, unreconciled

SITE, EST, UAI = "4817", "1754", "0490856P"
SEED = 11


def all_pages(stack: Stack, path: str, **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = stack.api.ok("GET", path, params={**params, "limit": 1000, **({"cursor": cursor} if cursor else {})})
        items += page["items"]
        cursor = page.get("next_cursor")
        if not cursor:
            return items


def never_integrated(stack: Stack, path: str, course: str) -> bool:
    """A course no import integrated has no session: the sessions list does not know its key (422)."""
    r = stack.api.call("GET", path, params={"course": course})
    return r.status_code == 422 and r.json()["code"] == "unknown_filter_value"


def memberships(stack: Stack) -> set[tuple[str, str, str, str | None, str | None]]:
    groups = all_pages(stack, f"/sites/{SITE}/establishments/{EST}/groups", include="members")
    return {(g["key"], m["kind"], m["id"], m["start"], m["end"]) for g in groups for m in g["member_list"]}


def upload(stack: Stack, data: bytes, **form: str) -> str:
    body = stack.api.ok("POST", f"/sites/{SITE}/establishments/{EST}/imports",
                        files={"file": ("EDT_To_KOSMOS.xml", data, "application/xml")}, data=form)
    return str(body["import_id"])


def actions(item: dict[str, Any]) -> dict[str, int]:
    return {a["action"]: a["success"] for a in item["counts"]["groups"]["actions"]}


def test_wizard_overrides_and_deselected_course_are_reused_by_automatic_imports(stack: Stack) -> None:
    api = stack.api
    api.create_site(SITE, {EST: UAI})
    school = make_school("M", SEED, uai=UAI, year=CURRENT_SCHOOL_YEAR)
    tt = school.timetable
    sc = scenario(tt)
    base = f"/sites/{SITE}/establishments/{EST}"
    api.ok("PUT", f"{base}/directory", json=sc.json())
    api.ok("POST", f"{base}/pronote-ids", params={"mode": "partial"}, json=sc.associations)
    data = school.to_xml_bytes()

    # Manual import with the wizard: it pauses once the preview is computed, nothing written yet.
    import_id = upload(stack, data, mode="manual", review="true")
    paused = api.wait(import_id, {"awaiting_selection"}, timeout=120)
    assert paused["label"] == "En attente" and step(paused, "groups")["status"] == "warning"
    assert api.ok("GET", f"{base}/groups")["items"] == []
    preview = api.ok("GET", f"/imports/{import_id}/preview")
    assert preview["status"] == "awaiting" and preview["thresholds"]["establishments"][EST]["controls"]
    (est_preview,) = preview["establishments"]
    for kind in ("teachers", "students", "classes", "groups"):
        total = len(getattr(tt, kind))
        assert est_preview["counts"][kind] == {"matched": total - len(sc.unmatched[kind]),
                                               "unmatched": len(sc.unmatched[kind])}, kind
    courses = derive_courses(tt)
    assert {c["key"] for c in est_preview["courses"]} == {c.key for c in courses}
    assert {c["state"] for c in est_preview["courses"]} == {"new"}
    students = {r["ident"]: r for r in est_preview["persons"]["students"]}
    reasons = {i: r["reason"] for i, r in students.items() if r["status"] == "unmatched"}
    assert reasons == sc.unmatched["students"]
    # The student whose birth date changed has its ENT record as a candidate (same last name).
    changed = next(i for i, r in students.items() if r["status"] == "unmatched"
                   and any(c["id"] == f"ent-s{i}" for c in r["candidates"]))
    misspelt = next(i for i, reason in sc.unmatched["students"].items()
                    if reason == "not_found" and i != changed and any(p["id"] == f"ent-s{i}" for p in sc.persons))
    # The CSV lists exactly the unmatched.
    assert {r["ident"]: r["reason"] for r in unreconciled(stack, import_id, "students")} == sc.unmatched["students"]

    # Selection: override the two, turn one course off. Bad selections are 422, nothing stored.
    off = courses[0]
    bad = api.call("PUT", f"/imports/{import_id}/selection",
                   json={"courses": {"nope": False}, "persons": {"students": {changed: {"decision": "override",
                                                                                        "ent_id": "ent-t1"}}}})
    assert bad.status_code == 422 and len(bad.json()["errors"]) == 2
    sel = api.ok("PUT", f"/imports/{import_id}/selection", json={
        "courses": {off.key: False},
        "persons": {"students": {changed: {"decision": "override", "ent_id": f"ent-s{changed}"},
                                 misspelt: {"decision": "override", "ent_id": f"ent-s{misspelt}"}}}})
    assert sel["selection"][EST]["courses"][off.key] is False
    confirmed = api.ok("POST", f"/imports/{import_id}/confirm")
    assert confirmed["courses_kept"] == len(courses) - 1
    assert api.call("POST", f"/imports/{import_id}/confirm").status_code == 409
    done = api.wait(import_id, timeout=120)
    assert done["status"] == "done", done
    expected_unmatched = {i: r for i, r in sc.unmatched["students"].items() if i not in (changed, misspelt)}
    assert done["counts"]["groups"]["students"] == {"matched": len(tt.students) - len(expected_unmatched),
                                                    "unmatched": len(expected_unmatched)}
    assert {r["ident"] for r in unreconciled(stack, import_id, "students")} == set(expected_unmatched)
    created = actions(done)
    assert created["groups_created"] > 0 and created["memberships_created"] > 0
    report = api.ok("GET", f"/imports/{import_id}/report")
    assert {a["action"] for a in report["actions"]} >= {"groups_created", "memberships_deleted"}
    assert never_integrated(stack, f"{base}/sessions", off.key)
    assert all_pages(stack, f"{base}/sessions", course=courses[1].key)
    members = memberships(stack)
    assert any(m[2] == f"ent-s{changed}" for m in members)
    klass = next(iter(tt.students[changed].classes)).ident
    groups = {g["key"]: g for g in all_pages(stack, f"{base}/groups")}
    assert groups[f"class:{klass}"]["members"] == sum(1 for m in members if m[0] == f"class:{klass}")

    # Automatic import of a later export: the overrides and the deselected course are reused.
    auto = api.wait(upload(stack, data + b"<!-- later -->\n", mode="auto"), timeout=120)
    assert auto["status"] == "done", auto
    assert auto["counts"]["groups"]["students"]["unmatched"] == len(expected_unmatched)
    assert auto["counts"]["groups"]["courses_kept"] == len(courses) - 1
    assert auto["counts"]["groups"]["courses_waiting"] == 0
    assert actions(auto)["memberships_created"] == 0 and actions(auto)["memberships_deleted"] == 0
    assert never_integrated(stack, f"{base}/sessions", off.key)
    assert memberships(stack) == members

    # A later manual import with the wizard shows what is known, new and deactivated; cancel drops it.
    again = upload(stack, data + b"<!-- again -->\n", mode="manual", review="true")
    api.wait(again, {"awaiting_selection"}, timeout=120)
    states = {c["key"]: c["state"] for c in api.ok("GET", f"/imports/{again}/preview")["establishments"][0]["courses"]}
    assert states[off.key] == "deactivated" and states[courses[1].key] == "known"
    decided = {r["ident"]: r for r in api.ok("GET", f"/imports/{again}/preview")["establishments"][0]["persons"]
               ["students"]}
    assert decided[changed]["rule"] == "manual" and decided[changed]["decision"]["decision"] == "override"
    assert api.ok("POST", f"/imports/{again}/cancel")["status"] == "cancelled"
    deadline = time.monotonic() + 10
    while api.ok("GET", f"/imports/{again}/preview")["status"] != "cancelled":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert api.call("POST", f"/imports/{again}/confirm").status_code == 409
    assert api.wait(again)["status"] == "cancelled"


def test_redelivered_groups_command_and_a_moved_student(stack: Stack) -> None:
    api = stack.api
    api.create_site(SITE, {EST: UAI})
    school = make_school("S", SEED, uai=UAI, year=CURRENT_SCHOOL_YEAR)
    tt = school.timetable
    sc = scenario(tt)
    base = f"/sites/{SITE}/establishments/{EST}"
    api.ok("PUT", f"{base}/directory", json=sc.json())
    first = api.first_import(SITE, EST, school.to_xml_bytes())
    assert actions(first)["memberships_created"] > 0 and actions(first)["memberships_deleted"] == 0
    before = memberships(stack)
    assert len(before) == actions(first)["memberships_created"]
    groups_before = all_pages(stack, f"{base}/groups")
    assert len(groups_before) == actions(first)["groups_created"]

    # Redeliver the groups command twice: StageWorker drops the finished run, nothing changes.
    bus: Any = stack.runtime.bus
    body = next(b for ex, rk, b in bus.published if rk == "edt.groups" and first["id"].encode() in b)
    loop = stack.server.loop
    assert loop is not None
    for _ in range(2):
        asyncio.run_coroutine_threadsafe(bus.publish("", "edt.groups", body, message_id=f"{first['id']}:groups"),
                                         loop).result(5)
    asyncio.run_coroutine_threadsafe(bus.drain(), loop).result(30)
    assert memberships(stack) == before
    assert all_pages(stack, f"{base}/groups") == groups_before
    assert api.get_import(first["id"])["counts"]["groups"] == first["counts"]["groups"]

    # A follow-up export: one matched student moves to another class.
    matched = {p["id"] for p in sc.persons}
    student = next(s for s in tt.students.values() if f"ent-s{s.ident}" in matched
                   and len(s.classes) == 1 and s.ident not in sc.unmatched["students"])
    old = student.classes[0]
    new_class = next(c for c in tt.classes.values() if c.ident != old.ident)
    tt.students[student.ident] = dataclasses.replace(student, classes=(Membership(new_class.ident, old.start,
                                                                                  old.end),), parts=())
    moved = api.wait(upload(stack, school.to_xml_bytes(), mode="auto"), timeout=120)
    assert moved["status"] == "done", moved
    after = memberships(stack)
    changed = before ^ after
    assert changed and {m[2] for m in changed} == {f"ent-s{student.ident}"}
    assert ("class:" + old.ident, "student", f"ent-s{student.ident}",
            old.start.isoformat() if old.start else None, old.end.isoformat() if old.end else None) in before - after
    assert any(m[0] == f"class:{new_class.ident}" for m in after - before)
    counted = actions(moved)
    assert counted["memberships_created"] == len(after - before)
    assert counted["memberships_deleted"] == len(before - after)
    assert counted["groups_created"] == counted["groups_deleted"] == 0
