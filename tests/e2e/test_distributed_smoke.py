"""Smoke test of the distributed deployment: six processes behind nginx answer the contract at one URL."""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from deploy.nginx import SERVICES, render_nginx_conf
from deploy.supervisor import ClusterError, find_nginx, free_port, http_status
from tests.e2e.conftest import E2E

pytestmark = [pytest.mark.e2e]


def test_cluster_processes_and_pid_files(cluster: E2E) -> None:
    pids = cluster.cluster.pids
    assert set(SERVICES) | {"nginx"} <= set(pids)
    for name, pid in pids.items():
        assert (cluster.data_dir / "run" / f"{name}.pid").read_text().strip() == str(pid)
        assert (cluster.data_dir / "logs" / f"{name}.log").exists()


def test_health_through_nginx(cluster: E2E) -> None:
    r = httpx.get(f"{cluster.base_url}/healthz", timeout=10, trust_env=False)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "ok" and set(r.json()["services"]) == set(SERVICES)
    assert httpx.get(f"{cluster.base_url}/readyz", timeout=10, trust_env=False).status_code == 200


def test_site_establishment_and_empty_history(cluster: E2E) -> None:
    site, est = f"s{uuid.uuid4().hex[:8]}", "1754"
    with cluster.client() as c:
        r = c.post("/api/v1/sites", json={"id": site, "name": "Cité scolaire e2e"})
        assert r.status_code == 201, r.text
        assert r.json()["id"] == site
        r = c.put(f"/api/v1/sites/{site}/establishments/{est}", json={"uai": "0490856P", "name": "Collège"})
        assert r.status_code in (200, 201), r.text
        r = c.get(f"/api/v1/sites/{site}")
        assert r.status_code == 200, r.text
        assert [e["id"] for e in r.json()["establishments"]] == [est]
        r = c.get(f"/api/v1/sites/{site}/imports")  # served by the notifier
        assert r.status_code == 200, r.text
        assert r.json() == {"items": [], "next_cursor": None}
        # Without a token: the services' problem+json, through the proxy.
        r = httpx.get(f"{cluster.base_url}/api/v1/sites/{site}", timeout=10, trust_env=False)
        assert r.status_code == 401
        assert r.headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_metrics(cluster: E2E, service: str) -> None:
    r = httpx.get(f"{cluster.base_url}/metrics/{service}", timeout=10, trust_env=False)
    assert r.status_code == 200, r.text
    for family in ("edt_stage_messages_in_total", "edt_stage_duration_seconds", "edt_bus_dead_lettered_total",
                   "edt_webdav_requests_total", "edt_imports", "edt_queue_ready_messages"):
        assert f"# HELP {family} " in r.text, (service, family)


def test_queue_gauges_come_from_the_management_api(cluster: E2E) -> None:
    """The notifier refreshes the stage queues' gauges from RabbitMQ before each scrape."""
    deadline = time.monotonic() + 30
    while True:
        text = httpx.get(f"{cluster.base_url}/metrics/notifier", timeout=10, trust_env=False).text
        line = next((x for x in text.splitlines() if x.startswith("edt_queue_consumers{")
                     and 'queue="edt.validate"' in x), None)
        if line is not None and float(line.rsplit(" ", 1)[1]) >= 1:
            return
        assert time.monotonic() < deadline, line
        time.sleep(0.5)


def test_the_console_through_nginx(cluster: E2E) -> None:
    r = httpx.get(f"{cluster.base_url}/console/", timeout=10, trust_env=False)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "Connexion à la console" in r.text and "default-src 'self'" in r.headers["content-security-policy"]
    script = httpx.get(f"{cluster.base_url}/console/static/lib.js", timeout=10, trust_env=False)
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    root = httpx.get(f"{cluster.base_url}/", timeout=10, trust_env=False)
    assert root.status_code == 302 and root.headers["location"] == "/console/"


# --- the proxy's routing table, against stub upstreams that say who they are ------------------------

