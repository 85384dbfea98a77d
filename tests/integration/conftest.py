"""Integration fixtures: the embedded app on a real server, on SQLite or, with `BOTH_BACKENDS`, on SQLite and
PostgreSQL (and on the real RabbitMQ bus where a test asks for it)."""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from deploy.embedded import create_embedded_app
from deploy.migrate import upgrade
from shared.settings import Settings
from shared.web import Runtime
from tests.harness import AMQP_URL, Api, ServerThread, database, free_port, test_settings_env


@dataclass
class Stack:
    api: Api
    server: ServerThread
    settings: Settings
    runtime: Runtime
    tmp: Path

    @property
    def url(self) -> str:
        return self.server.url

    def pause(self, queue: str) -> None:
        self.server.call(lambda: self.runtime.bus.pause(queue))  # type: ignore[attr-defined]

    def resume(self, queue: str) -> None:
        self.server.call(lambda: self.runtime.bus.resume(queue))  # type: ignore[attr-defined]

    def run(self, coro: Any, timeout: float = 30) -> Any:
        """Run a coroutine on the server's event loop and return its result."""
        assert self.server.loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self.server.loop).result(timeout)

    def drain(self, within: float = 20) -> None:
        """Until every queue of the in-process bus is empty and no handler runs: what was sent has been
        handled (the bus's own state, not a sleep)."""
        self.run(self.runtime.bus.drain(within), within + 5)  # type: ignore[attr-defined]

    def queue_depth(self, queue: str) -> int:
        """Messages of `queue` not yet handled: waiting, or delivered and held by a paused consumer."""
        stats = self.run(self.runtime.bus.queue_stats(queue))
        return int(stats["ready"]) + int(stats["unacked"])

    def poison_thresholds(self, deposit: Callable[[], str]) -> str:
        """A poison command: the import `deposit` makes (its timetable one no earlier import had) is held at
        threshold control while its canonical model is deleted from the blob store, so that the stage fails
        on it however often it tries. Returns its import id."""
        root = self.runtime.blobs.root
        before = set(root.rglob("*"))
        self.pause("edt.thresholds")
        try:
            import_id = deposit()
            deadline = time.monotonic() + 30
            while self.queue_depth("edt.thresholds") < 1:  # validated: its model is in the blob store
                assert time.monotonic() < deadline, "the import never reached threshold control"
                time.sleep(0.02)
            source = self.api.get_import(import_id)["file"]["sha256"]
            models = [p for p in set(root.rglob("*")) - before if p.is_file() and p.name != source]
            assert models
            for model in models:
                model.unlink()
        finally:
            self.resume("edt.thresholds")
        return import_id


def start_stack(tmp: Path, db_url: str, broker_url: str = "memory://", **overrides: str) -> Iterator[Stack]:
    # The server's own port: the URLs it hands out (WebDAV, iCal subscriptions) follow it (EDT_PUBLIC_URL unset).
    port = free_port()
    env = {**test_settings_env(tmp, db_url, broker_url), "EDT_PORT": str(port)}
    settings = Settings(**{k.removeprefix("EDT_").lower(): v for k, v in {**env, **overrides}.items()})
    upgrade(settings.database_url)
    app = create_embedded_app(settings)
    server = ServerThread(app, port).start()
    try:
        yield Stack(Api(server.url, settings.admin_token), server, settings, app.state.runtime, tmp)
    finally:
        server.stop()


# On both databases: the tests of what SQL decides (conflicts, locks, purges, migrations, undo). The rest of
# the pipeline's rules are the same code on either; they run on SQLite, what `make run` uses, while the
# e2e tests run the whole distributed product on PostgreSQL.
BOTH_BACKENDS = pytest.mark.parametrize("db_kind", ["sqlite", "postgres"], indirect=True)


@pytest.fixture
def db_kind(request: pytest.FixtureRequest) -> str:
    return str(getattr(request, "param", "sqlite"))


@pytest.fixture
def stack(db_kind: str, tmp_path: Path) -> Iterator[Stack]:
    with database(db_kind, tmp_path) as url:
        yield from start_stack(tmp_path, url)


@pytest.fixture
def sqlite_stack(tmp_path: Path) -> Iterator[Stack]:
    with database("sqlite", tmp_path) as url:
        yield from start_stack(tmp_path, url)


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


@pytest.fixture
def rabbit_vhost() -> Iterator[str]:
    """A private RabbitMQ vhost, deleted afterwards. Fails (never skips) when RabbitMQ is down."""
    vhost = f"edt-test-{uuid.uuid4().hex[:8]}"
    rabbitmqctl("add_vhost", vhost)
    rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    try:
        yield AMQP_URL.rstrip("/") + "/" + vhost
    finally:
        rabbitmqctl("delete_vhost", vhost)


@pytest.fixture
def rabbit_stack(tmp_path: Path, rabbit_vhost: str) -> Iterator[Stack]:
    with database("postgres", tmp_path) as url:
        yield from start_stack(tmp_path, url, rabbit_vhost)
