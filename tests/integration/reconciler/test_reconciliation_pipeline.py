"""Reconciliation through the real pipeline, on SQLite and PostgreSQL: an ENT directory (JSON and CSV) and
IdPN associations uploaded over REST, a generated school deposited right after → the reconciler step's
counts, the unreconciled CSV lists, the thresholds' unreconciled figures, and a blocking
students_unreconciled on an automatic follow-up. Validation errors and cross-site isolation."""

from __future__ import annotations

import csv
import io
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest

from shared.reconcile import normalise
from shared.timetable import Timetable
from tests.factory import make_school
from tests.integration.conftest import Stack

SITE, EST, UAI = "4817", "1754", "0490856P"
SEED = 11


def step(item: dict[str, Any], stage: str) -> dict[str, Any]:
    return next(s for s in item["steps"] if s["stage"] == stage)


def key(last: str, first: str) -> tuple[str, str]:
    return normalise(last), normalise(first)


@dataclass
class Scenario:
    """The ENT directory of a generated school with known defects, and what matching must find."""

    persons: list[dict[str, Any]] = field(default_factory=list)
    classes: list[dict[str, Any]] = field(default_factory=list)
    groups: list[dict[str, Any]] = field(default_factory=list)
    associations: list[dict[str, str]] = field(default_factory=list)
    unmatched: dict[str, dict[str, str]] = field(default_factory=lambda: {k: {} for k in
                                                                            ("teachers", "students", "classes",
                                                                             "groups")})

    def json(self) -> dict[str, Any]:
        return {"persons": self.persons, "classes": self.classes, "groups": self.groups}

    def csv(self) -> bytes:
        out = io.StringIO()
        w = csv.writer(out, delimiter=";")
        w.writerow(["type", "id", "last_name", "first_name", "birth_date", "pronote_id", "cas_id", "name"])
        for p in self.persons:
            birth = p.get("birth_date")
            french = f"{birth[8:10]}/{birth[5:7]}/{birth[:4]}" if birth else ""  # DD/MM/YYYY, as spreadsheets do
            w.writerow([p["kind"], p["id"], p["last_name"], p["first_name"], french, p.get("pronote_id") or "",
                        p.get("cas_id") or "", ""])
        for kind, units in (("class", self.classes), ("group", self.groups)):
            for u in units:
                w.writerow([kind, u["id"], "", "", "", "", "", u["name"]])
        return out.getvalue().encode()


