"""Personal data in the distributed deployment (six processes on RabbitMQ and PostgreSQL behind nginx): the
retention run, a person's export and erasure fan out to the services through the broker and come back
confirmed; after a real-like export's import no file under the data directory holds a name in clear, and
no process's log names anyone (docs/privacy.md)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tests.e2e.conftest import E2E
from tests.factory import make_school
from tests.factory.directory import make_directory
from tests.harness import curl_put
from tests.integration.pipeline.test_personal_data_at_rest import leaks, names_in

pytestmark = [pytest.mark.e2e]


def test_privacy_requests_fan_out_and_nothing_is_in_clear(cluster: E2E, tmp_path: Path) -> None:
    api = cluster.api
    site, est, uai = f"p{uuid.uuid4().hex[:8]}", "1754", "0490856P"
    school = make_school("XS", 23, uai=uai, newer=True)
    data = school.to_xml_bytes()
    names = names_in(data)
    api.create_site(site, {est: uai})
    directory = make_directory(school.timetable, missing=0.0, unrelated=10)
    api.ok("PUT", f"/sites/{site}/establishments/{est}/directory", json=directory.body)
    api.first_import(site, est, data)
    account = api.create_account(site)
    export = tmp_path / f"EDT_To_KOSMOS_{uai}.xml"
    export.write_bytes(make_school("XS", 23, uai=uai, newer=True, changes=5).to_xml_bytes())
    put = curl_put(f"{cluster.base_url}/webdav/{site}/{est}/", account["login"], account["password"], export)
    assert put.status == 201 and put.import_id
    assert api.wait(put.import_id, timeout=60)["status"] == "done"
    export.unlink()

    run = api.ok("POST", "/ops/retention/run")
    assert set(run["services"]) == {"dropzone", "validator", "reconciler", "notifier"}

    student = next(p for p in directory.body["persons"] if p["kind"] == "student")
    exported = api.ok("GET", f"/sites/{site}/persons/{student['id']}")
    assert exported["held"]["reconciler"]["directory"][0]["last_name"] == student["last_name"]
    assert exported["file_idents"] and exported["held"]["scheduler"]["timetable_people"]
    erased = api.ok("DELETE", f"/sites/{site}/persons/{student['id']}")
    assert erased["confirmed_by"] == ["reconciler", "scheduler", "validator"]
    assert api.call("GET", f"/sites/{site}/persons/{student['id']}").status_code == 404
    assert {"person.export", "person.erase"} <= {e["action"] for e in api.ok(
        "GET", "/ops/access-log", params={"site": site})["items"]}

    logs = cluster.data_dir / "logs"
    assert sorted(p.name for p in logs.glob("*.log"))  # every process's own log
    assert leaks(names, cluster.data_dir) == []  # blobs, WebDAV folder, logs, nginx's files
