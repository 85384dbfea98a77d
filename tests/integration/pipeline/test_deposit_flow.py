"""A deposit travels through the five stages to `done`, seen through the REST API only; admission
(one import per establishment, queue positions, supersede, identical re-deposit). SQLite and PostgreSQL."""

from __future__ import annotations

import io
import time
import zipfile

import pytest

from shared.messages import StageCommand
from shared.observability import MESSAGES
from tests.harness import sample_xml
from tests.integration.conftest import Stack

pytestmark = [pytest.mark.long]

SITE = "4817"
ESTS = {"1754": "0490856P", "4817": "0490857R", "9001": "0490858S"}


def setup_site(stack: Stack) -> None:
    stack.api.create_site(SITE, ESTS, "Cité scolaire Colt-Emanche")


def test_rest_upload_travels_every_stage_to_done(stack: Stack) -> None:
    setup_site(stack)
    import_id = stack.api.upload(SITE, "1754", sample_xml("0490856P"), name="EDT_To_KOSMOS_0490856P.xml")
    done = stack.api.wait(import_id)
    assert done["status"] == "done"
    assert done["label"] == "Fait" and done["label_detail"] == "Import réalisé avec succès"
    assert [s["stage"] for s in done["steps"]] == ["deposit", "validation", "thresholds", "groups", "sessions"]
    assert done["steps"][0]["status"] == "ok"
    # The factory's school carries the oddities real files do: validation passes with warnings.
    validation = done["steps"][1]
    assert validation["status"] == "warning" and "avertissement" in validation["message"]
    # A first import has no baseline: everything is "created" (100 %), shown as alerts, never blocking
    # a manual import.
    assert done["steps"][2]["status"] == "warning"
    # Reconciliation: no ENT directory uploaded, so nothing matched —
    # a warning saying so, never a fake ok.
    assert done["steps"][3]["status"] == "warning" and "No ENT directory" in done["steps"][3]["message_en"]
    assert done["counts"]["groups"]["students"] == {"matched": 0, "unmatched": 60}
    assert done["steps"][4]["status"] == "ok"
    assert all(s["started_at"] and s["ended_at"] for s in done["steps"])
    assert set(done["counts"]) == {"validation", "thresholds", "groups", "sessions"}
    assert done["counts"]["validation"]["students"] == 60 and done["counts"]["sessions"]["sessions"] > 0
    assert {a["stage"] for a in done["alerts"]} == {"validation", "thresholds"}
    assert done["queue_position"] is None and done["progress"] == 100
    assert done["file"]["name"] == "EDT_To_KOSMOS_0490856P.xml" and done["file"]["size"] > 0
    assert done["mode"] == "manual" and done["establishment"] == "1754"
    history = stack.api.history(SITE)
    assert [h["id"] for h in history] == [import_id]


def test_second_deposit_waits_behind_the_first_with_queue_position_1(stack: Stack) -> None:
    setup_site(stack)
    stack.pause("edt.validate")
    first = stack.api.upload(SITE, "1754", sample_xml("0490856P"))
    assert stack.api.wait(first, {"received"})["queue_position"] is None
    second = stack.api.upload(SITE, "1754", sample_xml("0490856P"))
    waiting = stack.api.wait(second, {"waiting"})
    assert waiting["queue_position"] == 1
    assert waiting["eta_s"] is not None and waiting["eta_s"] > 0
    assert waiting["label"] == "En attente"
    stack.resume("edt.validate")
    a, b = stack.api.wait(first), stack.api.wait(second)
    assert a["status"] == b["status"] == "done"
    assert b["started_at"] >= a["ended_at"], "one import in flight per establishment"


def test_newer_deposit_supersedes_a_waiting_one(stack: Stack) -> None:
    setup_site(stack)
    stack.pause("edt.validate")
    running = stack.api.upload(SITE, "1754", sample_xml("0490856P"))
    stack.api.wait(running, {"received"})
    older = stack.api.upload(SITE, "1754", sample_xml("0490856P"))
    stack.api.wait(older, {"waiting"})
    newer = stack.api.upload(SITE, "1754", sample_xml("0490856P"))
    superseded = stack.api.wait(older, {"superseded"})
    assert superseded["superseded_by"] == newer
    assert stack.api.get_import(newer)["queue_position"] == 1
    stack.resume("edt.validate")
    assert stack.api.wait(running)["status"] == "done"
    assert stack.api.wait(newer)["status"] == "done"
    assert stack.api.get_import(older)["status"] == "superseded"


