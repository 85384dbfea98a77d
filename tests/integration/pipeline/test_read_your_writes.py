"""Read-your-writes (design.md §5): the import an upload (202, Location) or a WebDAV PUT (201, X-Import-Id)
makes is readable and listed before that answer is sent, and the establishment's settings are locked from
that same moment; when the history cannot record it in time, no id is handed out (504) — in one process (the
distributed twins are in tests/e2e)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import curl_put, database, sample_xml
from tests.integration.conftest import Stack, start_stack

SITE, EST, UAI = "4817", "1754", "0490856P"


def test_an_upload_is_readable_listed_and_locks_the_settings_before_its_202(stack: Stack) -> None:
    api = stack.api
    api.create_site(SITE, {EST: UAI})
    stack.pause("edt.validate")  # the import stays in flight: only the answer's own guarantees are tested
    try:
        r = api.call("POST", f"/sites/{SITE}/establishments/{EST}/imports",
                     files={"file": ("EDT.xml", sample_xml(UAI), "application/xml")}, data={"mode": "manual"})
        assert r.status_code == 202
        import_id = r.json()["import_id"]
        assert r.headers["location"] == f"/api/v1/imports/{import_id}"
        # the very next requests, no wait: readable, listed, and the settings locked
        assert api.call("GET", f"/imports/{import_id}").status_code == 200
        assert import_id in [i["id"] for i in api.history(SITE)]
        locked = api.call("PUT", f"/sites/{SITE}/thresholds", json={"controls": {"courses_created": {"value": 80}}})
        assert locked.status_code == 423 and locked.headers["content-type"].startswith("application/problem+json")
        closures = api.call("PUT", f"/sites/{SITE}/establishments/{EST}/closures",
                            json=[{"start": "2027-02-15", "end": "2027-02-19", "label": "Hiver"}])
        assert closures.status_code == 423
    finally:
        stack.resume("edt.validate")
    assert api.wait(import_id)["status"] == "done"
    assert api.call("PUT", f"/sites/{SITE}/thresholds",
                    json={"controls": {"courses_created": {"value": 80}}}).status_code == 200  # unlocked again


def test_a_webdav_put_names_its_import_which_is_listed_before_its_answer(stack: Stack, tmp_path: Path) -> None:
    api = stack.api
    api.create_site(SITE, {EST: UAI})
    api.first_import(SITE, EST, sample_xml(UAI, marker="first"))
    account = api.create_account(SITE)
    path = tmp_path / "EDT_To_KOSMOS_0490856P.xml"
    for n in range(3):  # the same name every time, as the export of each morning: 201, then 204 (overwritten)
        path.write_bytes(sample_xml(UAI, marker=f"put-{n}"))
        put = curl_put(f"{stack.url}/webdav/{SITE}/{EST}/{path.name}", account["login"], account["password"], path)
        assert put.status == (201 if n == 0 else 204) and put.import_id
        assert api.call("GET", f"/imports/{put.import_id}").status_code == 200
        assert api.history(SITE)[0]["id"] == put.import_id
        assert api.wait(put.import_id)["status"] == "done"


@pytest.fixture
def impatient_stack(tmp_path: Path) -> Iterator[Stack]:
    """A deposit waits 1 s (EDT_DEPOSIT_ACK_TIMEOUT_S) for the services to record it."""
    with database("sqlite", tmp_path) as url:
        yield from start_stack(tmp_path, url, EDT_DEPOSIT_ACK_TIMEOUT_S="1")


def test_a_deposit_the_history_cannot_record_in_time_gets_504_and_no_id_then_appears(
        impatient_stack: Stack, tmp_path: Path) -> None:
    """The notifier holds the deposits' events (their queue paused, as when it is down or swamped): an upload
    and a WebDAV PUT are kept, but answered 504 with the cause instead of an id that would answer 404. Once
    the notifier reads its queue again, both are listed and go through."""
    stack, api = impatient_stack, impatient_stack.api
    api.create_site(SITE, {EST: UAI, "4818": "0490857R"})
    api.first_import(SITE, EST, sample_xml(UAI, marker="first"))
    account = api.create_account(SITE)
    path = tmp_path / "EDT_To_KOSMOS_0490856P.xml"
    path.write_bytes(sample_xml(UAI, marker="while-held"))
    before = {item["id"] for item in api.history(SITE)}
    stack.pause("edt.notifier.deposits")
    try:
        r = api.call("POST", f"/sites/{SITE}/establishments/4818/imports",
                     files={"file": ("EDT.xml", sample_xml("0490857R"), "application/xml")}, data={"mode": "manual"})
        assert r.status_code == 504 and r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["code"] == "deposit_not_listed" and "inutile de le déposer à nouveau" in r.json()["detail"]
        assert "location" not in r.headers and "import_id" not in r.json()
        put = curl_put(f"{stack.url}/webdav/{SITE}/{EST}/{path.name}", account["login"], account["password"], path)
        assert put.status == 504 and put.import_id is None
    finally:
        stack.resume("edt.notifier.deposits")
    stack.drain()
    held = [item for item in api.history(SITE) if item["id"] not in before]
    assert sorted(item["source"] for item in held) == ["rest", "webdav"]
    assert [api.wait(item["id"])["status"] for item in held] == ["done", "done"]


def test_a_deposit_account_asked_for_as_the_first_import_shows_done_is_created(stack: Stack) -> None:
    """The dropzone hears of the site's first import (import.history.done) a moment after the history shows
    it `done`; an account asked for in that moment waits for it instead of being refused (409). The moment
    is held open by pausing the dropzone's lifecycle queue; it is resumed half a second after the request
    left (well within EDT_IMPORT_END_WAIT_S; a dropzone that did not wait answers 409 long before)."""
    import threading

    api = stack.api
    api.create_site(SITE, {EST: UAI})
    stack.pause("edt.dropzone.lifecycle")
    resume = threading.Timer(0.5, stack.resume, ("edt.dropzone.lifecycle",))
    try:
        assert api.wait(api.upload(SITE, EST, sample_xml(UAI, marker="first")))["status"] == "done"
        # The end is published a moment after the history shows it (the outbox relays it after the commit):
        # until it waits in the paused queue, unread by the dropzone.
        deadline = time.monotonic() + 10
        while stack.queue_depth("edt.dropzone.lifecycle") < 1:
            assert time.monotonic() < deadline, "the import's end never reached the dropzone's queue"
            time.sleep(0.01)
        resume.start()
        r = api.call("POST", f"/sites/{SITE}/accounts", json={"first_name": "Thibault", "last_name": "Bourgeois"})
    finally:
        if resume.is_alive() or resume.finished.is_set():  # started (an assertion above may have failed first)
            resume.join(10)
        stack.resume("edt.dropzone.lifecycle")
    assert r.status_code == 201, r.text
