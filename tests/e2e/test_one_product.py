"""One base URL, one product (distributed mode: six processes behind nginx): `/healthz` and `/readyz` are
green only when every service is; `/openapi.json` is the whole API, the very document the embedded
all-in-one serves; `/docs` and `/redoc` load their assets from the product, nothing from a CDN."""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from deploy.nginx import SERVICES
from tests.e2e.conftest import E2E
from tests.harness import database
from tests.integration.conftest import start_stack

pytestmark = [pytest.mark.e2e]


def get(base: str, path: str) -> httpx.Response:
    return httpx.get(f"{base}{path}", timeout=15, trust_env=False)


def wait_status(base: str, path: str, status: int, within: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        r = get(base, path)
        if r.status_code == status:
            return dict(r.json())
        assert time.monotonic() < deadline, f"{path} stayed {r.status_code}: {r.text[:300]}"
        time.sleep(0.2)


def test_health_and_readiness_at_the_base_url_need_every_service(cluster: E2E) -> None:
    ready = wait_status(cluster.base_url, "/readyz", 200)
    assert ready["status"] == "ready" and ready["broker"] == "ok" and ready["database"] == "ok"
    assert set(ready["services"]) == set(SERVICES)
    assert all(s["status"] == "ready" for s in ready["services"].values())
    assert get(cluster.base_url, "/healthz").json()["status"] == "ok"

    pid = cluster.cluster.pids["scheduler"]
    os.kill(pid, signal.SIGSTOP)  # the scheduler stops answering (its port stays open: nginx would 502/504)
    try:
        down = wait_status(cluster.base_url, "/readyz", 503)
        assert down["status"] == "not ready"
        assert down["services"]["scheduler"]["status"] == "not ready"
        assert all(down["services"][s]["status"] == "ready" for s in SERVICES if s != "scheduler")
        assert wait_status(cluster.base_url, "/healthz", 503)["services"]["scheduler"]["status"] == "not ready"
        assert get(cluster.base_url, "/api/v1/readyz").status_code == 503
    finally:
        os.kill(pid, signal.SIGCONT)
    assert wait_status(cluster.base_url, "/readyz", 200)["status"] == "ready"


@pytest.fixture
def embedded_url(tmp_path: Path) -> Iterator[str]:
    with database("sqlite", tmp_path) as url:
        for stack in start_stack(tmp_path, url):
            yield stack.url


def test_openapi_is_the_whole_api_and_the_embedded_document(cluster: E2E, embedded_url: str) -> None:
    distributed = get(cluster.base_url, "/openapi.json")
    assert distributed.status_code == 200, distributed.text
    merged, embedded = distributed.json(), get(embedded_url, "/openapi.json").json()
    assert merged == embedded
    assert list(merged["paths"]) == list(embedded["paths"])
    paths = set(merged["paths"])
    # every service's routes are there, not only the dropzone's
    for path in ("/api/v1/sites", "/api/v1/imports/{import_id}/validation", "/api/v1/sites/{site}/thresholds",
                 "/api/v1/imports/{import_id}/preview", "/api/v1/sites/{site}/establishments/{est}/sessions",
                 "/api/v1/sites/{site}/imports", "/api/v1/sites/{site}/changes",
                 "/api/v1/sites/{site}/tokens/{token_id}",
                 "/api/v1/sites/{site}/establishments/{est}/calendar/{kind}/{ident}/subscription",
                 "/api/v1/imports/{import_id}/abort", "/api/v1/imports/{import_id}/undo"):
        assert path in paths, path
    print(f"\n/openapi.json through nginx: {len(paths)} paths, identical to the embedded document")


ASSET = re.compile(r"""(?:src|href|spec-url)\s*=\s*["']([^"']+)["']|url\s*:\s*["']([^"']+)["']""")


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_documentation_pages_load_their_assets_from_the_product(cluster: E2E, page: str) -> None:
    r = get(cluster.base_url, page)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "http://" not in r.text and "https://" not in r.text, "no CDN, no external font"
    refs = [a or b for a, b in ASSET.findall(r.text)]
    assert "/openapi.json" in refs
    if page == "/docs":
        assert '"validatorUrl": null' in r.text  # no badge fetched from swagger.io
    assets = [ref for ref in refs if ref.startswith("/docs/assets/")]
    assert any(a.endswith(".js") for a in assets)
    for ref in assets:
        asset = get(cluster.base_url, ref)
        assert asset.status_code == 200 and len(asset.content) > 1000, ref
        kind = "javascript" if ref.endswith(".js") else "css" if ref.endswith(".css") else "image"
        assert kind in asset.headers["content-type"], (ref, asset.headers["content-type"])
