"""Test harness: a real server (embedded app under uvicorn in a thread), real databases, REST helpers.

Tests talk to the product the way its users do: WebDAV and REST over loopback sockets.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import secrets
import shutil
import socket
import ssl
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from shared.blobs import generate_key
from tests.factory import current_school_year

TLS = ssl.create_default_context()
PG_ADMIN_DSN = os.environ.get("EDT_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
AMQP_URL = os.environ.get("EDT_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672/")
TERMINAL = {"done", "previewed", "rejected", "blocked", "failed", "superseded", "cancelled"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# Sample exports cover the current school year, so that their sessions lie ahead of the import time.
CURRENT_SCHOOL_YEAR = current_school_year()


@lru_cache(maxsize=16)
def _school_xml(uais: tuple[str, ...], seed: int) -> bytes:
    from tests.factory import make_school

    return make_school("XS2" if len(uais) > 1 else "XS", seed, uai=list(uais), year=CURRENT_SCHOOL_YEAR).to_xml_bytes()


def sample_xml(uai: str = "0490856P", marker: str = "", establishments: list[str] | None = None,
               seed: int = 1) -> bytes:
    """A small valid export (tests.factory's XS school, or its two-establishment XS2 twin when
    `establishments` lists several UAIs); `marker` (a trailing comment) makes each file's sha256 differ."""
    uais = tuple(establishments) if establishments and len(establishments) > 1 else (uai,)
    return _school_xml(uais, seed) + f"<!-- {marker or uuid.uuid4().hex} -->\n".encode()


# --- databases ------------------------------------------------------------------------------------

async def _pg_admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


PG_BASE = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
# Databases migrated once per test process, then copied for each test (a file copy for SQLite, CREATE
# DATABASE … TEMPLATE for PostgreSQL): the same schema as `upgrade` gives, without replaying every
# migration for every stack (0.7 s on SQLite, 1.9 s on PostgreSQL, hundreds of times a run).
_templates: dict[str, str] = {}


def _template(kind: str) -> str:
    if kind not in _templates:
        from deploy.migrate import upgrade

        if kind == "sqlite":
            path = Path(tempfile.gettempdir()) / f"edt-template-{os.getpid()}-{uuid.uuid4().hex[:6]}.db"
            upgrade(f"sqlite+aiosqlite:///{path}")
            atexit.register(path.unlink, missing_ok=True)
            _templates[kind] = str(path)
        else:
            name = f"edt_template_{os.getpid()}_{uuid.uuid4().hex[:6]}"
            _create_database(name)
            upgrade(f"{PG_BASE}/{name}")
            atexit.register(lambda: asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')))
            _templates[kind] = name
    return _templates[kind]


def _create_database(name: str, template: str | None = None) -> None:
    try:
        asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else "")))
    except OSError as exc:
        raise RuntimeError(f"PostgreSQL unreachable at {PG_ADMIN_DSN}: {exc}") from exc


@contextmanager
def postgres_database(migrated: bool = False) -> Iterator[str]:
    """A fresh PostgreSQL database (`migrated`: at the latest schema), dropped afterwards. Fails (never
    skips) when the server is down."""
    name = f"edt_test_{uuid.uuid4().hex[:10]}"
    _create_database(name, _template("postgres") if migrated else None)
    try:
        yield f"{PG_BASE}/{name}"
    finally:
        asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextmanager
def database(kind: str, tmp: Path, migrated: bool = True) -> Iterator[str]:
    """A fresh database of `kind` for one test, at the latest schema unless `migrated` is false."""
    if kind == "sqlite":
        path = tmp / "edt.db"
        if migrated:
            path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(_template("sqlite"), path)
        yield f"sqlite+aiosqlite:///{path}"
    else:
        with postgres_database(migrated) as url:
            yield url


# --- server ---------------------------------------------------------------------------------------

START_TIMEOUT_S = 90


class ServerThread:
    """uvicorn serving an ASGI app on a free loopback port, in a thread with its own event loop."""

    def __init__(self, app: Any, port: int | None = None) -> None:
        self.app = app
        self.port = port or free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    lifespan="on", timeout_graceful_shutdown=2))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.loop: asyncio.AbstractEventLoop | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServerThread:
        self.thread.start()
        # As long as a cluster's start (EDT_START_TIMEOUT 90 in the e2e tests): on RabbitMQ the services
        # declare a dozen quorum queues, each slow while the fault suite runs beside `make test`.
        began = time.monotonic()
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("server did not start: its startup failed (see the captured log)")
            if time.monotonic() - began > START_TIMEOUT_S:
                raise RuntimeError(f"server did not start within {START_TIMEOUT_S} s")
            time.sleep(0.05)
        self.loop = getattr(self.app.state, "loop", None)  # set by the app's lifespan (shared.web)
        return self

    def call(self, fn: Callable[[], Any]) -> None:
        """Run `fn` on the server's event loop (e.g. pause a consumer of the in-process bus)."""
        assert self.loop is not None
        done = threading.Event()

        def run() -> None:
            fn()
            done.set()

        self.loop.call_soon_threadsafe(run)
        done.wait(5)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)


