"""Read-your-writes (design.md §5): the import an upload (202, Location) or a WebDAV PUT (201, X-Import-Id)
makes is readable and listed before that answer is sent, and the establishment's settings are locked from
that same moment — on SQLite and PostgreSQL, in one process (the distributed twin is in tests/e2e)."""

from __future__ import annotations

import time
from pathlib import Path

from tests.harness import curl_put, sample_xml
from tests.integration.conftest import Stack

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
