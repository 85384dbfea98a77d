"""E2E fixtures: the distributed deployment (deploy.supervisor.Cluster: six service processes behind
nginx) on a fresh PostgreSQL database and a private RabbitMQ vhost, on free loopback ports.

`cluster` is one cluster for the whole session; `cluster_factory` starts private ones (e.g. with
`EDT_CONSUMERS_VALIDATOR=2`, or for tests that kill and restart services). Both fail — never skip —
when PostgreSQL or RabbitMQ is unreachable.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from deploy.supervisor import Cluster, ClusterError, tcp_reachable
from shared.blobs import generate_key
from tests.harness import AMQP_URL, Api, postgres_database

MANAGEMENT_URL = os.environ.get("EDT_TEST_RABBITMQ_MANAGEMENT", "http://guest:guest@127.0.0.1:15672")


@dataclass
class E2E:
    cluster: Cluster
    base_url: str
    admin_token: str
    database_url: str
    broker_url: str
    vhost: str
    data_dir: Path
    api: Api = field(init=False)

    def __post_init__(self) -> None:
        self.api = Api(self.base_url, self.admin_token)

    def client(self, token: str | None = None) -> httpx.Client:
        """An HTTP client on nginx's base URL with the admin (or the given) bearer token."""
        return self.api.client(token)


# --- RabbitMQ vhosts ------------------------------------------------------------------------------

def _management() -> tuple[str, tuple[str, str]] | None:
    """Base URL and credentials of the management API when it answers, else None."""
    url = urllib.parse.urlsplit(MANAGEMENT_URL)
    base = f"{url.scheme}://{url.hostname}:{url.port or 15672}"
    auth = (urllib.parse.unquote(url.username or "guest"), urllib.parse.unquote(url.password or "guest"))
    try:
        r = httpx.get(f"{base}/api/overview", auth=auth, timeout=3, trust_env=False)
    except httpx.HTTPError:
        return None
    return (base, auth) if r.status_code == 200 else None


def _rabbitmqctl(*args: str) -> None:
    if shutil.which("rabbitmqctl") is None:
        pytest.fail("cannot create a RabbitMQ vhost: neither the management API "
                    f"({MANAGEMENT_URL}) nor rabbitmqctl is available")
    result = subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        pytest.fail(f"rabbitmqctl {' '.join(args)} failed: {result.stderr.strip() or result.stdout.strip()}")


@contextmanager
def rabbit_vhost() -> Iterator[str]:
    """A private vhost (so that runs never see each other's messages), deleted afterwards; yields its URL."""
    amqp = urllib.parse.urlsplit(AMQP_URL)
    host, port = amqp.hostname or "127.0.0.1", amqp.port or 5672
    if not tcp_reachable(host, port):
        pytest.fail(f"RabbitMQ unreachable at {host}:{port} (EDT_TEST_AMQP={AMQP_URL}); start it "
                    "(rabbitmq-server -detached) — e2e tests need it")
    user = urllib.parse.unquote(amqp.username or "guest")
    vhost = f"edt_e2e_{uuid.uuid4().hex[:10]}"
    quoted = urllib.parse.quote(vhost, safe="")
    mgmt = _management()
    if mgmt:
        base, auth = mgmt
        httpx.put(f"{base}/api/vhosts/{quoted}", auth=auth, timeout=10, trust_env=False).raise_for_status()
        httpx.put(f"{base}/api/permissions/{quoted}/{urllib.parse.quote(user, safe='')}", auth=auth, timeout=10,
                  trust_env=False, json={"configure": ".*", "write": ".*", "read": ".*"}).raise_for_status()
    else:
        _rabbitmqctl("add_vhost", vhost)
        _rabbitmqctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*")
    try:
        yield urllib.parse.urlunsplit(amqp._replace(path="/" + quoted))
    finally:
        if mgmt:
            httpx.delete(f"{mgmt[0]}/api/vhosts/{quoted}", auth=mgmt[1], timeout=30, trust_env=False)
        else:
            subprocess.run(["rabbitmqctl", "-q", "delete_vhost", vhost], capture_output=True, timeout=60)


# --- clusters -------------------------------------------------------------------------------------

@contextmanager
def start_cluster(tmp: Path, **env: str) -> Iterator[E2E]:
    """A distributed cluster on its own database, vhost, data dir and free ports."""
    with ExitStack() as stack:
        try:
            database_url = stack.enter_context(postgres_database(migrated=True))
        except RuntimeError as exc:
            pytest.fail(str(exc))
        broker_url = stack.enter_context(rabbit_vhost())
        admin_token = "admin-" + secrets.token_hex(12)
        data_dir = tmp / "edt"
        settings = {
            "EDT_DATABASE_URL": database_url,
            "EDT_BROKER_URL": broker_url,
            "EDT_DATA_DIR": str(data_dir),
            "EDT_BLOB_DIR": str(data_dir / "blobs"),
            "EDT_ADMIN_TOKEN": admin_token,
            "EDT_SECRET_KEY": secrets.token_hex(16),
            "EDT_BLOB_KEY": generate_key(),
            "EDT_HOST": "127.0.0.1",
            "EDT_PORT": "0",  # nginx on a free port
            "EDT_SERVICE_BASE_PORT": "0",  # services on free ports
            "EDT_RABBITMQ_MANAGEMENT_URL": MANAGEMENT_URL,
            "EDT_RETRY_BACKOFF_S": "0.05",
            "EDT_MAX_UPLOAD_MB": "2",
            "EDT_START_TIMEOUT": "90",
            "EDT_PUBLIC_URL": "",  # empty: nginx's URL, whatever the caller's shell says
            **env,
        }
        cluster = Cluster(settings)
        try:
            cluster.start()
        except ClusterError as exc:
            pytest.fail(f"distributed cluster did not start: {exc}", pytrace=False)
        stack.callback(cluster.stop)
        yield E2E(cluster, cluster.base_url, admin_token, database_url, broker_url,
                  urllib.parse.urlsplit(broker_url).path.lstrip("/"), data_dir)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2E]:
    """One distributed cluster shared by the session's e2e tests (don't kill its services: use
    `cluster_factory` for that)."""
    with start_cluster(tmp_path_factory.mktemp("cluster")) as e2e:
        yield e2e


@pytest.fixture
def cluster_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., E2E]]:
    """`cluster_factory(EDT_CONSUMERS_VALIDATOR="2", …)` → a private cluster, stopped after the test."""
    with ExitStack() as stack:
        def make(**env: str) -> E2E:
            return stack.enter_context(start_cluster(tmp_path_factory.mktemp("cluster"), **env))

        yield make
