"""After real-like exports are imported (WebDAV and REST, with their ENT directory), no file under the data
directory or the blob store — the WebDAV folder included — holds a student's or a teacher's name in clear,
and the application logs hold none (docs/privacy.md). The database is the one place names are kept, where
reconciliation needs them. Embedded mode here; the distributed twin is tests/e2e/test_privacy_distributed.py.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from pathlib import Path

import pytest

from tests.factory import make_school
from tests.factory.directory import make_directory
from tests.factory.real import CORPUS, corpus_dir, to_school_year
from tests.harness import curl_put
from tests.integration.conftest import Stack

SITE, EST, UAI = "4817", "1754", "0490856P"
MIN_NAME = 6  # a shorter name could appear by chance in sealed (random-looking) bytes


def names_in(export: bytes) -> set[bytes]:
    """The people's last names an export carries (students, teachers, staff, parents), as they are written."""
    found = set(re.findall(rb'<(?:Eleve|Professeur|Personnel|Responsable)\b[^>]*?\bNom="([^"]+)"', export))
    return {n for n in found if len(n) >= MIN_NAME}


def files_under(*roots: Path) -> Iterable[Path]:
    for root in roots:
        yield from (p for p in root.rglob("*") if p.is_file())


def leaks(names: set[bytes], *roots: Path) -> list[tuple[str, str]]:
    out = []
    for path in files_under(*roots):
        data = path.read_bytes()
        out += [(str(path), n.decode()) for n in names if n in data]
    return out


def real_exports() -> list[bytes]:
    """The clear real exports of tests/fixtures/real when they are there (they are not in the repository)."""
    root = corpus_dir()
    return [to_school_year((root / f.path).read_bytes()) for f in CORPUS
            if f.kind == "clear" and f.uai == "0134567A" and (root / f.path).is_file()][:1]


def test_no_name_in_clear_on_disk_nor_in_the_logs(sqlite_stack: Stack, tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)  # what a service logs in production (EDT_LOG_LEVEL)
    stack, api = sqlite_stack, sqlite_stack.api
    school = make_school("S", 11, uai=UAI, newer=True)  # Responsables, Personnels, homonyms, empty dates
    first, follow = school.to_xml_bytes(), make_school("S", 11, uai=UAI, newer=True, changes=5).to_xml_bytes()
    names = names_in(first)
    assert len(names) > 100
    api.create_site(SITE, {EST: UAI, "1755": "0134567A"})
    directory = make_directory(school.timetable, unrelated=50)
    api.ok("PUT", f"/sites/{SITE}/establishments/{EST}/directory", json=directory.body)
    api.ok("POST", f"/sites/{SITE}/establishments/{EST}/pronote-ids?mode=complete", json=directory.associations)
    done = api.first_import(SITE, EST, first)
    account = api.create_account(SITE)
    export = tmp_path / "exports" / f"EDT_To_KOSMOS_{UAI}.xml"
    export.parent.mkdir()
    export.write_bytes(follow)
    put = curl_put(f"{stack.url}/webdav/{SITE}/{EST}/", account["login"], account["password"], export)
    assert put.status == 201 and put.import_id
    assert api.wait(put.import_id)["status"] == "done"
    for real in real_exports():  # a real export too, when the corpus is there
        names |= names_in(real)
        assert api.wait(api.upload(SITE, "1755", real, name="Edt_To_LaclasseCom_0134567A.xml"))["status"] == "done"
    # what a school reads back: the lists, the source (each read logged, never the content itself)
    assert api.call("GET", f"/imports/{done['id']}/unreconciled", params={"kind": "students"}).status_code == 200
    assert api.call("GET", f"/imports/{done['id']}/source").status_code == 200
    export.unlink()

    data_dir, blob_dir = stack.settings.data_dir, stack.settings.blob_dir
    assert any(files_under(blob_dir)) and any(files_under(data_dir / "webdav"))  # there is something to scan
    assert leaks(names, data_dir, blob_dir) == []
    logged = "\n".join(caplog.text.splitlines() + [r.getMessage() for r in caplog.records])
    assert "deposit" in logged  # the services did log
    assert [n.decode() for n in names if n.decode() in logged] == []
