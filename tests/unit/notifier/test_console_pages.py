"""The console's pages as the server renders them (no browser): every page answers HTML with its security
headers and the seeds' labels, unknown pages and malformed site ids are 404, and the colours of the stylesheet
reach WCAG AA contrast (4.5:1) for each text/background pair the stylesheet declares."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from services.notifier.console import CONSOLE_STATIC, SITE_PAGES, STATIC_DIR, build_console, status_filters
from shared.settings import Settings
from shared.web import install_problem_handlers


@pytest.fixture(scope="module")
def client() -> TestClient:
    app = FastAPI()
    install_problem_handlers(app)
    app.include_router(build_console(Settings()))
    path, factory = CONSOLE_STATIC
    app.mount(path, factory(None))
    return TestClient(app)


@pytest.mark.parametrize("path", ["/console/", "/console/ops", "/console/sites/4817/imports/abc",
                                  *(f"/console/sites/4817/{p.slug}" for p in SITE_PAGES)])
def test_each_page_is_html_with_its_security_headers(client: TestClient, path: str) -> None:
    r = client.get(path)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assert r.headers["x-content-type-options"] == "nosniff"
    assert '<html lang="fr">' in r.text and "<main id=\"main\"" in r.text
    scripts = re.findall(r'<script type="module" src="([^"]+)"', r.text)
    assert len(scripts) == 1 and client.get(scripts[0]).status_code == 200  # every page's script exists
    labels = json.loads(re.search(r'<script type="application/json" id="edt-labels">(.*?)</script>', r.text,
                                  re.S).group(1))  # type: ignore[union-attr]
    assert labels["statuses"]["done"] == ["Fait", "Import réalisé avec succès"]
    assert labels["steps"]["thresholds"] == "Vérification des seuils"


def test_root_and_bare_console_lead_to_the_sign_in(client: TestClient) -> None:
    for path in ("/", "/console", "/console/sites/4817"):
        r = client.get(path, follow_redirects=False)
        assert r.status_code == 302 and r.headers["location"].startswith("/console/")


@pytest.mark.parametrize("path", ["/console/sites/4817/nope", "/console/sites/..%2Fetc/imports",
                                  "/console/sites/-bad/imports"])
def test_unknown_pages_and_bad_site_ids_are_404(client: TestClient, path: str) -> None:
    assert client.get(path).status_code == 404


def test_the_history_filter_offers_each_seed_label_once() -> None:
    by_label = {f["label"]: f["value"].split(",") for f in status_filters()}
    assert list(by_label) == ["En attente", "En cours", "Fait", "Interrompu", "Remplacé"]
    assert by_label["Fait"] == ["done", "previewed"]
    assert set(by_label["Interrompu"]) == {"rejected", "blocked", "failed", "cancelled"}


def luminance(hex_colour: str) -> float:
    def channel(c: int) -> float:
        s = c / 255
        return s / 12.92 if s <= 0.03928 else ((s + 0.055) / 1.055) ** 2.4
    r, g, b = (int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)


def contrast(a: str, b: str) -> float:
    la, lb = sorted((luminance(a), luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def test_text_colours_reach_wcag_aa_contrast() -> None:
    css = (STATIC_DIR / "console.css").read_text(encoding="utf-8")
    colours = dict(re.findall(r"--([a-z-]+):\s*(#[0-9a-fA-F]{6})\s*;", css))
    pairs = re.search(r"contrast-pairs:(.*?)\*/", css, re.S).group(1).split()  # type: ignore[union-attr]
    assert len(pairs) >= 15
    for pair in pairs:
        fg, bg = pair.split("/")
        assert contrast(colours[fg], colours[bg]) >= 4.5, (pair, round(contrast(colours[fg], colours[bg]), 2))
    assert round(contrast("#000000", "#ffffff"), 1) == 21.0


def test_no_script_writes_html_from_data() -> None:
    """The API's data is text: the scripts build the DOM, never innerHTML/outerHTML/insertAdjacentHTML."""
    for script in Path(STATIC_DIR).rglob("*.js"):
        text = script.read_text(encoding="utf-8")
        assert not re.search(r"\.(innerHTML|outerHTML)\s*=|insertAdjacentHTML|document\.write", text), script
