"""Personal data (docs/privacy.md), through the real path — REST and WebDAV in, queues, databases, blob
store, history API out — on SQLite and PostgreSQL: retention (on demand and by itself, the baseline
kept), the rights of the people concerned (export and erasure across services) and the access log."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.reconcile import Directory
from tests.factory import make_school
from tests.factory.directory import make_directory
from tests.harness import Api, curl_put, database
from tests.integration.conftest import BOTH_BACKENDS, Stack, start_stack

SITE, EST = "4817", "1754"
UAI = "0490856P"
EXPIRED_AT_ONCE = {"EDT_RETENTION_SOURCE_DAYS": "0", "EDT_RETENTION_MODEL_DAYS": "0",
                   "EDT_RETENTION_DIRECTORY_DAYS": "0", "EDT_RETENTION_LISTS_DAYS": "0",
                   "EDT_RETENTION_ACCESS_LOG_DAYS": "0"}


@pytest.fixture
def expiring_stack(db_kind: str, tmp_path: Path) -> Iterator[Stack]:
    """Every retention period 0 days: whatever ended has expired by the next purge."""
    with database(db_kind, tmp_path) as url:
        yield from start_stack(tmp_path, url, **EXPIRED_AT_ONCE)


def school_export(marker: int = 0, changes: float = 0) -> tuple[Any, bytes]:
    """The XS school's export (`changes`: its follow-up with that % of courses changed, another model)."""
    school = make_school("XS", 7, uai=UAI, changes=changes)
    return school, school.to_xml_bytes() + f"<!-- {marker} -->\n".encode()


def setup(api: Api, directory_of: Any) -> Any:
    api.create_site(SITE, {EST: UAI})
    directory = make_directory(directory_of, missing=0.1, unrelated=20)
    api.ok("PUT", f"/sites/{SITE}/establishments/{EST}/directory", json=directory.body)
    return directory


def model_of(api: Api, import_id: str) -> str:
    return str(api.ok("GET", f"/imports/{import_id}/validation")["timetables"][EST])


def current_snapshot(api: Api) -> str:
    return str(api.ok("GET", f"/sites/{SITE}/establishments/{EST}/directory", params={"limit": 1})["sha256"])


# --- retention -----------------------------------------------------------------------------------------


@BOTH_BACKENDS
def test_retention_run_empties_what_expired_keeps_the_baseline_and_the_history(expiring_stack: Stack) -> None:
    api, blobs = expiring_stack.api, expiring_stack.runtime.blobs
    school, first_file = school_export(1)
    directory = setup(api, school.timetable)
    old_snapshot = current_snapshot(api)
    first = api.first_import(SITE, EST, first_file)["id"]
    api.ok("PUT", f"/sites/{SITE}/establishments/{EST}/directory", json=directory.body | {"groups": []})
    new_snapshot = current_snapshot(api)
    second = api.wait(api.upload(SITE, EST, school_export(2, changes=10)[1]), {"done"})["id"]
    first_model, second_model = model_of(api, first), model_of(api, second)
    history_before = {i["id"]: i["counts"] for i in api.history(SITE)}
    assert all(blobs.exists(sha) for sha in (first_model, second_model, old_snapshot, new_snapshot))
    assert api.call("GET", f"/imports/{first}/unreconciled", params={"kind": "students"}).status_code == 200
    wait_log(api, lambda items: any(e["action"] == "unreconciled.read" for e in items))  # a read, logged

    run = api.ok("POST", "/ops/retention/run")
    assert set(run["services"]) == {"dropzone", "validator", "reconciler", "notifier"}
    assert run["services"]["dropzone"]["source_files_deleted"] == 2
    assert run["services"]["validator"]["models_deleted"] >= 1
    assert run["services"]["reconciler"]["lists_emptied"] == 2
    assert run["services"]["reconciler"]["snapshots_deleted"] == 1
    assert run["services"]["notifier"]["access_log_deleted"] >= 1
    # the deposited files and the first model are gone; the baseline and the current snapshot stay
    for import_id in (first, second):
        assert not blobs.exists(api.get_import(import_id)["file"]["sha256"])
        gone = api.call("GET", f"/imports/{import_id}/source")
        assert gone.status_code == 410 and gone.headers["content-type"].startswith("application/problem+json")
        assert gone.json()["code"] == "source_gone" and "0 jours après la fin de leur import" in gone.json()["detail"]
        listed = api.call("GET", f"/imports/{import_id}/unreconciled", params={"kind": "students"})
        assert listed.status_code == 410 and listed.json()["code"] == "list_gone"
    assert not blobs.exists(first_model) and not blobs.exists(old_snapshot)
    assert blobs.exists(second_model) and blobs.exists(new_snapshot)
    # the history stays readable, with its counts; the bilan too
    assert {i["id"]: i["counts"] for i in api.history(SITE)} == history_before
    assert api.ok("GET", f"/imports/{first}/report")["total_tasks"] > 0
    # the baseline still serves threshold control: the next import compares with it and goes through
    third = api.wait(api.upload(SITE, EST, school_export(3, changes=10)[1], mode="auto"))
    assert third["status"] == "done", third  # without its baseline, an automatic import would be blocked
    again = api.ok("POST", "/ops/retention/run")  # idempotent: what is gone stays gone, nothing else goes
    assert again["services"]["dropzone"]["source_files_deleted"] == 1  # the third deposit's own file
    assert blobs.exists(model_of(api, third["id"]))