def scenario(tt: Timetable) -> Scenario:
    sc = Scenario()
    # Teachers: by PRONOTE id, by CAS id, by stored IdPN association, by name; one misspelt, one homonym.
    teacher_names = Counter(key(t.last_name, t.first_name) for t in tt.teachers.values())
    teachers = sorted(tt.teachers.values(), key=lambda t: int(t.ident))
    assert all(n == 1 for n in teacher_names.values())
    with_cas = [t for t in teachers if t.cas_id]
    with_pn = [t for t in teachers if t.pronote_id and not t.cas_id]
    by_cas, by_assoc, by_pn = with_cas[0], with_pn[0], with_pn[1]
    misspelt_t, homonym_t = with_pn[2], with_pn[3]
    for t in teachers:
        p = {"id": f"ent-t{t.ident}", "kind": "teacher", "last_name": t.last_name.title(),
             "first_name": t.first_name.upper()}
        if t is by_cas:
            p.update(last_name="Renamed", cas_id=t.cas_id)
        elif t is by_assoc:
            p.update(last_name="Maiden-Name")
            sc.associations.append({"pronote_id": str(t.pronote_id), "ent_id": p["id"]})
        elif t is by_pn:
            p.update(first_name="Other", pronote_id=t.pronote_id)
        elif t is misspelt_t:
            p.update(last_name=t.last_name + "X")
            sc.unmatched["teachers"][t.ident] = "not_found"
        elif t is homonym_t:
            sc.persons.append({"id": "ent-staff-homonym", "kind": "staff", "last_name": t.last_name,
                               "first_name": t.first_name})
            sc.unmatched["teachers"][t.ident] = "ambiguous"
        sc.persons.append(p)
    # Students: name + birth date (accents and case changed), homonyms of the file told apart by their
    # birth dates, PRONOTE ids for half; three missing, one misspelt, one changed birth date, one ambiguous.
    names = Counter(key(s.last_name, s.first_name) for s in tt.students.values())
    students = sorted(tt.students.values(), key=lambda s: int(s.ident))
    homonyms = [s for s in students if names[key(s.last_name, s.first_name)] > 1]
    assert homonyms and all(s.birth_date for s in homonyms)
    assert len({(key(s.last_name, s.first_name), s.birth_date) for s in homonyms}) == len(homonyms)
    plain = [s for s in students if names[key(s.last_name, s.first_name)] == 1 and s.birth_date]
    missing, (misspelt, changed, ambiguous) = plain[:3], plain[3:6]
    for s in students:
        if s in missing:
            sc.unmatched["students"][s.ident] = "not_found"
            continue
        p: dict[str, Any] = {"id": f"ent-s{s.ident}", "kind": "student", "last_name": s.last_name.lower(),
                             "first_name": normalise(s.first_name) if int(s.ident) % 2 else s.first_name,
                             "birth_date": s.birth_date.isoformat() if s.birth_date else None}
        if int(s.ident) % 3 == 0 and s.pronote_id and s not in (misspelt, changed, ambiguous):
            p["pronote_id"] = s.pronote_id
        if s is misspelt:
            p["last_name"] = s.last_name[:-1] + ("A" if s.last_name[-1] != "A" else "E")
            sc.unmatched["students"][s.ident] = "not_found"
        elif s is changed:
            assert s.birth_date is not None
            p["birth_date"] = (s.birth_date + timedelta(days=1)).isoformat()
            sc.unmatched["students"][s.ident] = "not_found"
        elif s is ambiguous:
            sc.persons.append({**p, "id": "ent-twin-record"})
            sc.unmatched["students"][s.ident] = "ambiguous"
        sc.persons.append(p)
    # Classes by name with spaces and case changed, one missing; groups: one missing, one ambiguous.
    classes = sorted(tt.classes.values(), key=lambda c: int(c.ident))
    for c in classes[1:]:
        sc.classes.append({"id": f"ent-c{c.ident}", "name": " ".join(c.name).lower()})
    sc.unmatched["classes"][classes[0].ident] = "not_found"
    groups = sorted(tt.groups.values(), key=lambda g: int(g.ident))
    assert len({normalise(g.name) for g in groups}) == len(groups)
    for g in groups[1:]:
        sc.groups.append({"id": f"ent-g{g.ident}", "name": g.name})
    sc.groups.append({"id": "ent-g-dup", "name": groups[1].name.lower()})
    sc.unmatched["groups"] = {groups[0].ident: "not_found", groups[1].ident: "ambiguous"}
    return sc


def unreconciled(stack: Stack, import_id: str, kind: str, token: str | None = None) -> list[dict[str, str]]:
    r = stack.api.call("GET", f"/imports/{import_id}/unreconciled", token, params={"kind": kind})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(r.text), delimiter=";"))


