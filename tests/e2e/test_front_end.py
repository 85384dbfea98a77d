"""What a front-end relies on, in distributed mode (six processes behind nginx, RabbitMQ, PostgreSQL): an
import readable right after its 202 (with the figures), a revoked token refused at once by every service,
the change stream fed from edt.changes, names on sessions, iCal subscriptions, abort and undo. The embedded
twins are in tests/integration."""

from __future__ import annotations

import json
import os
import signal
import statistics
import threading
import time
import uuid

import httpx
import pytest

from tests.e2e.conftest import E2E
from tests.factory import make_school
from tests.harness import sample_xml
from tests.integration.pipeline.test_site_tokens import check_revocation_reaches_every_service

pytestmark = [pytest.mark.e2e]
EST, UAI = "1754", "0490856P"


def new_site(e2e: E2E) -> str:
    site = f"s{uuid.uuid4().hex[:8]}"
    e2e.api.create_site(site, {EST: UAI})
    return site


def test_an_upload_is_readable_at_once_through_nginx(cluster: E2E) -> None:
    api, site = cluster.api, new_site(cluster)
    answered, readable = [], []
    with httpx.Client(base_url=cluster.base_url, timeout=60, trust_env=False,
                      headers={"Authorization": f"Bearer {cluster.admin_token}"}) as client:
        for n in range(5):
            started = time.perf_counter()
            r = client.post(f"/api/v1/sites/{site}/establishments/{EST}/imports",
                            files={"file": ("EDT.xml", sample_xml(UAI, marker=f"e2e-ryw-{n}"), "application/xml")},
                            data={"mode": "manual"})
            got = time.perf_counter()
            assert r.status_code == 202, r.text
            first = client.get(r.headers["location"])  # the first answer counts: never a 404 or a 502
            readable.append(time.perf_counter() - got)
            answered.append(got - started)
            assert first.status_code == 200, first.text
            listed = client.get(f"/api/v1/sites/{site}/imports").json()["items"]
            assert listed[0]["id"] == r.json()["import_id"]
            api.wait(r.json()["import_id"], timeout=60)
    print(f"\n[distributed] 202 answered p50 {statistics.median(answered) * 1000:.0f} ms, first GET after it "
          f"p50 {statistics.median(readable) * 1000:.0f} ms, 0 of {len(answered)} not readable")


def test_a_revoked_token_is_refused_at_once_by_every_service_process(cluster: E2E) -> None:
    elapsed = check_revocation_reaches_every_service(cluster.api, f"s{uuid.uuid4().hex[:8]}")
    print(f"\n[distributed] revocation acknowledged by every service in {elapsed * 1000:.0f} ms")


def test_change_stream_names_and_subscriptions_through_nginx(cluster: E2E) -> None:
    api, site = cluster.api, new_site(cluster)
    school = make_school("XS", 11, uai=UAI)
    done = api.wait(api.upload(site, EST, school.to_xml_bytes()), {"done"}, timeout=60)
    deadline = time.monotonic() + 10  # change events travel on their own queue: a moment after `done`
    while True:
        r = api.call("GET", f"/sites/{site}/changes", params={"once": "true"})
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = [json.loads(line[5:]) for line in r.text.splitlines() if line.startswith("data:")]
        if events and events[-1]["batch"] == events[-1]["batches"]:
            break
        assert time.monotonic() < deadline, events
        time.sleep(0.05)
    assert {e["import_id"] for e in events} == {done["id"]} and len(events) == events[0]["batches"]
    page = api.ok("GET", f"/sites/{site}/establishments/{EST}/sessions", params={"limit": 5})["items"]
    assert page and all(len(s["names"]["rooms"]) == len(s["rooms"]) and s["names"]["course"] for s in page)
    klass = sorted(school.timetable.classes)[0]
    bad = api.call("GET", f"/sites/{site}/establishments/{EST}/sessions",
                   params={"class": school.timetable.classes[klass].name})
    assert bad.status_code == 422 and bad.json()["matches"][0]["id"] == klass
    sub = api.ok("POST", f"/sites/{site}/establishments/{EST}/calendar/class/{klass}/subscription")
    feed = httpx.get(sub["url"], timeout=30, trust_env=False)
    assert feed.status_code == 200 and b"BEGIN:VEVENT" in feed.content
    assert httpx.get(sub["url"], headers={"If-None-Match": feed.headers["etag"]}, timeout=30,
                     trust_env=False).status_code == 304
    assert api.call("DELETE", f"/sites/{site}/establishments/{EST}/calendar/class/{klass}/subscription").status_code \
        == 204
    assert httpx.get(sub["url"], timeout=30, trust_env=False).status_code == 404


def test_abort_and_undo_through_nginx(cluster: E2E) -> None:
    api, site = cluster.api, new_site(cluster)
    first = api.wait(api.upload(site, EST, make_school("XS", 12, uai=UAI).to_xml_bytes()), {"done"}, timeout=60)
    second = api.wait(api.upload(site, EST, make_school("XS", 12, uai=UAI, changes=30).to_xml_bytes()), {"done"},
                      timeout=60)
    assert api.call("POST", f"/imports/{first['id']}/undo").status_code == 409
    undo = api.ok("POST", f"/imports/{second['id']}/undo")["import_id"]
    undone = api.wait(undo, timeout=60)
    assert undone["status"] == "done" and undone["mode"] == "undo" and undone["undo_of"] == second["id"]
    assert api.call("POST", f"/imports/{undo}/abort").status_code == 409  # ended

    # the validator process holds its command (SIGSTOP): one import in flight, the next waiting behind it
    pids = [cluster.cluster.pids[name] for name in cluster.cluster.names("validator")]
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        running = api.upload(site, EST, make_school("XS", 12, uai=UAI, changes=10).to_xml_bytes())
        api.wait(running, {"received"})
        waiting = api.upload(site, EST, make_school("XS", 12, uai=UAI, changes=20).to_xml_bytes())
        r = api.call("POST", f"/imports/{waiting}/abort")
        assert r.status_code == 200 and r.json()["status"] == "cancelled"
        answer: list[httpx.Response] = []
        asking = threading.Thread(target=lambda: answer.append(api.call("POST", f"/imports/{running}/abort")))
        asking.start()  # answered once every stage service recorded it: the validator once it runs again
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
    asking.join(60)
    # 202: it stops at its next stage boundary — or 200 when it has stopped by the time of the answer
    assert answer and answer[0].status_code in (200, 202) and answer[0].json()["abort_requested_at"], answer
    final = api.wait(running, timeout=60)
    assert final["status"] == "cancelled" and final["label"] == "Interrompu", final