ROUTES = [
    ("GET", "/", "notifier"),
    ("GET", "/console", "notifier"),
    ("GET", "/console/", "notifier"),
    ("GET", "/console/sites/4817/imports/abc123", "notifier"),
    ("GET", "/console/static/pages/import.js", "notifier"),
    ("PROPFIND", "/webdav/", "dropzone"),
    ("PUT", "/webdav/4817/1754/EDT%20To%20KOSMOS.xml", "dropzone"),
    ("GET", "/healthz", "notifier"),
    ("GET", "/readyz", "notifier"),
    ("GET", "/metrics", "notifier"),
    ("GET", "/api/v1/healthz", "notifier"),
    ("GET", "/api/v1/readyz", "notifier"),
    ("GET", "/api/v1/metrics", "notifier"),
    ("GET", "/ops/readyz", "notifier"),
    ("GET", "/openapi.json", "notifier"),
    ("GET", "/docs", "notifier"),
    ("GET", "/redoc", "notifier"),
    ("GET", "/docs/assets/swagger-ui-bundle.js", "notifier"),
    ("POST", "/api/v1/sites", "dropzone"),
    ("GET", "/api/v1/sites/4817", "dropzone"),
    ("PATCH", "/api/v1/sites/4817", "dropzone"),
    ("GET", "/api/v1/sites/4817/establishments", "dropzone"),
    ("PUT", "/api/v1/sites/4817/establishments/1754", "dropzone"),
    ("POST", "/api/v1/sites/4817/tokens", "dropzone"),
    ("GET", "/api/v1/sites/4817/tokens", "dropzone"),
    ("DELETE", "/api/v1/sites/4817/tokens/0123456789abcdef", "dropzone"),
    ("POST", "/api/v1/sites/4817/accounts", "dropzone"),
    ("GET", "/api/v1/sites/4817/accounts", "dropzone"),
    ("POST", "/api/v1/sites/4817/accounts/emp.thibault.bourgeois/password", "dropzone"),
    ("PATCH", "/api/v1/sites/4817/accounts/emp.thibault.bourgeois", "dropzone"),
    ("DELETE", "/api/v1/sites/4817/accounts/emp.thibault.bourgeois", "dropzone"),
    ("POST", "/api/v1/sites/4817/establishments/1754/imports", "dropzone"),
    ("POST", "/api/v1/sites/4817/deposits", "dropzone"),
    ("GET", "/api/v1/sites/4817/imports?status=done&limit=2", "notifier"),
    ("GET", "/api/v1/sites/4817/events", "notifier"),
    ("GET", "/api/v1/sites/4817/changes", "notifier"),
    ("GET", "/api/v1/imports/abc123", "notifier"),
    ("GET", "/api/v1/imports/abc123/source", "notifier"),
    ("GET", "/api/v1/imports/abc123/report", "notifier"),
    ("GET", "/api/v1/imports/abc123/events", "notifier"),
    ("POST", "/api/v1/imports/abc123/cancel", "notifier"),
    ("POST", "/api/v1/imports/abc123/abort", "notifier"),
    ("POST", "/api/v1/imports/abc123/undo", "notifier"),
    ("GET", "/api/v1/ops/queues", "notifier"),
    ("GET", "/api/v1/ops/access-log", "notifier"),
    ("POST", "/api/v1/ops/retention/run", "notifier"),
    ("GET", "/api/v1/sites/4817/persons/ent-42", "notifier"),
    ("DELETE", "/api/v1/sites/4817/persons/ent-42", "notifier"),
    ("GET", "/api/v1/sites/4817/thresholds", "thresholds"),
    ("PUT", "/api/v1/sites/4817/thresholds", "thresholds"),
    ("GET", "/api/v1/sites/4817/establishments/1754/closures", "thresholds"),
    ("PUT", "/api/v1/sites/4817/establishments/1754/directory", "reconciler"),
    ("POST", "/api/v1/sites/4817/establishments/1754/pronote-ids?mode=partial", "reconciler"),
    ("GET", "/api/v1/sites/4817/establishments/1754/groups", "reconciler"),
    ("GET", "/api/v1/imports/abc123/preview", "reconciler"),
    ("PUT", "/api/v1/imports/abc123/selection", "reconciler"),
    ("POST", "/api/v1/imports/abc123/confirm", "reconciler"),
    ("GET", "/api/v1/imports/abc123/unreconciled?kind=teachers", "reconciler"),
    ("GET", "/api/v1/sites/4817/establishments/1754/courses", "scheduler"),
    ("GET", "/api/v1/sites/4817/establishments/1754/sessions?from=2026-09-01&to=2026-09-30", "scheduler"),
    ("GET", "/api/v1/sites/4817/establishments/1754/calendar/class/3%20A.ics", "scheduler"),
    ("GET", "/api/v1/sites/4817/establishments/1754/calendar/class/3%20A.ics?key=abc.def", "scheduler"),
    ("POST", "/api/v1/sites/4817/establishments/1754/calendar/class/3A/subscription", "scheduler"),
    ("DELETE", "/api/v1/sites/4817/establishments/1754/calendar/class/3A/subscription", "scheduler"),
]
# The product's health is the gateway's (the notifier's view of every service).
REWRITTEN = {"/healthz": "/ops/healthz", "/readyz": "/ops/readyz",
             "/api/v1/healthz": "/ops/healthz", "/api/v1/readyz": "/ops/readyz"}


