"""The console in a real browser (Playwright driving Debian's Chromium) against the embedded product: sign
in, a WebDAV deposit watched live to « Fait », the bilan and the source download, a manual import walked
through the wizard to its confirmation, a dry run's preview, thresholds changed and locked, a deposit
account and its password shown once, closures, the ENT directory, the ops view with the dead letters and
their replay, the history's filters and pages, abort, undo, the site tokens, and what every page owes a
person (labels, keyboard, no horizontal scroll at 1366×768).

Screenshots land in $EDT_TEST_ARTIFACTS/screenshots (default .test-artifacts/, gitignored); a few are kept in
docs/screenshots/. The tests of one module share one server and one browser, in order (each leaves the site
as the next expects it).
"""

from __future__ import annotations

import csv
import io
import os
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, expect, sync_playwright

from shared.reconcile import normalise
from tests.factory import make_school
from tests.factory.directory import make_directory
from tests.harness import CURRENT_SCHOOL_YEAR, database, sample_xml
from tests.harness import curl_put as harness_put
from tests.integration.conftest import Stack, start_stack

pytestmark = [pytest.mark.e2e, pytest.mark.long]

SITE, EST, UAI = "4817", "1754", "0490856P"
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("EDT_TEST_ARTIFACTS", ROOT / ".test-artifacts")) / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
VIEWPORT = {"width": 1366, "height": 768}
TIMEOUT_MS = 30_000
expect.set_options(timeout=20_000)


@dataclass
class Console:
    stack: Stack
    browser: Browser
    site_token: str
    login: str
    password: str
    school: Any
    tmp: Path

    @property
    def url(self) -> str:
        return self.stack.url

    @property
    def api(self) -> Any:
        return self.stack.api

    def context(self) -> BrowserContext:
        context = self.browser.new_context(viewport=VIEWPORT, locale="fr-FR", timezone_id="Europe/Paris",
                                           accept_downloads=True)
        context.grant_permissions(["clipboard-read", "clipboard-write"], origin=self.url)
        context.set_default_timeout(TIMEOUT_MS)
        context.on("page", lambda p: p.on("dialog", lambda d: d.accept()))
        return context

    def settle(self) -> None:
        """Until no import waits or runs (what an earlier test deposited has ended)."""
        deadline = time.monotonic() + 60
        while self.api.ok("GET", "/ops/queues")["active"]:
            assert time.monotonic() < deadline, "imports still running"
            time.sleep(0.1)

    def deposit(self, marker: str) -> str:
        """A WebDAV deposit (curl -T, as the timetable software does): its import id."""
        path = self.tmp / f"EDT_To_KOSMOS_{UAI}_{marker}.xml"
        path.write_bytes(sample_xml(UAI, marker=marker))
        put = harness_put(f"{self.url}/webdav/{SITE}/{EST}/", self.login, self.password, path)
        assert put.status == 201 and put.import_id, put
        return put.import_id


