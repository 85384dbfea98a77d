"""A real WebDAV server (uvicorn on a loopback port, in a thread) in front of a fake deposit gate.

Shape of the `webdav_server` fixture (a `WebdavServer`):

- `base_url` — ``http://127.0.0.1:PORT/webdav`` (no trailing slash); `url("4817", "1754", "x.xml")` joins
  segments below it (a trailing ``/`` for folders: `url("4817", "1754", "")`);
- `site` ``"4817"`` with `establishments` ``("1754", "4817")``, its account `login` / `password`
  (`auth` is the pair);
- `other_site` ``"9999"`` (establishment ``"9999"``) with its own account `other_login` / `other_password`;
- `deposits` — the `take_deposit` calls recorded so far, as `Deposit(site, establishment, name, data, login)`
  (`data` is the file's bytes, read while the call runs);
- `root_dir` — the WebDAV folder on disk; `max_upload_bytes` — the size cap (1 MiB);
- `gate` — the `FakeGate` (`fail_deposits = True` makes `take_deposit` raise).

To run the same tests against the real dropzone, build another `WebdavServer` whose `deposits` reads the
dropzone's recorded deposits; the tests only use the attributes above.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI

from services.dropzone.webdav import mount_webdav

SITE = "4817"
ESTABLISHMENTS = ("1754", "4817")
LOGIN, PASSWORD = "emp.jean.dupont", "qAz8TOHpdf"
OTHER_SITE = "9999"
OTHER_LOGIN, OTHER_PASSWORD = "emp.marie.curie", "Zx9pLm2QrT"
MAX_UPLOAD_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Deposit:
    site: str
    establishment: str | None
    name: str
    data: bytes
    login: str


@dataclass
class FakeGate:
    """In-memory `DepositGate`: two sites, one account each, deposits kept in a list."""

    sites: dict[str, list[str]] = field(default_factory=lambda: {SITE: list(ESTABLISHMENTS), OTHER_SITE: [OTHER_SITE]})
    accounts: dict[str, tuple[str, str]] = field(default_factory=lambda: {
        LOGIN: (PASSWORD, SITE), OTHER_LOGIN: (OTHER_PASSWORD, OTHER_SITE)})
    deposits: list[Deposit] = field(default_factory=list)
    fail_deposits: bool = False
    auth_calls: int = 0

    async def authenticate(self, login: str, password: str, client_ip: str) -> str | None:
        self.auth_calls += 1
        known = self.accounts.get(login)
        return known[1] if known is not None and known[0] == password else None

    async def establishment_ids(self, site: str) -> list[str] | None:
        ests = self.sites.get(site)
        return None if ests is None else list(ests)

    async def take_deposit(self, site: str, establishment: str | None, name: str, path: Path, login: str) -> None:
        if self.fail_deposits:
            raise RuntimeError("blob store unavailable")
        data = await asyncio.to_thread(path.read_bytes)
        self.deposits.append(Deposit(site, establishment, name, data, login))


@dataclass
class WebdavServer:
    base_url: str
    root_dir: Path
    gate: FakeGate
    max_upload_bytes: int = MAX_UPLOAD_BYTES
    site: str = SITE
    establishments: tuple[str, ...] = ESTABLISHMENTS
    login: str = LOGIN
    password: str = PASSWORD
    other_site: str = OTHER_SITE
    other_login: str = OTHER_LOGIN
    other_password: str = OTHER_PASSWORD

    @property
    def deposits(self) -> list[Deposit]:
        return self.gate.deposits

    @property
    def auth(self) -> tuple[str, str]:
        return (self.login, self.password)

    @property
    def host_port(self) -> tuple[str, int]:
        hostport = self.base_url.split("//", 1)[1].split("/", 1)[0]
        host, port = hostport.rsplit(":", 1)
        return host, int(port)

    def url(self, *segments: str) -> str:
        return "/".join([self.base_url, *segments])

    def path(self, *segments: str) -> str:
        """The request path (no scheme/host) of `url(*segments)`."""
        return "/" + self.url(*segments).split("//", 1)[1].split("/", 1)[1]


class _ServerThread:
    def __init__(self, app: FastAPI) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=2)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True,
                                       name="webdav-uvicorn")

    def start(self) -> _ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


def start_webdav_server(root: Path, gate: FakeGate | None = None, max_upload_bytes: int = MAX_UPLOAD_BYTES
                        ) -> tuple[WebdavServer, _ServerThread]:
    gate = gate or FakeGate()
    app = FastAPI()
    root_dir = root / "webdav"
    mount_webdav(app, root_dir, gate, max_upload_bytes=max_upload_bytes, workers=16)
    thread = _ServerThread(app).start()
    return WebdavServer(f"http://127.0.0.1:{thread.port}/webdav", root_dir, gate, max_upload_bytes), thread


@pytest.fixture
def webdav_server(tmp_path: Path) -> Iterator[WebdavServer]:
    server, thread = start_webdav_server(tmp_path)
    try:
        yield server
    finally:
        thread.stop()
