"""Every real export through the real pipeline, as a school's would go: the ENT directory uploaded, a first
import by hand over REST, then the automatic deposit over WebDAV — each ending `done` with the warnings the
file deserves, and exactly the sessions an independent reading of the file counts (README: how they were
counted). The encrypted ones, for which no key is public, end with the precise key rejection."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from services.validator.domain import parse_export
from tests.factory.directory import make_directory
from tests.factory.real import CORPUS, RealFile, to_school_year
from tests.harness import Put, curl_put, database
from tests.integration.conftest import Stack, start_stack
from tests.real.conftest import check_provenance

CLEAR = [f for f in CORPUS if f.kind == "clear"]
ENCRYPTED = [f for f in CORPUS if f.kind == "encrypted"]


@pytest.fixture
def product(tmp_path: Path) -> Iterator[Stack]:
    with database("sqlite", tmp_path) as url:
        yield from start_stack(tmp_path, url, max_upload_mb="20")


def webdav_put(stack: Stack, account: dict[str, str], folder: str, name: str, data: bytes, tmp: Path) -> Put:
    path = tmp / name
    path.write_bytes(data)
    return curl_put(f"{stack.url}/webdav/{folder}/{name}", account["login"], account["password"], path)


def action(item: dict, name: str) -> int:
    return next(int(a["success"]) for a in item["actions"] if a["action"] == name)


@pytest.mark.parametrize("real", CLEAR, ids=[f.path.rsplit("/", 1)[-1] for f in CLEAR])
def test_real_clear_export_goes_through_over_rest_then_webdav(product: Stack, corpus: Path, real: RealFile,
                                                              tmp_path: Path) -> None:
    api = product.api
    data = to_school_year(check_provenance(corpus, real).read_bytes())
    parsed = tmp_path / "parsed.xml"
    parsed.write_bytes(data)
    tt = parse_export(parsed, partner_name="EDT-IMPORT", private_key=None).timetable
    assert tt is not None and len(tt.students) == real.students
    api.create_site("4817", {"1754": real.uai})
    directory = make_directory(tt)
    api.ok("PUT", "/sites/4817/establishments/1754/directory", json=directory.body)
    api.ok("POST", "/sites/4817/establishments/1754/pronote-ids?mode=complete", json=directory.associations)

    # the first import, by hand (REST)
    first = api.wait(api.upload("4817", "1754", data, name=Path(real.path).name), timeout=120)
    assert first["status"] == "done", (first["status"], first["message"])
    warnings = {a.get("code") for a in first["alerts"] if a.get("stage") == "validation"}
    assert real.warnings <= warnings, warnings
    report = api.ok("GET", f"/imports/{first['id']}/report")
    assert action(report, "sessions_created") == real.sessions  # the independent count
    assert action(report, "sessions_deleted") == 0

    # the automatic export of the next morning: the same timetable, written again (other bytes)
    account = api.create_account("4817")
    again = data + b"<!-- export automatique -->\n"
    put = webdav_put(product, account, "4817/1754", "EDT_To_KOSMOS_" + real.uai + ".xml", again, tmp_path)
    assert put.status == 201 and put.import_id
    auto = api.wait(put.import_id, timeout=120)
    assert auto["status"] == "done" and auto["mode"] == "auto", (auto["status"], auto["message"])
    assert [s["status"] for s in auto["steps"]][1] == "warning"  # validated again, same warnings
    report = api.ok("GET", f"/imports/{auto['id']}/report")
    assert (action(report, "sessions_created"), action(report, "sessions_updated"),
            action(report, "sessions_deleted")) == (0, 0, 0)
    page = api.ok("GET", "/sites/4817/establishments/1754/sessions", params={"limit": 1})
    assert page["items"], "sessions are readable"


@pytest.mark.parametrize("real", ENCRYPTED, ids=[f.path.rsplit("/", 1)[-1] for f in ENCRYPTED])
def test_real_encrypted_export_without_its_key_is_refused_naming_the_partners(
        product: Stack, corpus: Path, real: RealFile, tmp_path: Path) -> None:
    api = product.api
    data = check_provenance(corpus, real).read_bytes()
    api.create_site("4817", {"1754": real.uai})
    item = api.wait(api.upload("4817", "1754", data, name=Path(real.path).name), timeout=60)
    assert item["status"] == "rejected"
    errors = [a for a in item["alerts"] if a.get("severity") == "error"]
    assert [a["code"] for a in errors] == ["key_absent"]
    assert all(p in errors[0]["message"] for p in real.partners), errors[0]["message"]