def test_identical_redeposit_ends_done_with_no_change(stack: Stack) -> None:
    setup_site(stack)
    data = sample_xml("0490856P", marker="same")
    stack.api.first_import(SITE, "1754", data)
    again = stack.api.wait(stack.api.upload(SITE, "1754", data))
    assert again["status"] == "done" and again["no_change"] is True
    assert "Aucun changement" in again["message"]
    assert [s["status"] for s in again["steps"][1:]] == ["pending"] * 4, "no stage ran"


def test_queue_positions_with_three_establishments(stack: Stack) -> None:
    setup_site(stack)
    stack.pause("edt.validate")
    running = {est: stack.api.upload(SITE, est, sample_xml(uai)) for est, uai in ESTS.items()}
    for import_id in running.values():
        stack.api.wait(import_id, {"received"})
    waiting = {est: stack.api.upload(SITE, est, sample_xml(uai)) for est, uai in ESTS.items()}
    positions = {est: stack.api.wait(i, {"waiting"})["queue_position"] for est, i in waiting.items()}
    # Each waits for its own establishment's import; those finish in the order they started.
    assert positions == {"1754": 1, "4817": 2, "9001": 3}
    listed = {h["id"]: h["queue_position"] for h in stack.api.history(SITE, status="waiting")}
    assert listed == {waiting[e]: p for e, p in positions.items()}
    stack.resume("edt.validate")
    for import_id in [*running.values(), *waiting.values()]:
        assert stack.api.wait(import_id)["status"] == "done"


def test_site_url_deposit_is_routed_by_uai(stack: Stack) -> None:
    setup_site(stack)
    routed = stack.api.wait(stack.api.upload(SITE, None, sample_xml("0490857R")))
    assert routed["establishment"] == "4817" and routed["status"] == "done"
    unknown = stack.api.wait(stack.api.upload(SITE, None, sample_xml("0999999Z")))
    assert unknown["status"] == "rejected" and unknown["label"] == "Interrompu"
    assert "0999999Z" in unknown["message"] and unknown["steps"][0]["status"] == "error"
    shared_file = sample_xml("0490856P", establishments=["0490856P", "0490857R"])
    site_wide = stack.api.wait(stack.api.upload(SITE, None, shared_file))
    assert site_wide["establishment"] is None and site_wide["establishment_label"] == "Tous"
    assert site_wide["establishments"] == {"1754": "0490856P", "4817": "0490857R"}


def test_the_history_names_each_establishment_and_follows_a_rename(stack: Stack) -> None:
    setup_site(stack)
    done = stack.api.wait(stack.api.upload(SITE, "1754", sample_xml("0490856P")))
    assert done["establishment_label"] == "Etab 1754"  # the name, not the id
    assert stack.api.history(SITE)[0]["establishment_label"] == "Etab 1754"
    assert stack.api.ok("GET", f"/imports/{done['id']}/report")["establishment_label"] == "Etab 1754"
    stack.api.ok("PUT", f"/sites/{SITE}/establishments/1754", json={"uai": "0490856P", "name": "Collège Jean Moulin"})
    deadline = time.monotonic() + 10  # the notifier learns it from the dropzone's EstablishmentUpdated event
    while stack.api.get_import(done["id"])["establishment_label"] != "Collège Jean Moulin":
        assert time.monotonic() < deadline, "the rename never reached the history"
        time.sleep(0.05)


def test_site_wide_import_excludes_the_site_establishments(stack: Stack) -> None:
    setup_site(stack)
    stack.pause("edt.validate")
    one = stack.api.upload(SITE, "1754", sample_xml("0490856P"))
    stack.api.wait(one, {"received"})
    shared_file = sample_xml("0490856P", establishments=["0490856P", "0490857R"])
    site_wide = stack.api.upload(SITE, None, shared_file)
    assert stack.api.wait(site_wide, {"waiting"})["queue_position"] == 1
    other = stack.api.upload(SITE, "9001", sample_xml("0490858S"))
    # Admission is fair but never lets another import of the site run beside a site-wide one.
    assert stack.api.wait(other, {"received", "waiting"})["status"] in {"received", "waiting"}
    stack.resume("edt.validate")
    for i in (one, site_wide, other):
        assert stack.api.wait(i)["status"] == "done"