@BOTH_BACKENDS
def test_the_purge_runs_by_itself(db_kind: str, tmp_path: Path) -> None:
    with database(db_kind, tmp_path) as url:
        stacks = start_stack(tmp_path, url, EDT_RETENTION_INTERVAL_S="0.3", **EXPIRED_AT_ONCE)
        stack = next(stacks)
        try:
            school, data = school_export()
            setup(stack.api, school.timetable)
            done = stack.api.first_import(SITE, EST, data)
            deadline = time.monotonic() + 20
            while stack.runtime.blobs.exists(done["file"]["sha256"]):  # nobody asked: the services purge
                assert time.monotonic() < deadline, "the deposited file was never purged"
                time.sleep(0.1)
            assert stack.api.call("GET", f"/imports/{done['id']}/source").status_code == 410
            assert stack.api.get_import(done["id"])["status"] == "done"
        finally:
            stacks.close()


def test_retention_run_is_for_admins_only(stack: Stack) -> None:
    stack.api.create_site(SITE, {EST: UAI})
    token = stack.api.site_token(SITE)
    assert stack.api.call("POST", "/ops/retention/run", token=token).status_code == 403
    assert stack.api.call("GET", "/ops/access-log", token=token).status_code == 403
    assert stack.api.call("GET", f"/sites/{SITE}/persons/x", token=token).status_code == 403
    assert stack.api.call("DELETE", f"/sites/{SITE}/persons/x", token=token).status_code == 403


# --- rights of the people concerned ----------------------------------------------------------------------


def a_matched_student(api: Api, school: Any, directory: Any) -> tuple[str, Any]:
    """An ENT student the import matched, with its file record."""
    ents = {(p["last_name"].upper(), p.get("birth_date")): p["id"] for p in directory.body["persons"]
            if p["kind"] == "student"}
    groups = api.ok("GET", f"/sites/{SITE}/establishments/{EST}/groups",
                    params={"kind": "class", "include": "members", "limit": 1000})["items"]
    members = {m["id"] for g in groups for m in g.get("member_list", [])}
    for student in school.timetable.students.values():
        ent = ents.get((student.last_name.upper(), student.birth_date and student.birth_date.isoformat()))
        if student.classes and ent in members:
            return str(ent), student
    raise AssertionError("no matched student")


