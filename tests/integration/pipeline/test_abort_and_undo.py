"""The import lifecycle beyond the seeds (SQLite and PostgreSQL, through the real path): abort a waiting or
running import — it ends `cancelled` at its next stage boundary with nothing of it written, groups it had
written restored —, and undo the establishment's last integrated import with a new import of mode `undo`
that restores, from its start on, the sessions, groups and memberships as they were before."""

from __future__ import annotations

import time
from typing import Any

from tests.factory import make_school
from tests.factory.directory import make_directory
from tests.harness import Api
from tests.integration.conftest import BOTH_BACKENDS, Stack

SITE, EST, UAI = "4817", "1754", "0490856P"
BASE = f"/sites/{SITE}/establishments/{EST}"


def pages(api: Api, path: str, **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = api.ok("GET", path, params={**params, "limit": 1000, **({"cursor": cursor} if cursor else {})})
        items += page["items"]
        if not (cursor := page.get("next_cursor")):
            return items


def sessions(api: Api, after: str = "") -> dict[str, tuple[Any, ...]]:
    """Every session starting after `after` (an instant), by id."""
    return {s["id"]: (s["course"], s["start"], s["end"], tuple(s["rooms"]), tuple(s["teachers"]), tuple(s["classes"]))
            for s in pages(api, f"{BASE}/sessions") if s["start"] > after}


def groups(api: Api) -> dict[str, tuple[Any, ...]]:
    """Every group with its memberships, by key."""
    return {g["key"]: (g["kind"], g["ident"], g["name"], g.get("parent"), g.get("ent_id"),
                       tuple(sorted((m["kind"], m["id"], m["start"], m["end"]) for m in g["member_list"])))
            for g in pages(api, f"{BASE}/groups", include="members")}


def active_courses(api: Api) -> set[str]:
    return {c["key"] for c in pages(api, f"{BASE}/courses") if c["active"]}


def setup(api: Api, seed: int) -> bytes:
    api.create_site(SITE, {EST: UAI})
    school = make_school("XS", seed, uai=UAI)
    api.ok("PUT", f"{BASE}/directory", json=make_directory(school.timetable, seed=seed, unrelated=0).body)
    return school.to_xml_bytes()


def report(api: Api, import_id: str) -> dict[str, int]:
    return {a["action"]: a["success"] for a in api.ok("GET", f"/imports/{import_id}/report")["actions"]}


def wait_step(api: Api, import_id: str, stage: str, timeout: float = 30) -> dict[str, Any]:
    """The import once its `stage` step has ended (the history's own step record)."""
    deadline = time.monotonic() + timeout
    while True:
        item = api.get_import(import_id)
        if next(s for s in item["steps"] if s["stage"] == stage)["status"] in ("ok", "warning", "error"):
            return item
        assert time.monotonic() < deadline, f"{stage} never ended: {item}"
        time.sleep(0.05)


def problem(api: Api, path: str, code: str) -> dict[str, Any]:
    r = api.call("POST", path)
    assert r.status_code == 409 and r.headers["content-type"].startswith("application/problem+json"), r.text
    body = r.json()
    assert body["code"] == code and body["detail"] and body["detail_en"], body
    return dict(body)


def test_abort_a_waiting_and_a_running_import(stack: Stack) -> None:
    api = stack.api
    first = setup(api, 4)
    api.wait(api.upload(SITE, EST, first), {"done"})
    before = (sessions(api), groups(api), active_courses(api))

    # waiting: it had not started, cancelled at once (200)
    stack.pause("edt.validate")
    try:
        running = api.upload(SITE, EST, make_school("XS", 5, uai=UAI).to_xml_bytes())  # another school: all changes
        api.wait(running, {"received"})
        waiting = api.upload(SITE, EST, make_school("XS", 4, uai=UAI, changes=20).to_xml_bytes(), mode="auto")
        r = api.call("POST", f"/imports/{waiting}/abort")
        assert r.status_code == 200 and r.json()["status"] == "cancelled" and r.json()["label"] == "Interrompu"
        stack.pause("edt.sessions")  # the running one will stop between group creation and session generation
    finally:
        stack.resume("edt.validate")
    held = wait_step(api, running, "groups")  # its groups are written, its sessions not yet
    assert held["status"] == "creating_groups"
    assert groups(api) != before[1], "the running import wrote its groups"
    r = api.call("POST", f"/imports/{running}/abort")
    assert r.status_code == 202 and r.json()["abort_requested_at"], r.text
    stack.resume("edt.sessions")
    ended = api.wait(running)
    assert ended["status"] == "cancelled" and ended["label"] == "Interrompu"
    sessions_step = next(s for s in ended["steps"] if s["stage"] == "sessions")
    assert sessions_step["status"] == "error" and "rien de cette étape" in sessions_step["message"]
    # nothing of it: sessions and courses untouched, its groups and memberships restored — by the reconciler
    # when it hears of the cancellation (import.history.cancelled), so once the bus has handled that event
    stack.drain()
    assert (sessions(api), groups(api), active_courses(api)) == before
    assert "sessions_created" not in report(api, running)
    assert api.call("PUT", f"/sites/{SITE}/thresholds", json={"controls": {"courses_created": {"value": 60}}}
                    ).status_code == 200  # unlocked
    # ended imports cannot be aborted; the next import goes through as usual
    problem(api, f"/imports/{running}/abort", "not_abortable")
    problem(api, f"/imports/{waiting}/abort", "not_abortable")
    assert api.wait(api.upload(SITE, EST, make_school("XS", 4, uai=UAI, changes=10).to_xml_bytes()))["status"] == "done"


@BOTH_BACKENDS
def test_undo_restores_the_state_before_the_last_integrated_import(stack: Stack) -> None:
    api = stack.api
    first = setup(api, 4)
    a1 = api.wait(api.upload(SITE, EST, first), {"done"})
    state1 = (groups(api), active_courses(api))
    sessions1 = sessions(api)
    a2 = api.wait(api.upload(SITE, EST, make_school("XS", 4, uai=UAI, changes=40).to_xml_bytes()), {"done"})
    state2, sessions2 = (groups(api), active_courses(api)), sessions(api)
    assert state2 != state1 and sessions2 != sessions1

    problem(api, f"/imports/{a1['id']}/undo", "not_undoable")  # not the last integrated one
    stack.pause("edt.validate")
    try:
        r = api.call("POST", f"/imports/{a2['id']}/undo")
        assert r.status_code == 202, r.text
        undo_id = r.json()["import_id"]
        assert r.headers["location"] == f"/api/v1/imports/{undo_id}"
        queued = api.get_import(undo_id)  # readable, listed and locking at once, like any import
        assert queued["mode"] == "undo" and queued["undo_of"] == a2["id"]
        assert queued["status"] in ("waiting", "received")
        assert api.history(SITE)[0]["id"] == undo_id and api.history(SITE, mode="undo")[0]["id"] == undo_id
        assert api.call("PUT", f"/sites/{SITE}/thresholds", json={"controls": {"courses_created": {"value": 60}}}
                        ).status_code == 423
        problem(api, f"/imports/{a2['id']}/undo", "not_undoable")  # an import of the establishment is in flight
    finally:
        stack.resume("edt.validate")
    undone = api.wait(undo_id)
    assert undone["status"] == "done" and undone["label"] == "Fait", undone
    assert undone["file"]["sha256"] == a1["file"]["sha256"]  # it restores a1's timetable

    # from its start on, the sessions, groups and memberships of before a2; earlier sessions untouched
    assert (groups(api), active_courses(api)) == state1
    start = undone["started_at"]
    assert sessions(api, start) == {i: s for i, s in sessions1.items() if s[1] > start}
    assert {i: s for i, s in sessions(api).items() if s[1] <= start} == {
        i: s for i, s in sessions2.items() if s[1] <= start}
    # its bilan and its change events
    done = report(api, undo_id)
    assert done["sessions_created"] + done["sessions_updated"] + done["sessions_deleted"] > 0
    assert done["memberships_created"] + done["memberships_deleted"] > 0
    changes = api.call("GET", f"/sites/{SITE}/changes", params={"once": "true"}).text
    assert f'"import_id":"{undo_id}"' in changes

    # an undo is undoable too (back to a2's state); a re-deposit of a1's file then changes nothing of a1's state
    problem(api, f"/imports/{a2['id']}/undo", "not_undoable")  # not the last any more
    redo = api.wait(api.ok("POST", f"/imports/{undo_id}/undo")["import_id"])
    assert redo["status"] == "done" and (groups(api), active_courses(api)) == state2


def test_undo_of_a_first_import_and_refusals(stack: Stack) -> None:
    api = stack.api
    first = setup(api, 4)
    rejected = api.wait(api.upload(SITE, EST, b"<not-xml"))
    problem(api, f"/imports/{rejected['id']}/undo", "not_undoable")
    a1 = api.wait(api.upload(SITE, EST, first), {"done"})
    same = api.wait(api.upload(SITE, EST, first))  # identical: "no change"
    assert same["no_change"]
    problem(api, f"/imports/{same['id']}/undo", "not_undoable")
    undone = api.wait(api.ok("POST", f"/imports/{a1['id']}/undo")["import_id"])
    assert undone["status"] == "done", undone
    assert sessions(api, undone["started_at"]) == {} and active_courses(api) == set() and groups(api) == {}
    # and the establishment imports again from nothing
    again = api.wait(api.upload(SITE, EST, first + b"<!-- again -->"), {"done"})
    assert report(api, again["id"])["sessions_created"] > 0 and groups(api)


def test_undo_of_an_l_school(sqlite_stack: Stack) -> None:
    """The figure (run with -s): an L school's 10 % re-import and its undo, POST → done."""
    api = sqlite_stack.api
    api.create_site(SITE, {EST: UAI})
    school = make_school("L", 2, uai=UAI)
    api.ok("PUT", f"{BASE}/directory", json=make_directory(school.timetable, seed=2, unrelated=0).body)
    api.wait(api.upload(SITE, EST, school.to_xml_bytes()), {"done"}, timeout=300)
    before = groups(api)
    started = time.perf_counter()
    second = api.wait(api.upload(SITE, EST, make_school("L", 2, uai=UAI, changes=10).to_xml_bytes()), {"done"},
                      timeout=300)
    reimport_s = time.perf_counter() - started
    assert groups(api) != before
    started = time.perf_counter()
    undone = api.wait(api.ok("POST", f"/imports/{second['id']}/undo")["import_id"], timeout=300)
    undo_s = time.perf_counter() - started
    assert undone["status"] == "done" and groups(api) == before
    changed = report(api, undone["id"])
    print(f"\n[sqlite] L school: 10 % re-import {reimport_s:.2f} s, its undo {undo_s:.2f} s (POST → done; "
          f"{changed['sessions_created']} sessions created, {changed['sessions_updated']} updated, "
          f"{changed['sessions_deleted']} deleted, {changed['memberships_created']} memberships restored)")
    assert undo_s < max(10.0, 3 * reimport_s)