class _Stub(http.server.BaseHTTPRequestHandler):
    service = "?"
    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        body = json.dumps({"service": self.service, "method": self.command, "path": self.path,
                           "headers": {k.lower(): v for k, v in self.headers.items()}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _answer
    do_PROPFIND = do_MOVE = do_COPY = do_MKCOL = do_LOCK = do_UNLOCK = _answer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass


@pytest.fixture(scope="module")
def routed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """nginx with the rendered template in front of one stub server per service; yields its base URL."""
    tmp = tmp_path_factory.mktemp("nginx-routing")
    servers: dict[str, list[str]] = {}
    stubs: list[http.server.ThreadingHTTPServer] = []
    for service in SERVICES:
        handler = type(f"Stub_{service}", (_Stub,), {"service": service})
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        stubs.append(server)
        servers[service] = [f"127.0.0.1:{server.server_address[1]}"]
    port = free_port()
    (tmp / "logs").mkdir()
    conf = render_nginx_conf(listen=f"127.0.0.1:{port}", servers=servers, max_upload_mb=1,
                             pid_file=str(tmp / "nginx.pid"), error_log=str(tmp / "logs" / "error.log"),
                             access_log=str(tmp / "logs" / "access.log"), temp_dir=str(tmp),
                             user="root" if os.geteuid() == 0 else None)
    (tmp / "nginx.conf").write_text(conf)
    try:
        nginx = find_nginx(os.environ)
    except ClusterError as exc:
        pytest.fail(str(exc))
    proc = subprocess.Popen([nginx, "-p", str(tmp), "-c", str(tmp / "nginx.conf"), "-e",
                             str(tmp / "logs" / "error.log"), "-g", "daemon off;"], stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 15
        while http_status(f"{base}/healthz") != 200:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else "nginx exited"
            assert time.monotonic() < deadline, "nginx did not start"
            time.sleep(0.05)
        yield base
    finally:
        proc.terminate()
        proc.wait(10)
        for server in stubs:
            server.shutdown()
            server.server_close()


@pytest.mark.parametrize(("method", "path", "service"), ROUTES, ids=[f"{m} {p}" for m, p, _ in ROUTES])
def test_routing_table(routed: str, method: str, path: str, service: str) -> None:
    r = httpx.request(method, f"{routed}{path}", timeout=10, trust_env=False, content=b"x" if method == "PUT" else None)
    assert r.status_code == 200, r.text
    seen = r.json()
    assert (seen["service"], seen["method"]) == (service, method)
    assert seen["path"] == REWRITTEN.get(path, path)  # the original URI, query and %-encoding untouched


@pytest.mark.parametrize("service", SERVICES)
def test_metrics_per_service_are_rewritten(routed: str, service: str) -> None:
    seen = httpx.get(f"{routed}/metrics/{service}", timeout=10, trust_env=False).json()
    assert (seen["service"], seen["path"]) == (service, "/metrics")


def test_webdav_headers_pass_unchanged(routed: str) -> None:
    host = routed.removeprefix("http://")
    headers = {"Destination": f"{routed}/webdav/4817/1754/b%C3%A9.xml", "Overwrite": "F", "Depth": "infinity",
               "If": "(<opaquelocktoken:abc>)", "Lock-Token": "<opaquelocktoken:abc>", "Timeout": "Second-600"}
    seen = httpx.request("MOVE", f"{routed}/webdav/4817/1754/a.xml", headers=headers, timeout=10,
                         trust_env=False).json()
    assert seen["service"] == "dropzone"
    for name, value in headers.items():
        assert seen["headers"][name.lower()] == value
    assert seen["headers"]["host"] == host  # Destination is checked against it
    assert seen["headers"]["x-forwarded-proto"] == "http"
    assert seen["headers"]["x-forwarded-host"] == host


def test_body_over_the_cap_is_a_problem(routed: str) -> None:
    r = httpx.post(f"{routed}/api/v1/sites/4817/deposits", content=b"x" * (4 * 1024 * 1024), timeout=10,
                   trust_env=False)
    assert r.status_code == 413
    assert r.headers["content-type"] == "application/problem+json"
