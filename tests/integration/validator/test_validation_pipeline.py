"""File validation through the real pipeline: WebDAV PUT → dropzone → validator (worker process) →
history API. Every bad file of the corpus is rejected with its own reason and the service stays up;
clear, zipped and encrypted exports of a generated school pass."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.validator.format.problems import POLICY, Severity
from tests.factory import make_school
from tests.factory.bad_files import PARTNER, TOLERATED, BadCase, CorpusContext, build_corpus
from tests.harness import Put, curl_put, database
from tests.integration.conftest import Stack, start_stack

pytestmark = [pytest.mark.long]

SITE, EST, UAI = "4817", "1754", "0490856P"
MAX_UPLOAD_MB = 2


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[CorpusContext, list[BadCase]]:
    ctx = CorpusContext.create()
    return ctx, build_corpus(tmp_path_factory.mktemp("bad"), ctx)


@pytest.fixture(scope="module")
def tolerated(tmp_path_factory: pytest.TempPathFactory, corpus: tuple[CorpusContext, list[BadCase]]) -> list[BadCase]:
    return build_corpus(tmp_path_factory.mktemp("tolerated"), corpus[0], cases=TOLERATED)


@pytest.fixture(scope="module")
def product(tmp_path_factory: pytest.TempPathFactory,
            corpus: tuple[CorpusContext, list[BadCase]]) -> Iterator[tuple[Stack, dict[str, str]]]:
    tmp = tmp_path_factory.mktemp("validation")
    key = tmp / "ent-private.pem"
    key.write_bytes(corpus[0].private_key)
    with database("sqlite", tmp) as url:
        stacks = start_stack(tmp, url, EDT_PRIVATE_KEY_FILE=str(key), EDT_PARTNER_NAME=PARTNER,
                             EDT_MAX_UPLOAD_MB=str(MAX_UPLOAD_MB))
        stack = next(stacks)
        stack.api.create_site(SITE, {EST: UAI, "2001": corpus[0].uai})
        stack.api.first_import(SITE, EST, make_school("XS", 3, uai=UAI).to_xml_bytes())
        # These tests deposit other schools automatically: the change thresholds would (rightly) block
        # them; file validation is what they are about.
        stack.api.ok("PUT", f"/sites/{SITE}/thresholds", json={"controls": {c: {"blocking": False} for c in (
            "subjects_created", "courses_created", "courses_modified", "courses_deleted", "sessions_changed",
            "cancelled_sessions", "closures_added", "closures_removed", "closure_coherence")}})
        account = stack.api.create_account(SITE)
        yield stack, account
        stacks.close()


def webdav_put(base: str, account: dict[str, str], est: str, path: Path) -> Put:
    return curl_put(f"{base}/webdav/{SITE}/{est}/{path.name}", account["login"], account["password"], path)


def pipeline_cases(cases: list[BadCase]) -> list[BadCase]:
    """Cases the deployment's own settings reproduce: default limits, our key, and files under the upload
    cap (larger ones are refused at the door with 413, tested elsewhere)."""
    return [c for c in cases if set(c.kwargs) <= {"expected_uais"} and c.path.is_file()
            and 0 < c.path.stat().st_size <= MAX_UPLOAD_MB * 1024 * 1024]


def test_every_bad_file_is_rejected_with_its_reason_and_the_service_stays_up(
        product: tuple[Stack, dict[str, str]], corpus: tuple[CorpusContext, list[BadCase]]) -> None:
    stack, account = product
    cases = pipeline_cases(corpus[1])
    assert len(cases) >= 30, [c.name for c in cases]
    for case in cases:
        # A case that expects other UAIs is deposited where its UAI is not expected (1754); the others in
        # the folder of the establishment their file names. One at a time: a newer deposit would
        # supersede a waiting one.
        est = EST if case.kwargs.get("expected_uais") else "2001"
        put = webdav_put(stack.url, account, est, case.path)
        assert put.status == 201 and put.import_id, case.name
        item = stack.api.wait(put.import_id, timeout=60)
        assert item["status"] == "rejected", (case.name, item["status"], item["message"])
        assert item["label"] == "Interrompu"
        step = item["steps"][1]
        assert step["stage"] == "validation" and step["status"] == "error", case.name
        codes = [a["code"] for a in item["alerts"] if a["severity"] == "error"]
        assert codes and codes[0] in case.codes, (case.name, codes)
        assert step["message"].startswith("Fichier refusé") and item["message"] == step["message"]
        assert item["message_en"].startswith("File rejected")
        assert [s["status"] for s in item["steps"][2:]] == ["pending"] * 3, "nothing downstream ran"
    # An empty file is no deposit over WebDAV (Windows writes a 0-byte placeholder first); over REST it
    # is refused outright.
    empty = stack.api.call("POST", f"/sites/{SITE}/establishments/{EST}/imports",
                           files={"file": ("empty.xml", b"", "application/xml")})
    assert empty.status_code == 422 and empty.json()["code"] == "empty_file"
    # Still up, still importing: a good file after the whole corpus goes through.
    good = make_school("XS", 11, uai=UAI).to_xml_bytes()
    assert stack.api.wait(stack.api.upload(SITE, EST, good))["status"] == "done"


def test_a_tolerated_file_of_every_effect_is_imported_with_its_warning(
        product: tuple[Stack, dict[str, str]], corpus: tuple[CorpusContext, list[BadCase]],
        tolerated: list[BadCase]) -> None:
    """What real files carry is a warning, not a rejection: a file of each effect of the policy goes through
    to `done` over WebDAV with its warning in the alerts. What the stages after validation do with a tolerated
    file depends on the warning's effect, not on its code; every code's own file is parsed with its rule in
    tests/unit/validator/test_policy.py (files with the same content are deposited once, codes checked together)."""
    stack, account = product
    # the establishment's first (manual) import, of a file none of the cases equals
    stack.api.first_import("4817", "2001", corpus[0].xml + b"<!-- first -->\n")
    by_content: dict[str, list[BadCase]] = {}
    for case in pipeline_cases(tolerated):
        if not case.kwargs:
            by_content.setdefault(hashlib.sha256(case.path.read_bytes()).hexdigest(), []).append(case)
    chosen: list[list[BadCase]] = []  # files until every effect of the cases is covered
    covered: set[str] = set()
    for group in by_content.values():
        if effects := {POLICY[c.code].effect for c in group} - covered:
            chosen.append(group)
            covered |= effects
    tolerated_effects = {rule.effect for rule in POLICY.values() if rule.severity is not Severity.ERROR}
    assert len(covered) >= len(tolerated_effects) - 2, sorted(tolerated_effects - covered)  # zip, container
    for group in chosen:
        case = group[0]
        put = webdav_put(stack.url, account, "2001", case.path)
        assert put.status == 201 and put.import_id, case.name
        item = stack.api.wait(put.import_id, timeout=60)
        assert item["status"] == "done", (case.name, item["status"], item["message"])
        assert item["label"] == "Fait"
        step = item["steps"][1]
        assert step["stage"] == "validation" and step["status"] == "warning", case.name
        codes = {a.get("code") for a in item["alerts"] if a.get("severity") == "warning"}
        assert {c.code for c in group} <= codes, (case.name, codes)
        assert not [a for a in item["alerts"] if a.get("severity") == "error"]


def test_clear_zipped_and_encrypted_exports_pass(product: tuple[Stack, dict[str, str]],
                                                 corpus: tuple[CorpusContext, list[BadCase]],
                                                 tmp_path: Path) -> None:
    stack, account = product
    ctx = corpus[0]
    school = make_school("S", 5, uai=UAI)
    variants = {
        "EDT_To_KOSMOS_0490856P.xml": school.to_xml_bytes(),
        "EDT_2014_1406127300106.zip": school.zip(),
        "Edt_To_EDTIMPORT_0490856P.xml": school.encrypt(ctx.public_key, PARTNER),
        "EDT_2014_1406127300107.zip": school.zip(school.encrypt(ctx.public_key, PARTNER)),
    }
    for i, (name, data) in enumerate(variants.items()):
        path = tmp_path / name
        path.write_bytes(data + (b"" if name.endswith(".zip") else f"<!-- {i} -->".encode()))
        put = webdav_put(stack.url, account, EST, path)
        assert put.status == 201 and put.import_id
        item = stack.api.wait(put.import_id, timeout=60)
        assert item["status"] == "done", (name, item["message"], item["alerts"][:3])
        counts = item["counts"]["validation"]
        assert counts["students"] == 400 and counts["courses"] > 0 and counts["closure_periods"] > 0
        assert item["steps"][1]["status"] in ("ok", "warning")


def test_cite_scolaire_file_on_the_site_url_is_one_import_split_by_establishment(tmp_path: Path) -> None:
    from tests.harness import sample_xml

    with database("sqlite", tmp_path) as url:
        stacks = start_stack(tmp_path, url)
        stack = next(stacks)
        api = stack.api
        api.create_site("77", {"c": "0490856P", "l": "0490857R"})
        shared_file = sample_xml(establishments=["0490856P", "0490857R"])
        item = api.wait(api.upload("77", None, shared_file))
        assert item["status"] == "done" and item["establishment_label"] == "Tous"
        report = api.ok("GET", f"/imports/{item['id']}/validation")
        assert report["ok"] is True and set(report["timetables"]) == {"c", "l"}
        assert report["timetables"]["c"] != report["timetables"]["l"]
        assert report["counts"]["students"] == 80
        # Another site's token cannot read it.
        api.create_site("88", {"x": "0490858S"})
        assert api.call("GET", f"/imports/{item['id']}/validation", api.site_token("88")).status_code == 404
        # A file naming an establishment the site lacks is rejected, naming it.
        foreign = sample_xml(establishments=["0490856P", "0111111A"])
        rejected = api.wait(api.upload("77", None, foreign))
        assert rejected["status"] == "rejected" and "0111111A" in rejected["message"]
        stacks.close()


def test_encrypted_file_on_the_site_url_is_decrypted_then_attributed_by_uai(
        product: tuple[Stack, dict[str, str]], corpus: tuple[CorpusContext, list[BadCase]], tmp_path: Path) -> None:
    stack, account = product
    ctx = corpus[0]
    path = tmp_path / "Edt_To_EDTIMPORT.xml"
    path.write_bytes(make_school("XS", 21, uai=UAI).encrypt(ctx.public_key, PARTNER))
    put = curl_put(f"{stack.url}/webdav/{SITE}/", account["login"], account["password"], path)
    assert put.status == 201 and put.import_id
    item = stack.api.wait(put.import_id, timeout=60)
    assert item["status"] == "done" and item["establishment"] is None  # the container hides its list
    report = stack.api.ok("GET", f"/imports/{item['id']}/validation")
    assert report["meta"]["encrypted"] is True and list(report["timetables"]) == [EST]