def test_redelivered_stage_command_changes_nothing(stack: Stack) -> None:
    setup_site(stack)
    import_id = stack.api.upload(SITE, "1754", sample_xml("0490856P"))
    before = stack.api.wait(import_id)
    # Deliver the thresholds command of a finished import again, as a broker would after a crash.
    cmd = StageCommand(import_id=import_id, site=SITE, establishment="1754", mode="manual",
                       file=before["file"], received_at=before["created_at"], started_at=before["started_at"])
    duplicates = MESSAGES.labels("thresholds", "edt.thresholds", "duplicate")._value.get()
    stack.run(stack.runtime.bus.publish("", "edt.thresholds", cmd.to_bytes()))
    stack.drain()  # handled (the bus is empty and idle): recognised as a duplicate, dropped
    assert MESSAGES.labels("thresholds", "edt.thresholds", "duplicate")._value.get() == duplicates + 1
    after = stack.api.get_import(import_id)
    assert after["steps"] == before["steps"] and after["status"] == "done"
    assert len(stack.api.history(SITE)) == 1


def test_history_filters_and_cursor(stack: Stack) -> None:
    setup_site(stack)
    ids = [stack.api.wait(stack.api.upload(SITE, "1754", sample_xml("0490856P"), mode=m))["id"]
           for m in ("manual", "auto", "auto")]
    page1 = stack.api.ok("GET", f"/sites/{SITE}/imports", params={"limit": 2})
    assert len(page1["items"]) == 2 and page1["next_cursor"]
    page2 = stack.api.ok("GET", f"/sites/{SITE}/imports", params={"limit": 2, "cursor": page1["next_cursor"]})
    assert [i["id"] for i in page1["items"] + page2["items"]] == ids[::-1] and page2["next_cursor"] is None
    assert {i["id"] for i in stack.api.history(SITE, mode="auto")} == set(ids[1:])
    assert stack.api.history(SITE, establishment="4817") == []
    bad = stack.api.call("GET", f"/sites/{SITE}/imports", params={"status": "nope"})
    assert bad.status_code == 400 and bad.headers["content-type"] == "application/problem+json"


def test_source_download_and_report(stack: Stack) -> None:
    setup_site(stack)
    data = sample_xml("0490856P")
    import_id = stack.api.upload(SITE, "1754", data, name="EDT_To_KOSMOS_0490856P.xml")
    stack.api.wait(import_id)
    r = stack.api.call("GET", f"/imports/{import_id}/source")
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
        assert zf.read("EDT_To_KOSMOS_0490856P.xml") == data
    assert stack.api.call("GET", f"/imports/{import_id}/source", params={"raw": "true"}).content == data
    report = stack.api.ok("GET", f"/imports/{import_id}/report")
    assert report["status"] == "done"
    created = next(a for a in report["actions"] if a["action"] == "sessions_created")
    assert created["success"] > 0 and created["error"] == 0
    assert report["total_tasks"] == sum(a["success"] + a["error"] for a in report["actions"])


def test_server_sent_events_replay_an_import(stack: Stack) -> None:
    setup_site(stack)
    import_id = stack.api.upload(SITE, "1754", sample_xml("0490856P"))
    stack.api.wait(import_id)
    with stack.api.client() as c:
        r = c.get(f"/api/v1/imports/{import_id}/events", params={"once": "true"})
    assert r.headers["content-type"].startswith("text/event-stream")
    statuses = [line.split('"status": "')[1].split('"')[0] for line in r.text.splitlines() if line.startswith("data:")]
    assert statuses[0] == "waiting" and statuses[-1] == "done"
    assert "validating" in statuses and "generating_sessions" in statuses


def test_upload_over_the_size_cap_is_413_and_stores_nothing(stack: Stack) -> None:
    setup_site(stack)
    big = b"<x>" + b"a" * (3 * 1024 * 1024) + b"</x>"
    r = stack.api.call("POST", f"/sites/{SITE}/establishments/1754/imports",
                       files={"file": ("big.xml", big, "application/xml")}, data={"mode": "manual"})
    assert r.status_code == 413 and r.headers["content-type"] == "application/problem+json"
    assert stack.api.history(SITE) == []