def test_directory_then_import_reconciles_lists_and_blocks_on_students(stack: Stack) -> None:
    api = stack.api
    api.create_site(SITE, {EST: UAI})
    token = api.site_token(SITE)
    school = make_school("S", SEED, uai=UAI, year=2026)
    tt = school.timetable
    sc = scenario(tt)
    base = f"/sites/{SITE}/establishments/{EST}"

    as_json = api.ok("PUT", f"{base}/directory", token, json=sc.json())
    assert as_json["counts"]["persons"] == len(sc.persons) and as_json["counts"]["classes"] == len(sc.classes)
    # The same directory as CSV (one file, type column) gives the very same snapshot.
    as_csv = api.ok("PUT", f"{base}/directory", token, content=sc.csv(), headers={"Content-Type": "text/csv"})
    assert as_csv["sha256"] == as_json["sha256"] and as_csv["mode"] == "replace"
    ids = api.ok("POST", f"{base}/pronote-ids", token, params={"mode": "partial"}, json=sc.associations)
    assert ids["pronote_ids"] == len(sc.associations) and ids["sha256"] != as_csv["sha256"]
    got = api.ok("GET", f"{base}/directory", token, params={"kind": "student", "limit": 50})
    assert len(got["items"]) == 50 and got["next_cursor"] and got["counts"]["pronote_ids"] == 1

    # An import deposited right after the uploads sees them.
    data = school.to_xml_bytes()
    done = api.wait(api.upload(SITE, EST, data, mode="manual", token=token), timeout=60)
    assert done["status"] == "done", done
    groups_step = step(done, "groups")
    assert groups_step["status"] == "warning" and "memberships:" in groups_step["message_en"]
    totals = {"teachers": len(tt.teachers), "students": len(tt.students), "classes": len(tt.classes),
              "groups": len(tt.groups)}
    counts = done["counts"]["groups"]
    for kind, total in totals.items():
        expected = len(sc.unmatched[kind])
        assert counts[kind] == {"matched": total - expected, "unmatched": expected}, kind
        listed = unreconciled(stack, done["id"], kind, token)
        assert {r["ident"]: r["reason"] for r in listed} == sc.unmatched[kind], kind
    row = next(r for r in unreconciled(stack, done["id"], "students") if r["reason"] == "ambiguous")
    student = tt.students[row["ident"]]
    assert (row["last_name"], row["first_name"], row["birth_date"]) == (
        student.last_name, student.first_name, str(student.birth_date))
    assert row["class"] == ",".join(sorted({tt.classes[m.ident].name for m in student.classes}))

    # Threshold control got real figures (default 5 %, not blocking).
    controls = done["counts"]["thresholds"]["controls"]
    for kind, total in totals.items():
        c = controls[f"{kind}_unreconciled"]
        assert c["status"] in ("ok", "exceeded") and c["count"] == len(sc.unmatched[kind]) and c["existing"] == total
        assert c["computed"] == pytest.approx(round(len(sc.unmatched[kind]) * 100 / total, 2))
    students_pct = round(len(sc.unmatched["students"]) * 100 / len(tt.students), 2)
    assert 1 < students_pct <= 5

    api.ok("PUT", f"/sites/{SITE}/thresholds", json={"controls": {"students_unreconciled": {"value": 1,
                                                                                              "blocking": True}}})
    blocked = api.wait(api.upload(SITE, EST, data + b"<!-- follow-up -->\n", mode="auto"), timeout=60)
    assert blocked["status"] == "blocked", blocked
    alerts = [a for a in blocked["alerts"] if a.get("blocking")]
    assert [a["control"] for a in alerts] == ["students_unreconciled"]
    assert alerts[0]["computed"] == pytest.approx(students_pct) and alerts[0]["value"] == 1
    assert "élèves non rapprochés" in step(blocked, "thresholds")["message"]


def test_pronote_ids_complete_mode_replaces_every_association(stack: Stack) -> None:
    api = stack.api
    api.create_site(SITE, {EST: UAI})
    base = f"/sites/{SITE}/establishments/{EST}"
    api.ok("PUT", f"{base}/directory", json={"persons": [{"id": "e1", "kind": "teacher", "last_name": "A",
                                                          "first_name": "B"}]})
    api.ok("POST", f"{base}/pronote-ids", params={"mode": "partial"},
           content=b"pronote_id;ent_id\nP1;e1\nP2;e2\n", headers={"Content-Type": "text/csv"})
    partial = api.ok("POST", f"{base}/pronote-ids", params={"mode": "partial"}, json=[{"pronote_id": "P3",
                                                                                       "ent_id": "e3"}])
    assert partial["pronote_ids"] == 3
    complete = api.ok("POST", f"{base}/pronote-ids", params={"mode": "complete"}, json=[{"pronote_id": "P9",
                                                                                         "ent_id": "e1"}])
    assert complete["pronote_ids"] == 1
    assert api.ok("GET", f"{base}/directory")["counts"]["pronote_ids"] == 1
    merged = api.ok("PUT", f"{base}/directory", params={"mode": "merge"},
                    json={"persons": [{"id": "e2", "kind": "student", "last_name": "C", "first_name": "D"}],
                          "classes": [{"id": "c1", "name": "3A"}]})
    assert merged["counts"]["persons"] == 2 and merged["counts"]["classes"] == 1
    assert api.call("POST", f"{base}/pronote-ids", json=[]).status_code == 422  # mode is required


