"""The fault suite's fixtures (`make test-faults`, docs/reliability.md): a private PostgreSQL cluster and
RabbitMQ node (tests/faults/infra.py) for the whole session, distributed clusters on them, and the table
of results printed at the end (fault, runs, imports, lost, duplicated, result)."""

from __future__ import annotations

import json
import os
import secrets
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from deploy.supervisor import Cluster, ClusterError
from shared.blobs import generate_key
from tests.e2e.conftest import cluster_factory  # noqa: F401  (test_resilience.py: the e2e tier's private clusters)
from tests.faults.infra import PrivatePostgres, PrivateRabbit
from tests.harness import Api

RESULTS: list[dict[str, Any]] = []


@dataclass
class Infra:
    pg: PrivatePostgres
    rabbit: PrivateRabbit
    root: Path


@pytest.fixture(scope="session")
def infra() -> Iterator[Infra]:
    root = Path(tempfile.mkdtemp(prefix="edt-faults-"))
    root.chmod(0o755)  # PostgreSQL runs as its own user: it must reach its directory
    pg = PrivatePostgres(root / "pg")
    rabbit = PrivateRabbit(root / "rabbitmq")
    try:
        pg.start()
        rabbit.start()
        yield Infra(pg, rabbit, root)
    finally:
        rabbit.remove()
        pg.remove()
        import shutil

        shutil.rmtree(root, ignore_errors=True)


@dataclass
class FaultStack:
    infra: Infra
    cluster: Cluster
    api: Api
    database: str
    vhost: str
    data_dir: Path
    said: list[str] = field(default_factory=list)

    def sql(self, query: str) -> list[tuple[str, ...]]:
        return self.infra.pg.sql(query, self.database)

    def queue_figure(self, figure: str) -> dict[str, int]:
        return self.infra.rabbit.queue_figure(figure, self.vhost)


def start_fault_stack(infra: Infra, **env: str) -> FaultStack:
    database = f"edt_faults_{uuid.uuid4().hex[:8]}"
    infra.pg.sql(f'CREATE DATABASE "{database}"')
    vhost = f"edt-faults-{uuid.uuid4().hex[:8]}"
    infra.rabbit.ctl("add_vhost", vhost)
    infra.rabbit.ctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    data_dir = infra.root / f"cluster-{uuid.uuid4().hex[:6]}"
    admin = "admin-" + secrets.token_hex(12)
    settings = {
        "EDT_DATABASE_URL": infra.pg.database_url(database),
        "EDT_BROKER_URL": infra.rabbit.url.rstrip("/") + "/" + vhost,
        "EDT_RABBITMQ_MANAGEMENT_URL": infra.rabbit.management_url,
        "EDT_DATA_DIR": str(data_dir),
        "EDT_BLOB_DIR": str(data_dir / "blobs"),
        "EDT_ADMIN_TOKEN": admin,
        "EDT_SECRET_KEY": secrets.token_hex(16),
        "EDT_BLOB_KEY": generate_key(),
        "EDT_HOST": "127.0.0.1",
        "EDT_PORT": "0",
        "EDT_SERVICE_BASE_PORT": "0",
        "EDT_RETRY_BACKOFF_S": "0.2",
        "EDT_START_TIMEOUT": "120",
        "EDT_PUBLIC_URL": "",
        "EDT_LOG_LEVEL": "INFO",
        **env,
    }
    stack = FaultStack(infra, Cluster(settings), Api("", admin), database, vhost, data_dir)
    stack.cluster.echo = stack.said.append
    try:
        stack.cluster.start()
    except ClusterError as exc:
        pytest.fail(f"distributed cluster did not start: {exc}", pytrace=False)
    stack.api = Api(stack.cluster.base_url, admin)
    return stack


def stop_fault_stack(stack: FaultStack) -> None:
    stack.cluster.stop()
    try:
        stack.infra.rabbit.ctl("delete_vhost", stack.vhost)
        stack.infra.pg.sql(f'DROP DATABASE IF EXISTS "{stack.database}" WITH (FORCE)')
    except Exception:  # noqa: BLE001 - the private servers are removed at the end anyway
        pass


@pytest.fixture(scope="session")
def fault_stack(infra: Infra) -> Iterator[FaultStack]:
    """One distributed cluster on the private servers for the whole suite: each fault uses its own sites."""
    stack = start_fault_stack(infra, EDT_IMPORT_LEASE_S="30")
    try:
        yield stack
    finally:
        stop_fault_stack(stack)


def record(fault: str, *, runs: int, imports: int, lost: int, duplicated: int, ok: bool, seconds: float,
           note: str = "") -> None:
    RESULTS.append({"fault": fault, "runs": runs, "imports": imports, "lost": lost, "duplicated": duplicated,
                    "result": "PASS" if ok else "FAIL", "seconds": round(seconds, 1), "note": note})


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not RESULTS:
        return
    tr = terminalreporter
    tr.section("fault suite")
    header = f"{'fault':<48} {'runs':>4} {'imports':>7} {'lost':>4} {'duplicated':>10} {'result':>6} {'s':>6}"
    tr.write_line(header)
    tr.write_line("-" * len(header))
    for r in RESULTS:
        tr.write_line(f"{r['fault']:<48} {r['runs']:>4} {r['imports']:>7} {r['lost']:>4} {r['duplicated']:>10} "
                      f"{r['result']:>6} {r['seconds']:>6}")
    out = os.environ.get("EDT_FAULTS_REPORT")
    if out:
        Path(out).write_text(json.dumps(RESULTS, indent=2) + "\n")


@pytest.fixture
def clock() -> Iterator[float]:
    yield time.monotonic()