@BOTH_BACKENDS
def test_a_person_is_exported_from_every_service_then_erased_everywhere(stack: Stack) -> None:
    api = stack.api
    school, data = school_export()
    directory = setup(api, school.timetable)
    api.first_import(SITE, EST, data)
    ent, student = a_matched_student(api, school, directory)
    sessions_before = api.ok("GET", f"/sites/{SITE}/establishments/{EST}/sessions", params={"limit": 1000})

    exported = api.ok("GET", f"/sites/{SITE}/persons/{ent}")
    held = exported["held"]
    assert [p["id"] for p in held["reconciler"]["directory"]] == [ent]
    assert held["reconciler"]["memberships"] and all(m["person_id"] == ent for m in held["reconciler"]["memberships"])
    assert {"establishment": EST, "kind": "students", "ident": student.ident} in exported["file_idents"]
    people = held["scheduler"]["timetable_people"]
    assert people and people[0]["ident"] == student.ident and people[0]["memberships"]
    records = [m["record"] for m in held["validator"]["models"] if "record" in m]
    assert records and records[0]["last_name"] == student.last_name and records[0]["classes"]
    assert exported["retained"] and exported["retained"][0]["baseline"] is True

    erased = api.ok("DELETE", f"/sites/{SITE}/persons/{ent}")
    assert erased["confirmed_by"] == ["reconciler", "scheduler", "validator"]
    assert erased["erased"]["reconciler"]["erased"]["directory"] == 1
    assert erased["erased"]["reconciler"]["erased"]["memberships"] >= 1
    assert erased["erased"]["scheduler"]["timetable_people"][0]["erased"]["class_members"] >= 1
    assert erased["retained"]  # the sealed school files naming them, which leave by retention
    # nothing left anywhere; the sessions keep their course
    assert api.call("GET", f"/sites/{SITE}/persons/{ent}").status_code == 404
    assert api.call("DELETE", f"/sites/{SITE}/persons/{ent}").status_code == 404
    persons = api.ok("GET", f"/sites/{SITE}/establishments/{EST}/directory", params={"limit": 1000})
    assert ent not in {p["id"] for p in persons["items"]}
    snapshot = Directory.from_json(stack.runtime.blobs.read_bytes(persons["sha256"]))
    assert ent not in {p.id for p in snapshot.persons}
    groups = api.ok("GET", f"/sites/{SITE}/establishments/{EST}/groups",
                    params={"include": "members", "limit": 1000})["items"]
    assert all(m["id"] != ent for g in groups for m in g.get("member_list", []))
    after = api.ok("GET", f"/sites/{SITE}/establishments/{EST}/sessions", params={"limit": 1000})
    assert [s["id"] for s in after["items"]] == [s["id"] for s in sessions_before["items"]]
    mine = api.call("GET", f"/sites/{SITE}/establishments/{EST}/sessions",
                    params={"person": f"student:{student.ident}", "limit": 10})
    assert mine.status_code == 422 and mine.json()["code"] == "unknown_filter_value"  # no longer known at all
    calendar = f"/sites/{SITE}/establishments/{EST}/calendar/student/{student.ident}.ics"
    assert api.call("GET", calendar).status_code == 404
    log = api.ok("GET", "/ops/access-log", params={"site": SITE})["items"]
    assert {"person.export", "person.erase"} <= {e["action"] for e in log}


def test_an_unknown_person_is_404(stack: Stack) -> None:
    stack.api.create_site(SITE, {EST: UAI})
    assert stack.api.call("GET", f"/sites/{SITE}/persons/nobody").status_code == 404
    assert stack.api.call("DELETE", f"/sites/{SITE}/persons/nobody").status_code == 404


# --- accountability --------------------------------------------------------------------------------------


def wait_log(api: Api, predicate: Any, timeout: float = 10) -> list[dict[str, Any]]:
    """The access log once `predicate` holds (entries from other services arrive through the bus)."""
    deadline = time.monotonic() + timeout
    while True:
        items = api.ok("GET", "/ops/access-log", params={"site": SITE, "limit": 500})["items"]
        if predicate(items) or time.monotonic() > deadline:
            return list(items)
        time.sleep(0.05)


