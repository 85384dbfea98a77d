"""A service killed mid-work never duplicates or loses an import (distributed mode, real processes)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable

from tests.e2e.conftest import E2E
from tests.harness import Api, sample_xml

SITE = "4817"
ESTS = {"1754": "0490856P", "4817": "0490857R"}


def wait_history(api: Api, count: int, timeout: float = 30) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        items = api.history(SITE)
        if len(items) >= count:
            return items
        time.sleep(0.1)
    raise AssertionError(f"history never reached {count} imports")


def wait_unacked(vhost: str, queue: str, count: int, timeout: float = 30) -> None:
    """Until the broker counts `count` messages of `queue` delivered and not acknowledged (rabbitmqctl reads
    the queue's own state, unlike the management API's figures refreshed every few seconds)."""
    deadline = time.monotonic() + timeout
    while True:
        out = subprocess.run(["rabbitmqctl", "-q", "list_queues", "-p", vhost, "name", "messages_unacknowledged"],
                             capture_output=True, text=True, timeout=30, check=True).stdout
        unacked = {line.split()[0]: int(line.split()[1]) for line in out.splitlines() if len(line.split()) == 2
                   and line.split()[1].isdigit()}
        if unacked.get(queue, 0) >= count:
            return
        assert time.monotonic() < deadline, f"{queue}: {unacked.get(queue)} unacknowledged, {count} awaited"
        time.sleep(0.1)


def test_validator_killed_mid_import_still_completes_once(cluster_factory: Callable[..., E2E]) -> None:
    e2e = cluster_factory()
    api = Api(e2e.base_url, e2e.admin_token)
    api.create_site(SITE, ESTS)
    validator = e2e.cluster.pids["validator"]
    os.kill(validator, signal.SIGSTOP)  # holds the command it is handed, unacknowledged
    import_id = api.upload(SITE, "1754", sample_xml("0490856P"))
    api.wait(import_id, {"received"})
    wait_unacked(e2e.vhost, "edt.validate", 1)  # the broker has handed the command to the stopped consumer
    e2e.cluster.kill("validator")  # crash: no ack, the broker requeues it
    e2e.cluster.restart("validator")
    done = api.wait(import_id, timeout=60)
    assert done["status"] == "done"
    assert [s["status"] for s in done["steps"]] == ["ok", "warning", "warning", "warning", "ok"]
    assert len(api.history(SITE)) == 1


def test_notifier_down_while_files_arrive_loses_and_duplicates_nothing(cluster_factory: Callable[..., E2E]) -> None:
    e2e = cluster_factory()
    api = Api(e2e.base_url, e2e.admin_token)
    api.create_site(SITE, ESTS)
    api.first_import(SITE, "1754", sample_xml("0490856P", marker="first"))
    e2e.cluster.kill("notifier")
    # Deposits go on: the dropzone records them and its events wait in the notifier's durable queue.
    ids = [api.upload(SITE, est, sample_xml(uai, marker=f"while-down-{est}")) for est, uai in ESTS.items()]
    e2e.cluster.restart("notifier")
    for import_id in ids:
        assert api.wait(import_id, timeout=60)["status"] == "done"
    history = wait_history(api, 3)
    assert len(history) == 3 and len({h["id"] for h in history}) == 3


def test_second_consumer_process_shares_a_stage(cluster_factory: Callable[..., E2E]) -> None:
    e2e = cluster_factory(EDT_CONSUMERS_VALIDATOR="2")
    assert e2e.cluster.names("validator") == ["validator", "validator-2"]
    api = Api(e2e.base_url, e2e.admin_token)
    api.create_site(SITE, ESTS)
    ids = [api.upload(SITE, est, sample_xml(uai, marker=f"two-{i}"))
           for i in range(3) for est, uai in ESTS.items()]
    statuses = [api.wait(i, timeout=60)["status"] for i in ids]
    assert set(statuses) <= {"done", "superseded"} and statuses.count("done") >= 2
    deadline = time.monotonic() + 20  # the management API refreshes its figures every few seconds
    while api.ok("GET", "/ops/queues")["stages"]["validation"]["consumers"] != 2:
        assert time.monotonic() < deadline, api.ok("GET", "/ops/queues")
        time.sleep(0.5)