def test_directory_validation_errors_are_problem_json(stack: Stack) -> None:
    api = stack.api
    api.create_site(SITE, {EST: UAI})
    path = f"/sites/{SITE}/establishments/{EST}/directory"
    r = api.call("PUT", path, json={"persons": [{"id": "e1", "kind": "parent", "last_name": "A", "first_name": "B"},
                                                {"id": "e2", "kind": "student", "first_name": "C",
                                                 "birth_date": "2012-02-30"}]})
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["code"] == "validation_error"
    assert {(tuple(e["loc"]), e["type"]) for e in body["errors"]} == {
        (("body", "persons", 0, "kind"), "enum"), (("body", "persons", 1, "last_name"), "missing"),
        (("body", "persons", 1, "birth_date"), "date_parsing")}
    r = api.call("PUT", path, content=b"type;id;last_name;first_name\nstudent;e1;A;B\nteacher;;C;D\n",
                 headers={"Content-Type": "text/csv"})
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
    assert [(e["line"], e["loc"][-1]) for e in r.json()["errors"]] == [(3, "id")]
    assert "line 3" in r.json()["detail"]
    r = api.call("PUT", path, content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
    r = api.call("PUT", path, content=b"<x/>", headers={"Content-Type": "application/xml"})
    assert r.status_code == 415
    assert api.call("PUT", path, params={"mode": "wipe"}, json={}).status_code == 422
    assert api.call("GET", path).status_code == 404  # nothing stored by the rejected uploads


def test_directory_routes_are_site_scoped(stack: Stack) -> None:
    api = stack.api
    api.create_site(SITE, {EST: UAI})
    api.create_site("9001", {"9002": "0490858S"})
    mine, other = api.site_token(SITE), api.site_token("9001")
    base = f"/sites/{SITE}/establishments/{EST}"
    body = {"persons": [{"id": "e1", "kind": "teacher", "last_name": "A", "first_name": "B"}]}
    assert api.call("PUT", f"{base}/directory", other, json=body).status_code == 404
    assert api.call("POST", f"{base}/pronote-ids", other, params={"mode": "partial"}, json=[]).status_code == 404
    api.ok("PUT", f"{base}/directory", mine, json=body)
    r = api.call("GET", f"{base}/directory", other)
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
    assert api.call("GET", f"{base}/directory", headers={"Authorization": "Bearer nope"}).status_code == 401

    done = api.wait(api.upload(SITE, EST, make_school("XS", SEED, uai=UAI, year=2026).to_xml_bytes(), token=mine))
    assert done["status"] == "done"
    assert step(done, "groups")["status"] == "warning"
    assert api.call("GET", f"/imports/{done['id']}/unreconciled", other, params={"kind": "teachers"}).status_code == 404
    assert api.call("GET", f"/imports/{done['id']}/unreconciled", mine, params={"kind": "rooms"}).status_code == 422
    assert unreconciled(stack, done["id"], "teachers", mine)
    assert json.dumps(done["counts"]["groups"])  # the step's counts are in the history


def test_a_directory_event_still_queued_is_waited_for_by_threshold_control(sqlite_stack: Stack) -> None:
    """Ordering: the thresholds' directory consumer is held back while a directory is uploaded and an
    import deposited right after; the stage's barrier waits for the event, so the figures are real."""
    stack = sqlite_stack
    api = stack.api
    api.create_site(SITE, {EST: UAI})
    tt = make_school("XS", SEED, uai=UAI, year=2026).timetable
    stack.pause("edt.thresholds.directory")
    api.ok("PUT", f"/sites/{SITE}/establishments/{EST}/directory",
           json={"persons": [{"id": f"t{t.ident}", "kind": "teacher", "last_name": t.last_name,
                              "first_name": t.first_name} for t in tt.teachers.values()]})
    running = api.upload(SITE, EST, make_school("XS", SEED, uai=UAI, year=2026).to_xml_bytes())
    api.wait(running, {"checking_thresholds"})
    # the stage's barrier marker sits behind the directory event in the held queue: the stage waits
    deadline = time.monotonic() + 10
    while stack.queue_depth("edt.thresholds.directory") < 2:
        assert time.monotonic() < deadline, "the barrier marker never reached the directory queue"
        time.sleep(0.01)
    assert api.get_import(running)["status"] == "checking_thresholds"  # held by the barrier
    stack.resume("edt.thresholds.directory")
    done = api.wait(running)
    assert done["status"] == "done"
    controls = done["counts"]["thresholds"]["controls"]
    assert controls["teachers_unreconciled"]["computed"] == 0.0
    assert controls["students_unreconciled"]["computed"] == 100.0  # none in the directory: real, not a fake
    assert controls["classes_unreconciled"]["existing"] == len(tt.classes)