# --- REST client ----------------------------------------------------------------------------------

@dataclass
class Api:
    base_url: str
    admin_token: str

    def client(self, token: str | None = None) -> httpx.Client:
        # One TLS context for every client: httpx builds (and loads the CA bundle into) a new one per
        # client otherwise, ~40 ms of CPU under the GIL the server thread of an embedded stack shares.
        return httpx.Client(base_url=self.base_url, timeout=30, verify=TLS, trust_env=False,
                            headers={"Authorization": f"Bearer {token or self.admin_token}"})

    def call(self, method: str, path: str, token: str | None = None, **kw: Any) -> httpx.Response:
        with self.client(token) as c:
            return c.request(method, f"/api/v1{path}", **kw)

    def ok(self, method: str, path: str, token: str | None = None, **kw: Any) -> Any:
        r = self.call(method, path, token, **kw)
        assert r.status_code < 300, f"{method} {path} → {r.status_code} {r.text}"
        return r.json() if r.content else None

    def create_site(self, site: str, establishments: dict[str, str], name: str | None = None) -> None:
        self.ok("POST", "/sites", json={"id": site, "name": name or f"Site {site}"})
        for est, uai in establishments.items():
            self.ok("PUT", f"/sites/{site}/establishments/{est}", json={"uai": uai, "name": f"Etab {est}"})

    def site_token(self, site: str) -> str:
        return str(self.ok("POST", f"/sites/{site}/tokens")["token"])

    def upload(self, site: str, est: str | None, data: bytes, name: str = "EDT_To_KOSMOS.xml",
               mode: str = "manual", dry_run: bool = False, token: str | None = None) -> str:
        path = f"/sites/{site}/establishments/{est}/imports" if est else f"/sites/{site}/deposits"
        body = self.ok("POST", path, token, files={"file": (name, data, "application/xml")},
                       data={"mode": mode, "dry_run": str(dry_run).lower()})
        return str(body["import_id"])

    def get_import(self, import_id: str, token: str | None = None) -> dict[str, Any]:
        return dict(self.ok("GET", f"/imports/{import_id}", token))

    def wait(self, import_id: str, statuses: set[str] | None = None, timeout: float = 30) -> dict[str, Any]:
        """Poll the history API until the import reaches one of `statuses` (default: any terminal one). Like
        a front-end, it takes the first answer it gets: an import the API handed out is readable at once,
        so anything but 200 fails the test (never a poll past a 404 or a 502)."""
        wanted = statuses or TERMINAL
        deadline = time.monotonic() + timeout
        last: dict[str, Any] = {}
        while time.monotonic() < deadline:
            r = self.call("GET", f"/imports/{import_id}")
            assert r.status_code == 200, f"GET /imports/{import_id} → {r.status_code} {r.text[:200]}"
            last = r.json()
            if last["status"] in wanted:
                return last
            time.sleep(0.05)
        raise AssertionError(f"import {import_id} never reached {wanted}; last seen: {last}")

    def history(self, site: str, **params: Any) -> list[dict[str, Any]]:
        return list(self.ok("GET", f"/sites/{site}/imports", params=params)["items"])

    def first_import(self, site: str, est: str, data: bytes) -> dict[str, Any]:
        """The manual import that opens a site to automatic deposits (seed 001)."""
        return self.wait(self.upload(site, est, data, mode="manual"), {"done"})

    def create_account(self, site: str, first: str = "Thibault", last: str = "Bourgeois",
                       token: str | None = None) -> dict[str, Any]:
        return dict(self.ok("POST", f"/sites/{site}/accounts", token,
                            json={"first_name": first, "last_name": last, "notify": True}))


@dataclass
class Put:
    status: int
    import_id: str | None  # X-Import-Id: the import the deposit made, readable at once


def curl_put(url: str, login: str, password: str, path: Path, *extra: str) -> Put:
    """`curl -T` as timetable software deposits (HTTP Basic), keeping the answer's X-Import-Id."""
    import subprocess

    out = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-D", "-", "-w", "\n%{http_code}", *extra,
                          "-u", f"{login}:{password}", "-T", str(path), url],
                         capture_output=True, text=True, timeout=300, check=True)
    *headers, code = out.stdout.rstrip("\n").split("\n")
    found = [h.split(":", 1)[1].strip() for h in headers if h.lower().startswith("x-import-id:")]
    return Put(int(code), found[-1] if found else None)


def test_settings_env(tmp: Path, database_url: str, broker_url: str = "memory://") -> dict[str, str]:
    return {
        "EDT_DATABASE_URL": database_url,
        "EDT_BROKER_URL": broker_url,
        "EDT_BLOB_DIR": str(tmp / "blobs"),
        "EDT_DATA_DIR": str(tmp / "data"),
        "EDT_ADMIN_TOKEN": "admin-" + secrets.token_hex(12),
        "EDT_SECRET_KEY": secrets.token_hex(16),
        "EDT_BLOB_KEY": generate_key(),
        "EDT_MAX_UPLOAD_MB": "2",
        "EDT_RETRY_BACKOFF_S": "0.05",
        "EDT_LOGIN_LOCKOUT_S": "60",
    }
