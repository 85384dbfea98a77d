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
import dataclasses
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI

from services.dropzone.landings import Landings
from services.dropzone.webdav import webdav_factory
from shared.blobs import Keyring
from shared.web import LazyMount

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


KEYRING = Keyring.generate()  # the WebDAV layer seals what it stores, with the blob store's keys


def unseal(path: Path, keyring: Keyring = KEYRING) -> bytes:
    """The plaintext of a file of the deposit space (sealed on disk)."""
    with keyring.open(path) as f:
        return f.read()


@dataclass
class FakeGate:
    """In-memory `DepositGate`: two sites, one account each, deposits kept in a list."""

    sites: dict[str, list[str]] = field(default_factory=lambda: {SITE: list(ESTABLISHMENTS), OTHER_SITE: [OTHER_SITE]})
    accounts: dict[str, tuple[str, str]] = field(default_factory=lambda: {
        LOGIN: (PASSWORD, SITE), OTHER_LOGIN: (OTHER_PASSWORD, OTHER_SITE)})
    deposits: list[Deposit] = field(default_factory=list)
    reads: list[tuple[str, str, str]] = field(default_factory=list)  # (site, path, login) of each GET
    fail_deposits: bool = False
    auth_calls: int = 0

    async def authenticate(self, login: str, password: str, client_ip: str) -> str | None:
        self.auth_calls += 1
        known = self.accounts.get(login)
        return known[1] if known is not None and known[0] == password else None

    async def establishment_ids(self, site: str) -> list[str] | None:
        ests = self.sites.get(site)
        return None if ests is None else list(ests)

    async def file_read(self, site: str, path: str, login: str) -> None:
        self.reads.append((site, path, login))

    async def take_deposit(self, site: str, establishment: str | None, name: str, path: Path, login: str) -> str:
        if self.fail_deposits:
            raise RuntimeError("blob store unavailable")
        data = await asyncio.to_thread(unseal, path)
        self.deposits.append(Deposit(site, establishment, name, data, login))
        return f"import-{len(self.deposits)}"


@dataclass
class WebdavServer:
    base_url: str
    root_dir: Path
    gate: FakeGate
    max_upload_bytes: int = MAX_UPLOAD_BYTES
    keyring: Keyring = KEYRING
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


def start_webdav_server(root: Path, gate: FakeGate | None = None, max_upload_bytes: int = MAX_UPLOAD_BYTES,
                        landings: Landings | None = None) -> tuple[WebdavServer, _ServerThread]:
    gate = gate or FakeGate()
    app = FastAPI()
    root_dir = root / "webdav"
    landings = landings or Landings(root_dir, grace_s=300, stale_s=24 * 3600)
    # Mounted as the dropzone's Service.mounts are in production (shared.web.create_app).
    app.mount("/webdav", LazyMount(webdav_factory(root_dir, gate, KEYRING, landings, max_upload_bytes=max_upload_bytes,
                                                  workers=16)))
    thread = _ServerThread(app).start()
    return WebdavServer(f"http://127.0.0.1:{thread.port}/webdav", root_dir, gate, max_upload_bytes), thread


@pytest.fixture
def fake_webdav_server(tmp_path: Path) -> Iterator[WebdavServer]:
    """The WebDAV layer alone, in front of `FakeGate` (for tests that steer the gate)."""
    server, thread = start_webdav_server(tmp_path)
    try:
        yield server
    finally:
        thread.stop()