def test_every_read_of_personal_data_is_in_the_access_log(stack: Stack, tmp_path: Path) -> None:
    api = stack.api
    school, data = school_export()
    setup(api, school.timetable)
    done = api.first_import(SITE, EST, data)
    token = api.site_token(SITE)
    token_id = token.split(".")[2]
    assert api.call("GET", f"/imports/{done['id']}/source", token=token).status_code == 200
    assert api.call("GET", f"/imports/{done['id']}/unreconciled", token=token,
                    params={"kind": "students"}).status_code == 200
    review = api.ok("POST", f"/sites/{SITE}/establishments/{EST}/imports", token,
                    files={"file": ("x.xml", school_export(5)[1], "application/xml")},
                    data={"mode": "manual", "review": "true"})["import_id"]
    api.wait(review, {"awaiting_selection"})
    assert api.call("GET", f"/imports/{review}/preview", token=token).status_code == 200
    api.ok("POST", f"/imports/{review}/cancel")
    account = api.create_account(SITE)
    export = tmp_path / "EDT_To_KOSMOS.xml"
    export.write_bytes(school_export(6)[1])
    put = curl_put(f"{stack.url}/webdav/{SITE}/{EST}/", account["login"], account["password"], export)
    assert put.status == 201
    with httpx.Client(auth=(account["login"], account["password"]), timeout=10) as dav:
        assert dav.get(f"{stack.url}/webdav/{SITE}/{EST}/EDT_To_KOSMOS.xml").content == export.read_bytes()
    wanted = {("source.download", token_id), ("unreconciled.read", token_id), ("preview.read", token_id),
              ("webdav.read", account["login"])}
    items = wait_log(api, lambda items: wanted <= {(e["action"], e["actor"]) for e in items})
    assert wanted <= {(e["action"], e["actor"]) for e in items}
    by_action = {e["action"]: e for e in items}
    assert by_action["source.download"]["import_id"] == done["id"] and by_action["source.download"]["at"]
    assert by_action["unreconciled.read"]["resource"].endswith("kind=students")
    assert by_action["webdav.read"]["actor_kind"] == "account"
    assert (by_action["preview.read"]["actor_kind"], by_action["preview.read"]["service"]) == ("site_token",
                                                                                               "reconciler")
    # a page at a time, newest first
    first_page = api.ok("GET", "/ops/access-log", params={"limit": 2})
    assert len(first_page["items"]) == 2 and first_page["next_cursor"]
    rest = api.ok("GET", "/ops/access-log", params={"limit": 500, "cursor": first_page["next_cursor"]})
    assert rest["items"] and max(e["id"] for e in rest["items"]) < min(e["id"] for e in first_page["items"])


def test_a_service_answering_too_late_is_named_and_its_sealed_answer_is_not_left_behind(tmp_path: Path) -> None:
    with database("sqlite", tmp_path) as url:
        stacks = start_stack(tmp_path, url, EDT_PRIVACY_TIMEOUT_S="0.001")
        stack = next(stacks)
        try:
            school, data = school_export()
            directory = setup(stack.api, school.timetable)
            stack.api.first_import(SITE, EST, data)
            blob_dir = stack.settings.blob_dir

            def blobs() -> set[Path]:
                return {p for p in blob_dir.rglob("*") if p.is_file() and p.parent.name != "tmp"}

            before = blobs()
            ent = directory.body["persons"][0]["id"]
            late = stack.api.call("GET", f"/sites/{SITE}/persons/{ent}")
            assert late.status_code == 504 and late.json()["code"] == "privacy_unanswered"
            assert late.json()["missing"] == ["reconciler"] and "Sans réponse de" in late.json()["detail"]
            deadline = time.monotonic() + 15
            while not blobs() - before:  # the reconciler's answer comes anyway, sealed
                assert time.monotonic() < deadline, "the late answer never came"
                time.sleep(0.05)
            # the notifier's purge (the periodic one, here through the run it starts with) deletes it
            assert stack.api.call("POST", "/ops/retention/run").status_code == 504
            assert blobs() == before
        finally:
            stacks.close()