def shot(page: Page, name: str, element: str | None = None) -> None:
    """The whole page as an artefact, or one of its parts (`element`, a selector)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    if element:
        page.locator(element).screenshot(path=str(ARTIFACTS / f"{name}.png"))
    else:
        page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def sign_in(page: Page, console: Console, token: str | None = None, site: str = "", user: str = "Mme Martin") -> None:
    page.goto(f"{console.url}/console/")
    page.get_by_label("Jeton d'accès").fill(token or console.site_token)
    page.get_by_label("Espace de dépôt (site)").fill(site)
    page.get_by_label("Votre nom").fill(user)
    page.get_by_role("button", name="Se connecter").click()
    page.wait_for_url(f"**/console/{'sites/' + SITE + '/imports' if token is None or site else 'ops'}")


def directory_of(school: Any) -> tuple[dict[str, Any], str, str]:
    """The ENT directory, with one teacher spelt otherwise (unmatched, their ENT entry a candidate) and the
    ENT id of that entry."""
    generated = make_directory(school.timetable, missing=0.0, unrelated=10)
    body = generated.body
    teacher = sorted(school.timetable.teachers.values(), key=lambda t: t.ident)[0]
    entry = next(p for p in body["persons"] if p["kind"] == "teacher"
                 and normalise(p["last_name"]) == normalise(teacher.last_name)
                 and normalise(p["first_name"]) == normalise(teacher.first_name))
    entry["first_name"] = entry["first_name"] + "-Autre"
    return body, teacher.ident, entry["id"]


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    tmp = tmp_path_factory.mktemp("console")
    school = make_school("XS", 1, uai=UAI, year=CURRENT_SCHOOL_YEAR)
    with database("sqlite", tmp) as url:
        stacks = start_stack(tmp, url)
        stack = next(stacks)
        api = stack.api
        api.create_site(SITE, {EST: UAI}, "Collège Emanche")
        body, _, _ = directory_of(school)
        api.ok("PUT", f"/sites/{SITE}/establishments/{EST}/directory", json=body)
        api.first_import(SITE, EST, sample_xml(UAI, marker="first"))
        account = api.create_account(SITE, "Thibault", "Bourgeois")
        with sync_playwright() as playwright:
            browser = launch(playwright)
            try:
                yield Console(stack, browser, api.site_token(SITE), account["login"], account["password"], school, tmp)
            finally:
                browser.close()
        stacks.close()


def launch(playwright: Playwright) -> Browser:
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


@pytest.fixture
def page(console: Console) -> Iterator[Page]:
    context = console.context()
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        yield page
    finally:
        context.close()
    assert not errors, errors  # no script error on any page a test opened


# --- the tests, in the order a school's staff meets the console ------------------------------------------


def test_sign_in_with_the_keyboard_and_a_site_token(console: Console, page: Page) -> None:
    page.goto(f"{console.url}/console/sites/{SITE}/thresholds")
    page.wait_for_url("**/console/?next=*")  # no session in this tab: the sign-in form, then back here
    page.keyboard.press("Tab")  # the skip link first
    page.keyboard.press("Tab")
    page.keyboard.type("not-a-token")
    page.keyboard.press("Enter")
    expect(page.locator("#signin-error")).to_contain_text("Jeton d'accès invalide")
    token = page.get_by_label("Jeton d'accès")
    expect(token).to_be_focused()
    token.fill("")
    page.keyboard.type(console.site_token)
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    page.keyboard.type("Mme Martin")
    shot(page, "signin")
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/console/sites/{SITE}/thresholds")
    expect(page.locator("#who")).to_have_text(f"Site {SITE} — Mme Martin")
    assert page.evaluate("sessionStorage.getItem('edt.token')") == console.site_token
    assert page.evaluate("localStorage.length") == 0  # the tab only
    page.get_by_role("button", name="Se déconnecter").click()
    page.wait_for_url("**/console/?next=*")
    assert page.evaluate("sessionStorage.getItem('edt.token')") is None


def test_a_webdav_deposit_reaches_fait_live_with_the_queue_message(console: Console, page: Page) -> None:
    sign_in(page, console)
    history = page.context.new_page()  # a tab of its own: its own session (sessionStorage is per tab)
    sign_in(history, console)
    expect(history.locator("#live-state")).to_contain_text("en direct")
    history.evaluate("window.__edtNoReload = 1")
    console.stack.pause("edt.validate")
    try:
        first = console.deposit("live-1")
        second = console.deposit("live-2")
        # The history shows both at once, without a reload: one running, one waiting behind it.
        expect(history.locator(f"tr[data-import='{first}'] [data-label]")).to_have_text("En cours")
        expect(history.locator(f"tr[data-import='{second}'] [data-label]")).to_have_text("En attente")
        page.goto(f"{console.url}/console/sites/{SITE}/imports/{second}")
        expect(page.locator("#queue-message")).to_contain_text("1 établissement est déjà en cours d'importation.")
        expect(page.locator("#queue-message")).to_contain_text("Attente estimée : environ")
        expect(page.locator("li[data-stage='deposit']")).to_have_attribute("data-status", "ok")
        expect(page.locator("li[data-stage='validation']")).to_have_attribute("data-status", "pending")
        shot(page, "queue")
        page.evaluate("window.__edtNoReload = 1")
    finally:
        console.stack.resume("edt.validate")
    # The steps advance over SSE: validation, thresholds, groups, sessions — then « Fait ».
    expect(page.locator("#main")).to_have_attribute("data-status", "done", timeout=60_000)
    for stage in ("validation", "thresholds", "groups", "sessions"):
        assert page.locator(f"li[data-stage='{stage}']").get_attribute("data-status") in ("ok", "warning")
    expect(page.locator("#status-line [data-label]")).to_have_text("Fait")
    expect(page.locator("#progress-text")).to_have_text("100 %")
    assert page.evaluate("window.__edtNoReload") == 1  # live, not reloaded
    # A step's message only where it had a problem.
    for item in page.locator("ol.steps li").all():
        has_message = item.locator(".message").count() > 0
        assert has_message == (item.get_attribute("data-status") in ("warning", "error"))
    shot(page, "import-done")
    expect(history.locator(f"tr[data-import='{first}'] [data-label]")).to_have_text("Fait")
    expect(history.locator(f"tr[data-import='{second}'] [data-label]")).to_have_text("Fait")
    assert history.evaluate("window.__edtNoReload") == 1
    row = history.locator(f"tr[data-import='{second}']")
    expect(row.locator("td").nth(2)).to_have_text("Oui")  # Auto
    shot(history, "history")


def test_the_bilan_the_source_and_the_unreconciled_export(console: Console, page: Page) -> None:
    sign_in(page, console)
    done = [i for i in console.api.history(SITE, status="done", mode="auto")]
    import_id = done[0]["id"]
    report = console.api.ok("GET", f"/imports/{import_id}/report")
    page.goto(f"{console.url}/console/sites/{SITE}/imports/{import_id}#bilan-section")
    expect(page.locator("#total-tasks")).to_have_text(str(report["total_tasks"]))
    for action in report["actions"]:
        row = page.locator(f"#bilan tr[data-action='{action['action']}']")
        expect(row.locator("th")).to_have_text(action["label"])
        expect(row.locator("td").nth(0)).to_have_text(str(action["success"]))
        expect(row.locator("td").nth(1)).to_have_text(str(action["error"]))
    assert "Nombre de création de séance" in page.locator("#bilan").inner_text()
    expect(page.locator("#thresholds tr[data-control]")).to_have_count(14)
    shot(page, "bilan")
    shot(page, "bilan-section", "#bilan-section")
    with page.expect_download() as downloaded:
        page.locator("#source-download").click()
    path = downloaded.value.path()
    assert downloaded.value.suggested_filename == f"{done[0]['file']['name']}.zip"
    raw = console.api.call("GET", f"/imports/{import_id}/source", params={"raw": "true"}).content
    with zipfile.ZipFile(path) as zf:
        (name,) = zf.namelist()
        assert name == done[0]["file"]["name"] and zf.read(name) == raw  # the file as it was deposited
    # The unreconciled teachers: counted, listed, exported as the API's CSV.
    counts = console.api.get_import(import_id)["counts"]["groups"]["teachers"]
    block = page.locator("[data-kind='teachers']")
    expect(block.locator("[data-count='unmatched']")).to_have_text(str(counts["unmatched"]))
    assert counts["unmatched"] >= 1
    with page.expect_download() as exported:
        block.get_by_role("button", name="Exporter (CSV)").click()
    assert Path(exported.value.path()).read_bytes() == console.api.call(
        "GET", f"/imports/{import_id}/unreconciled", params={"kind": "teachers"}).content
    block.get_by_role("button", name="Afficher la liste").click()
    expect(page.locator("#list-teachers tbody tr")).to_have_count(counts["unmatched"])


def test_a_manual_import_through_the_wizard_to_its_confirmation(console: Console, page: Page) -> None:
    sign_in(page, console)
    page.get_by_role("link", name="Import manuel").click()
    page.get_by_label("Établissement").select_option(EST)
    data = sample_xml(UAI, marker="wizard")
    page.set_input_files("#m-file", files=[{"name": f"EDT_To_KOSMOS_{UAI}.xml", "mimeType": "application/xml",
                                             "buffer": data}])
    expect(page.get_by_label("Vérifier la sélection avant l'import", exact=False)).to_be_checked()
    page.get_by_role("button", name="Importer", exact=True).click()
    page.wait_for_url(f"**/console/sites/{SITE}/imports/*")
    import_id = page.url.rsplit("/", 1)[1]
    expect(page.locator("#wizard")).to_be_visible(timeout=60_000)
    expect(page.locator("#w-uai")).to_have_text(UAI)
    shot(page, "wizard-file")

    page.locator("#w-next").click()  # Matières: one subject off
    subject = page.locator("#wizard-body tbody tr").first
    ident = subject.get_attribute("data-ident")
    subject.get_by_role("button", name="Désactiver").click()
    expect(page.locator(f"#wizard-body tr[data-ident='{ident}'] [data-selected]")).to_have_text("Désactivé")
    shot(page, "wizard-subjects")
    shot(page, "wizard-subjects-section", "#wizard")
    page.locator("#w-next").click()  # Classes: all off, then all on
    page.get_by_role("button", name="Tout désactiver").click()
    expect(page.locator("#w-classes-count")).to_contain_text("0 activé(s)")
    page.get_by_role("button", name="Tout activer").click()
    expect(page.locator("#wizard-body [data-selected='off']")).to_have_count(0)
    page.locator("#w-next").click()  # Groupes
    expect(page.locator("#wizard-step-title")).to_contain_text("Groupes")
    page.locator("#w-next").click()  # Cours: the first course of another subject off
    preview = console.api.ok("GET", f"/imports/{import_id}/preview")
    courses = preview["establishments"][0]["courses"]
    course = next(c for c in courses if c["subject"] != ident)
    row = page.locator(f"#wizard-body tr[data-ident='{course['key']}']")
    if row.count() == 0:
        page.get_by_label("Rechercher").fill(course["label"])
        page.get_by_label("Rechercher").press("Enter")
    page.locator(f"#wizard-body tr[data-ident='{course['key']}']").get_by_role("button", name="Désactiver").click()
    expect(page.locator(f"#wizard-body tr[data-ident='{course['key']}'] [data-selected]")).to_have_text("Désactivé")
    page.locator("#w-next").click()  # Enseignants: the misspelt one linked by hand, another refused
    _, teacher, ent_id = directory_of(console.school)
    unmatched = page.locator(f"#wizard-body tr[data-ident='{teacher}']")
    expect(unmatched.locator("[data-match]")).to_have_attribute("data-match", "unmatched")
    unmatched.locator("select").select_option(ent_id)
    unmatched.get_by_role("button", name="Associer", exact=False).click()
    expect(page.locator(f"#wizard-body tr[data-ident='{teacher}'] [data-match]")).to_have_text(f"Choisi : {ent_id}")
    refused = page.locator(f"#wizard-body tr[data-ident]:not([data-ident='{teacher}'])").filter(
        has=page.locator("[data-match='matched']")).first
    refused_ident = refused.get_attribute("data-ident")
    refused.get_by_role("button", name="Refuser", exact=False).click()
    expect(page.locator(f"#wizard-body tr[data-ident='{refused_ident}'] [data-match]")).to_have_text("Refusé")
    shot(page, "wizard-teachers")
    shot(page, "wizard-teachers-section", "#wizard")
    page.locator("#w-next").click()  # Élèves: one validated
    student = page.locator("#wizard-body tr[data-ident]").filter(has=page.locator("[data-match='matched']")).first
    student_ident = student.get_attribute("data-ident")
    student.get_by_role("button", name="Valider", exact=False).click()
    expect(page.locator(f"#wizard-body tr[data-ident='{student_ident}'] [data-match]")).to_contain_text("Validé")
    page.locator("#w-next").click()  # Confirmation
    summary = page.locator("#w-summary")
    expect(summary).to_contain_text(f"{len(courses) - 1} sur {len(courses)}")
    shot(page, "wizard-confirm")
    selection = console.api.ok("GET", f"/imports/{import_id}/preview")["selection"][EST]
    assert selection["subjects"][ident] is False and selection["courses"][course["key"]] is False
    assert selection["persons"]["teachers"][teacher] == {"decision": "override", "ent_id": ent_id}
    assert selection["persons"]["teachers"][refused_ident]["decision"] == "refuse"
    assert selection["persons"]["students"][student_ident]["decision"] == "accept"
    page.locator("#w-confirm").click()
    expect(page.locator("#wizard")).to_be_hidden()
    expect(page.locator("#main")).to_have_attribute("data-status", "done", timeout=60_000)
    expect(page.locator("#status-line [data-label]")).to_have_text("Fait")
    sessions = console.api.ok("GET", f"/sites/{SITE}/establishments/{EST}/sessions",
                              params={"course": course["key"], "limit": 5})
    assert sessions["items"] == []  # the course turned off has no session
    groups = console.api.get_import(import_id)["counts"]["groups"]["teachers"]
    before = next(i for i in console.api.history(SITE, mode="manual") if i["id"] != import_id and
                  i["status"] == "done")["counts"]["groups"]["teachers"]
    assert groups["matched"] == before["matched"]  # one linked by hand, one refused


def test_a_dry_run_shows_its_preview_and_imports_nothing(console: Console, page: Page) -> None:
    sign_in(page, console)
    page.goto(f"{console.url}/console/sites/{SITE}/manual")
    page.set_input_files("#m-file", files=[{"name": "EDT_To_KOSMOS.xml", "mimeType": "application/xml",
                                             "buffer": sample_xml(UAI, marker="dry-run")}])
    page.get_by_label("Simulation", exact=False).check()
    expect(page.get_by_label("Vérifier la sélection avant l'import", exact=False)).to_be_disabled()
    page.get_by_role("button", name="Importer", exact=True).click()
    page.wait_for_url(f"**/console/sites/{SITE}/imports/*")
    expect(page.locator("#main")).to_have_attribute("data-status", "previewed", timeout=60_000)
    expect(page.locator("#status-line")).to_contain_text("Simulation réalisée, rien n'a été importé")
    expect(page.locator("#facts")).to_contain_text("simulation")
    expect(page.locator("#thresholds tr[data-control]")).to_have_count(14)
    expect(page.locator("#thresholds tr[data-control='sessions_changed'] td").first).not_to_have_text("—")
    shot(page, "dry-run")


def test_thresholds_are_changed_audited_and_locked_during_an_import(console: Console, page: Page) -> None:
    console.settle()
    sign_in(page, console)
    page.goto(f"{console.url}/console/sites/{SITE}/thresholds")
    value = page.locator("#value-courses_created")
    expect(value).to_have_value("50")
    value.fill("40")
    expect(page.locator("#coherence-warning")).to_be_hidden()
    page.locator("#blocking-closure_coherence").uncheck()
    expect(page.locator("#coherence-warning")).to_be_visible()
    expect(page.locator("#coherence-warning")).to_contain_text("Très important : ne pas décocher cette case")
    page.get_by_role("button", name="Enregistrer").click()
    expect(page.locator("#save-result")).to_contain_text("Seuils enregistrés.")
    expect(page.locator("#save-result")).to_contain_text("Très important")  # the API's warning, after saving
    stored = console.api.ok("GET", f"/sites/{SITE}/thresholds")["controls"]
    assert stored["courses_created"]["value"] == 40 and stored["closure_coherence"]["blocking"] is False
    audit = page.locator("#audit tbody tr").filter(has_text="% de services d'enseignement créés")
    expect(audit).to_contain_text("Mme Martin")
    expect(audit.locator("td").nth(4)).to_have_text("50")
    expect(audit.locator("td").nth(5)).to_have_text("40")
    shot(page, "thresholds")
    # Locked while an import of the site runs, with a clear message; open again once it has ended.
    console.stack.pause("edt.validate")
    try:
        import_id = console.deposit("locked")
        expect(page.locator("#lock")).to_contain_text("Seuils verrouillés")
        expect(page.locator("#save")).to_be_disabled()
        expect(page.locator("#value-courses_created")).to_be_disabled()
        assert console.api.call("PUT", f"/sites/{SITE}/thresholds", json={"controls": {}}).status_code == 423
        page.locator("#lock").scroll_into_view_if_needed()
        shot(page, "thresholds-locked")
    finally:
        console.stack.resume("edt.validate")
    console.api.wait(import_id, timeout=60)
    expect(page.locator("#lock")).to_be_empty()
    expect(page.locator("#save")).to_be_enabled()
    # Back to the defaults, so that later imports are not blocked by the tighter value.
    value.fill("50")
    page.locator("#blocking-closure_coherence").check()
    page.get_by_role("button", name="Enregistrer").click()
    expect(page.locator("#save-result")).to_contain_text("Seuils enregistrés.")


def test_a_deposit_account_and_its_password_shown_once(console: Console, page: Page) -> None:
    sign_in(page, console)
    page.goto(f"{console.url}/console/sites/{SITE}/accounts")
    expect(page.locator("#count")).to_have_text("(1 sur 5)")
    page.get_by_label("Prénom", exact=True).fill("Christophe")
    page.get_by_label("Nom", exact=True).fill("Lévêque")
    page.get_by_role("button", name="Ajouter l'utilisateur").click()
    expect(page.locator("#password-once")).to_be_visible()
    login = page.locator("#new-login").inner_text()
    password = page.locator("#new-password").inner_text()
    assert login == "emp.christophe.leveque" and len(password) == 10
    urls = page.locator("#new-urls code")
    host = console.stack.settings.public_url.split("://", 1)[1]
    expect(urls.first).to_have_text(f"http://{login}:{password}@{host}/webdav/{SITE}/")
    page.locator("#new-urls").get_by_role("button", name="Copier").first.click()
    assert page.evaluate("navigator.clipboard.readText()") == urls.first.inner_text()
    shot(page, "accounts-password")
    expect(page.locator(f"tr[data-login='{login}']")).to_be_visible()
    deposit = console.tmp / "EDT_account.xml"
    deposit.write_bytes(sample_xml(UAI, marker="account"))
    assert harness_put(f"{console.url}/webdav/{SITE}/{EST}/", login, password, deposit).status == 201
    page.reload()
    expect(page.locator("#password-once")).to_have_count(0)  # shown once, never again
    assert password not in page.content()
    row = page.locator(f"tr[data-login='{login}']")
    row.get_by_label("Notification").uncheck()
    page.wait_for_function(f"""fetch('/api/v1/sites/{SITE}/accounts', {{headers: {{Authorization:
        'Bearer ' + sessionStorage.getItem('edt.token')}}}}).then(r => r.json()).then(j =>
        j.items.find(a => a.login === '{login}').notify === false)""")
    row.get_by_role("button", name="Régénérer le mot de passe", exact=False).click()
    expect(page.locator("#new-password")).to_be_visible()
    fresh = page.locator("#new-password").inner_text()
    assert fresh != password and len(fresh) == 10
    assert harness_put(f"{console.url}/webdav/{SITE}/{EST}/", login, password, deposit).status == 401
    page.locator(f"tr[data-login='{login}']").get_by_role("button", name="Supprimer", exact=False).click()
    expect(page.locator(f"tr[data-login='{login}']")).to_have_count(0)
    assert login not in {a["login"] for a in console.api.ok("GET", f"/sites/{SITE}/accounts")["items"]}
    for i in range(4):  # five in all: the form says so and stops
        console.api.create_account(SITE, f"Prenom{i}", f"Nom{i}")
    page.reload()
    expect(page.locator("#count")).to_have_text("(5 sur 5)")
    expect(page.get_by_role("button", name="Ajouter l'utilisateur")).to_be_disabled()
    expect(page.locator("#add-error")).to_contain_text("Les 5 comptes d'accès sont utilisés")


def test_closure_periods_and_the_ent_directory(console: Console, page: Page) -> None:
    sign_in(page, console)
    page.goto(f"{console.url}/console/sites/{SITE}/closures")
    page.get_by_role("button", name="Ajouter une période").click()
    page.locator("[data-field=start]").last.fill(f"{CURRENT_SCHOOL_YEAR + 1}-02-16")
    page.locator("[data-field=end]").last.fill(f"{CURRENT_SCHOOL_YEAR + 1}-02-20")
    page.locator("[data-field=label]").last.fill("Fermeture exceptionnelle")
    page.get_by_role("button", name="Enregistrer").click()
    expect(page.locator("#save-result")).to_contain_text("Périodes de fermeture enregistrées (1)")
    stored = console.api.ok("GET", f"/sites/{SITE}/establishments/{EST}/closures")
    assert [(p["start"], p["end"], p["label"]) for p in stored["items"]] == [
        (f"{CURRENT_SCHOOL_YEAR + 1}-02-16", f"{CURRENT_SCHOOL_YEAR + 1}-02-20", "Fermeture exceptionnelle")]
    expect(page.locator("#updated")).to_contain_text("Mme Martin")
    shot(page, "closures")

    page.goto(f"{console.url}/console/sites/{SITE}/directory")
    expect(page.locator("#directory-counts")).to_be_visible()
    before = console.api.ok("GET", f"/sites/{SITE}/establishments/{EST}/directory")["counts"]
    out = io.StringIO()
    writer = csv.writer(out, delimiter=";")
    writer.writerow(["type", "id", "nom", "prenom", "date_naissance"])
    writer.writerow(["student", "ENT-NEW-1", "NOUVEAU", "Élève", "2012-03-04"])
    writer.writerow(["teacher", "ENT-NEW-2", "ARRIVÉE", "Prof", ""])
    page.get_by_label("Compléter", exact=False).check()
    page.set_input_files("#d-file", files=[{"name": "annuaire.csv", "mimeType": "text/csv",
                                             "buffer": out.getvalue().encode("utf-8")}])
    page.get_by_role("button", name="Déposer l'annuaire").click()
    expect(page.locator("#directory-result")).to_contain_text("2 personnes (1 enseignants, 0 personnels, 1 élèves)")
    expect(page.locator("[data-count='student']")).to_have_text(str(before["student"] + 1))
    expect(page.locator("[data-count='teacher']")).to_have_text(str(before["teacher"] + 1))
    page.get_by_label("Mode partiel", exact=False).check()
    page.set_input_files("#i-file", files=[{"name": "idpn.csv", "mimeType": "text/csv",
                                             "buffer": b"pronote_id;ent_id\nPN-NEW-1;ENT-NEW-1\n"}])
    page.get_by_role("button", name="Importer les identifiants").click()
    expect(page.locator("#idpn-result")).to_contain_text("1 identifiant(s) reçu(s)")
    stored_ids = console.api.ok("GET", f"/sites/{SITE}/establishments/{EST}/directory")["counts"]["pronote_ids"]
    expect(page.locator("[data-count='pronote_ids']")).to_have_text(str(stored_ids))
    # A bad file: its errors named, nothing replaced.
    page.get_by_label("Remplacer tout", exact=False).check()
    page.set_input_files("#d-file", files=[{"name": "annuaire.csv", "mimeType": "text/csv",
                                             "buffer": b"type;id;nom\nalien;X;Y\n"}])
    page.get_by_role("button", name="Déposer l'annuaire").click()
    expect(page.locator("#directory-result .box.error")).to_be_visible()
    expect(page.locator("[data-count='student']")).to_have_text(str(before["student"] + 1))
    shot(page, "directory")


def test_the_ops_view_follows_the_queues_live(console: Console, page: Page) -> None:
    console.settle()
    sign_in(page, console, token=console.stack.settings.admin_token)
    expect(page.locator("#queues tbody tr")).to_have_count(4)
    for stage in ("validation", "thresholds", "groups", "sessions"):
        expect(page.locator(f"#queues tr[data-stage='{stage}'] td").nth(3)).to_have_text("1")  # consumers
    console.stack.pause("edt.validate")
    try:
        import_id = console.deposit("ops")
        row = page.locator("#queues tr[data-stage='validation']")
        page.wait_for_function("""() => { const c = document.querySelectorAll("#queues tr[data-stage='validation'] td");
            return c.length && Number(c[1].textContent) + Number(c[2].textContent) >= 1; }""")
        expect(page.locator(f"#active tr[data-import='{import_id}']")).to_contain_text("En cours")
        expect(page.locator(f"#active tr[data-import='{import_id}']")).to_contain_text("Validation du fichier")
        expect(page.locator("#totals")).to_contain_text("1 en cours")
        assert row.locator("td").nth(0).inner_text() == "edt.validate"
        shot(page, "ops")
    finally:
        console.stack.resume("edt.validate")
    console.api.wait(import_id, timeout=60)
    expect(page.locator(f"#active tr[data-import='{import_id}']")).to_have_count(0)
    expect(page.locator("#dlq")).to_contain_text("0 message(s) en file de rejet")


def test_the_ops_view_lists_and_replays_dead_letters(console: Console, page: Page) -> None:
    """A poison command (its canonical model gone from the blob store) is dead-lettered after its retries,
    its import « Interrompu »; the ops view lists it and replays its queue."""
    console.settle()
    def deposit() -> str:  # a timetable no earlier import had: its canonical model is a blob of its own
        path = console.tmp / f"EDT_To_KOSMOS_{UAI}_poison.xml"
        path.write_bytes(make_school("XS", 77, uai=UAI, year=CURRENT_SCHOOL_YEAR).to_xml_bytes())
        put = harness_put(f"{console.url}/webdav/{SITE}/{EST}/", console.login, console.password, path)
        assert put.status == 201 and put.import_id, put
        return put.import_id

    poison = console.stack.poison_thresholds(deposit)
    assert console.api.wait(poison, timeout=60)["status"] == "failed"
    sign_in(page, console, token=console.stack.settings.admin_token)
    row = page.locator(f"#dead-letters tr[data-import='{poison}']")
    expect(row).to_contain_text("edt.thresholds")
    expect(page.locator("#dlq")).to_contain_text("1 message(s) en file de rejet")
    shot(page, "ops-dead-letters", "#dead-letters")
    page.get_by_role("button", name="Rejouer la file edt.thresholds").click()
    expect(page.locator("body")).to_contain_text("1 message(s) renvoyé(s) dans la file edt.thresholds.")
    expect(row).to_have_count(0)
    console.stack.drain()  # handled: its step had ended (the import failed), the command is dropped
    assert console.api.get_import(poison)["status"] == "failed"

def test_the_history_filters_and_pages(console: Console, page: Page) -> None:
    console.settle()
    sign_in(page, console)
    every = console.api.history(SITE, limit=100)
    assert len(every) > 5
    page.get_by_label("Type").select_option("manual")
    expect(page.locator("#history tbody tr")).to_have_count(sum(1 for i in every if i["mode"] == "manual"))
    for cell in page.locator("#history tbody tr td:nth-child(3)").all():
        expect(cell).to_have_text("Non")
    assert "mode=manual" in page.url  # the filters are in the address: a reload keeps them
    page.get_by_label("Type").select_option("")
    page.get_by_label("Statut").select_option(label="Fait")
    expect(page.locator("#history tbody tr")).to_have_count(
        sum(1 for i in every if i["status"] in ("done", "previewed")))
    page.get_by_label("Statut").select_option("")
    page.get_by_label("Établissement").select_option(EST)
    page.get_by_label("Par page").select_option("5")
    expect(page.locator("#history tbody tr")).to_have_count(5)
    first_page = [r.get_attribute("data-import") for r in page.locator("#history tbody tr").all()]
    assert first_page == [i["id"] for i in every[:5]]
    page.get_by_role("button", name="Suivant »").click()
    expect(page.locator("#page-no")).to_have_text("Page 2")
    second_page = [r.get_attribute("data-import") for r in page.locator("#history tbody tr").all()]
    assert second_page == [i["id"] for i in every[5:10]]
    page.get_by_role("button", name="« Précédent").click()
    expect(page.locator("#page-no")).to_have_text("Page 1")
    expect(page.locator("#history tbody tr").first).to_have_attribute("data-import", first_page[0])


def test_abort_a_waiting_and_a_running_import_then_undo_the_last_integrated_one(console: Console,
                                                                                page: Page) -> None:
    console.settle()
    sign_in(page, console)
    console.stack.pause("edt.validate")
    try:
        running = console.deposit("abort-1")  # admitted, its validation command held in the queue
        waiting = console.deposit("abort-2")  # behind it: same establishment
        page.goto(f"{console.url}/console/sites/{SITE}/imports/{waiting}")
        expect(page.locator("#main")).to_have_attribute("data-status", "waiting")
        page.get_by_role("button", name="Arrêter l'import").click()  # the confirmation is accepted
        expect(page.locator("#main")).to_have_attribute("data-status", "cancelled")
        expect(page.locator("#status-line [data-label]")).to_have_text("Interrompu")
        page.goto(f"{console.url}/console/sites/{SITE}/imports/{running}")
        expect(page.locator("#main")).to_have_attribute("data-status", "received")
        page.get_by_role("button", name="Arrêter l'import").click()
        expect(page.locator("#abort-requested")).to_contain_text("l'import s'arrêtera à la fin de l'étape en cours")
    finally:
        console.stack.resume("edt.validate")
    expect(page.locator("#main")).to_have_attribute("data-status", "cancelled", timeout=60_000)
    assert console.api.get_import(running)["abort_requested_at"]
    # Undo: the last integrated import of the establishment, undone from its page.
    last = console.deposit("undo-1")
    console.api.wait(last, {"done"})
    page.goto(f"{console.url}/console/sites/{SITE}/imports/{last}")
    expect(page.locator("#main")).to_have_attribute("data-status", "done")
    page.get_by_role("button", name="Annuler cet import").click()
    page.wait_for_url(lambda url: last not in url and "/imports/" in url)
    undo = page.url.rsplit("/", 1)[1]
    expect(page.locator("#main")).to_have_attribute("data-status", "done", timeout=60_000)
    read = console.api.get_import(undo)
    assert read["mode"] == "undo" and read["undo_of"] == last
    shot(page, "undo-done")


def test_site_tokens_are_issued_listed_and_revoked(console: Console, page: Page) -> None:
    sign_in(page, console, token=console.stack.settings.admin_token, site=SITE)
    page.goto(f"{console.url}/console/sites/{SITE}/tokens")
    before = {t["id"] for t in console.api.ok("GET", f"/sites/{SITE}/tokens")["items"]}
    page.get_by_role("button", name="Créer un jeton").click()
    token = page.locator("#new-token").inner_text()
    assert console.api.call("GET", f"/sites/{SITE}/imports", token).status_code == 200
    (token_id,) = {t["id"] for t in console.api.ok("GET", f"/sites/{SITE}/tokens")["items"]} - before
    row = page.locator(f"#tokens tr[data-token='{token_id}']")
    expect(row).to_be_visible()
    shot(page, "tokens")
    row.get_by_role("button", name=f"Révoquer le jeton {token_id}").click()
    expect(row).to_have_count(0)
    assert console.api.call("GET", f"/sites/{SITE}/imports", token).status_code == 401  # at once


# Each page, and what shows that its data has been drawn.
PAGES = {"imports": "#history tbody tr", "manual": f"#m-establishment option[value='{EST}']",
         "thresholds": "#controls tbody tr", "accounts": "#accounts tbody tr", "closures": "#c-establishment option",
         "directory": "#current p", "tokens": "#tokens-state p, #tokens tbody tr"}


def test_every_page_is_labelled_keyboard_usable_and_fits_a_laptop_screen(console: Console, page: Page) -> None:
    sign_in(page, console, token=console.stack.settings.admin_token, site=SITE)
    some_import = console.api.history(SITE, status="done", limit=1)[0]["id"]
    ready = {f"sites/{SITE}/{p}": selector for p, selector in PAGES.items()}
    ready.update({f"sites/{SITE}/imports/{some_import}": "#bilan table", "ops": "#queues tbody tr", "": "#signin"})
    for path, selector in ready.items():
        response = page.goto(f"{console.url}/console/{path}")
        assert response is not None and response.status == 200, path
        assert "default-src 'self'" in (response.headers.get("content-security-policy") or ""), path
        page.locator(selector).first.wait_for(state="attached")
        unlabelled = page.evaluate("""() => [...document.querySelectorAll('input, select, textarea')]
            .filter(el => el.type !== 'hidden' && !el.closest('[hidden]'))
            .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label'))
            .map(el => el.outerHTML)""")
        assert unlabelled == [], (path, unlabelled)
        assert page.evaluate("document.documentElement.scrollWidth") <= VIEWPORT["width"], path
        assert page.locator("h1").count() == 1 and page.locator("main").count() == 1, path
        if path:
            current = page.locator("nav [aria-current='page']")
            assert current.count() == 1, path
        page.keyboard.press("Tab")  # the first stop is the skip link, which leads to the content
        expect(page.locator("a.skip")).to_be_focused()
    page.goto(f"{console.url}/console/sites/{SITE}/imports")
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    expect(page.locator("main")).to_be_focused()