@dataclass
class RealWebdavServer(WebdavServer):
    """The whole embedded product: the same attributes, deposits read back through the REST API."""

    api: Any = None
    database_url: str = ""
    before: frozenset[str] = frozenset()  # imports made before this test (the server is the module's)

    @property
    def deposits(self) -> list[Deposit]:
        # A deposit is answered once the history lists it (read-your-writes): one read is the truth.
        return self._read_deposits()

    def webdav_items(self) -> list[tuple[str, str, dict[str, Any]]]:
        """(site, login, history item) of every WebDAV deposit of both sites."""
        return [(site, login, item)
                for site, login in ((self.site, self.login), (self.other_site, self.other_login))
                for item in self.api.history(site, limit=500) if item["source"] == "webdav"]

    def clear_folders(self) -> None:
        """Delete, over WebDAV as a client would, what earlier tests left in the establishments' folders
        (a deposited file stays listed for its grace period)."""
        import httpx
        from lxml import etree

        folders = [(self.auth, (self.site, est)) for est in self.establishments]
        folders.append(((self.other_login, self.other_password), (self.other_site, self.other_site)))
        for auth, (site, est) in folders:
            with httpx.Client(auth=auth, timeout=10) as client:
                url = self.url(site, est, "")
                listing = client.request("PROPFIND", url, headers={"Depth": "1"})
                assert listing.status_code == 207, listing.text
                hrefs = [e.text for e in etree.fromstring(listing.content).iter("{DAV:}href")]
                for href in hrefs:
                    if href and not url.endswith(href):
                        assert client.delete(url.split("/webdav", 1)[0] + href).status_code in (200, 204, 404)

    def _read_deposits(self) -> list[Deposit]:
        found = []
        for site, login, item in self.webdav_items():
            if item["id"] in self.before:
                continue
            data = self.api.call("GET", f"/imports/{item['id']}/source", params={"raw": "true"}).content
            found.append((item["created_at"], Deposit(site, item["establishment"], item["file"]["name"], data,
                                                      item.get("account") or login)))
        return [d for _, d in sorted(found, key=lambda pair: pair[0])]


def start_real_webdav_server(tmp_path: Path, **overrides: str) -> Iterator[RealWebdavServer]:
    from tests.harness import database, sample_xml
    from tests.integration.conftest import start_stack

    with database("sqlite", tmp_path) as url:
        stacks = start_stack(tmp_path, url, EDT_MAX_UPLOAD_MB=str(MAX_UPLOAD_BYTES // (1024 * 1024)), **overrides)
        stack = next(stacks)
        api = stack.api
        api.create_site(SITE, {"1754": "0490856P", "4817": "0490857R"})
        api.create_site(OTHER_SITE, {OTHER_SITE: "0490858S"})
        api.first_import(SITE, "1754", sample_xml("0490856P"))
        api.first_import(OTHER_SITE, OTHER_SITE, sample_xml("0490858S"))
        mine, other = api.create_account(SITE, "Jean", "Dupont"), api.create_account(OTHER_SITE, "Marie", "Curie")
        yield RealWebdavServer(f"{stack.url}/webdav", stack.settings.data_dir / "webdav", None,  # type: ignore[arg-type]
                               MAX_UPLOAD_BYTES, stack.runtime.blobs.keyring, login=mine["login"],
                               password=mine["password"], other_login=other["login"],
                               other_password=other["password"], api=api, database_url=url)
        stacks.close()


@pytest.fixture(scope="module")
def product_webdav_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealWebdavServer]:
    """The whole embedded product, one per test module: its sites' first imports are what it costs."""
    yield from start_real_webdav_server(tmp_path_factory.mktemp("product"))


@pytest.fixture(params=["webdav-layer", "product"])
def webdav_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[WebdavServer]:
    """Each protocol test runs twice: on the WebDAV layer with a fake gate (a fresh one per test), and on
    the whole embedded product (real dropzone, blob store, pipeline, history API), where a test sees the
    deposits made since it started."""
    if request.param == "webdav-layer":
        yield from fake_webdav_server.__wrapped__(tmp_path)  # type: ignore[attr-defined]
    else:
        product: RealWebdavServer = request.getfixturevalue("product_webdav_server")
        product.clear_folders()
        yield dataclasses.replace(product, before=frozenset(item["id"] for *_, item in product.webdav_items()))
