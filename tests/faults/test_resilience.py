"""A service killed mid-work never duplicates or loses an import (distributed mode, real processes): clusters of
the e2e tier (`cluster_factory`, on the machine's RabbitMQ and PostgreSQL), in the fault suite for what they
kill and restart."""

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


def queue_figure(vhost: str, figure: str) -> dict[str, int]:
    """One figure of every queue of `vhost` as the broker counts it now (rabbitmqctl reads the queues' own
    state, unlike the management API's figures refreshed every few seconds)."""
    out = subprocess.run(["rabbitmqctl", "-q", "list_queues", "-p", vhost, "name", figure],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    return {line.split()[0]: int(line.split()[1]) for line in out.splitlines() if len(line.split()) == 2
            and line.split()[1].isdigit()}


def wait_unacked(vhost: str, queue: str, count: int, timeout: float = 30) -> None:
    """Until the broker counts `count` messages of `queue` delivered and not acknowledged."""
    deadline = time.monotonic() + timeout
    while (unacked := queue_figure(vhost, "messages_unacknowledged").get(queue, 0)) < count:
        assert time.monotonic() < deadline, f"{queue}: {unacked} unacknowledged, {count} awaited"
        time.sleep(0.1)


def wait_drained(vhost: str, queue: str, timeout: float = 60) -> None:
    """Until `queue` holds no message, ready or delivered."""
    deadline = time.monotonic() + timeout
    while (left := queue_figure(vhost, "messages").get(queue, 0)) > 0:
        assert time.monotonic() < deadline, f"{queue}: {left} messages left"
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
    e2e = cluster_factory(EDT_DEPOSIT_ACK_TIMEOUT_S="2")  # each deposit waits that long for the history
    api = Api(e2e.base_url, e2e.admin_token)
    api.create_site(SITE, ESTS)
    api.first_import(SITE, "1754", sample_xml("0490856P", marker="first"))
    e2e.cluster.kill("notifier")
    # Deposits go on: the dropzone keeps them and their events wait in the notifier's durable queue. Their
    # ids would not be readable yet: the answer is 504 with the cause, no id.
    for est, uai in ESTS.items():
        r = api.call("POST", f"/sites/{SITE}/establishments/{est}/imports", data={"mode": "manual"},
                     files={"file": ("EDT.xml", sample_xml(uai, marker=f"while-down-{est}"), "application/xml")})
        assert r.status_code == 504 and r.json()["code"] == "deposit_not_listed", r.text
    e2e.cluster.restart("notifier")
    # The notifier catches up with the events that waited for it: the imports are listed and go through.
    wait_drained(e2e.vhost, "edt.notifier.deposits")
    wait_drained(e2e.vhost, "edt.notifier")
    history = wait_history(api, 3)
    assert len(history) == 3 and len({h["id"] for h in history}) == 3
    for item in history:
        assert api.wait(item["id"], timeout=60)["status"] == "done"


def test_second_consumer_process_shares_a_stage(cluster_factory: Callable[..., E2E]) -> None:
    e2e = cluster_factory(EDT_CONSUMERS_VALIDATOR="2")
    assert e2e.cluster.names("validator") == ["validator", "validator-2"]
    api = Api(e2e.base_url, e2e.admin_token)
    api.create_site(SITE, ESTS)
    ids = [api.upload(SITE, est, sample_xml(uai, marker=f"two-{i}"))
           for i in range(3) for est, uai in ESTS.items()]
    ended = [api.wait(i, timeout=60) for i in ids]
    statuses = [i["status"] for i in ended]
    assert set(statuses) <= {"done", "superseded"} and statuses.count("done") >= 2, \
        [(i["status"], i.get("message"), [(s["stage"], s.get("message")) for s in i["steps"] if s["status"] == "error"])
         for i in ended]
    deadline = time.monotonic() + 20  # the management API refreshes its figures every few seconds
    while api.ok("GET", "/ops/queues")["stages"]["validation"]["consumers"] != 2:
        assert time.monotonic() < deadline, api.ok("GET", "/ops/queues")
        time.sleep(0.5)


def test_two_notifier_processes_share_admission_and_survive_one_killed(
        cluster_factory: Callable[..., E2E]) -> None:
    """Admission is decided in the database (an advisory lock around every decision): two notifier
    processes consuming the same status queue never start more imports than EDT_MAX_IN_FLIGHT, each shows
    the same queue positions, a view one keeps follows a write made through the other, and one killed leaves
    the other admitting."""
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    from tests.factory import uai_for

    e2e = cluster_factory(EDT_CONSUMERS_NOTIFIER="2", EDT_MAX_IN_FLIGHT="1")
    assert e2e.cluster.names("notifier") == ["notifier", "notifier-2"]
    api = Api(e2e.base_url, e2e.admin_token)
    sites = {f"{SITE}{n}": uai_for(f"{1000000 + n:07d}") for n in range(8)}
    for site, uai in sites.items():
        api.create_site(site, {"e": uai})
    with ThreadPoolExecutor(len(sites)) as pool:  # deposits at once: both processes decide at the same time
        ids = list(pool.map(lambda item: api.upload(item[0], "e", sample_xml(item[1])), sites.items()))
    ports = [e2e.cluster.ports[name] for name in e2e.cluster.names("notifier")]
    direct = [httpx.Client(base_url=f"http://127.0.0.1:{p}", headers={"Authorization": f"Bearer {e2e.admin_token}"})
              for p in ports]
    # A view the second process keeps follows a write made through the first: the last import in the queue,
    # read (and kept) by the second while it waits, cancelled through the first, read again at once.
    last = max(ids, key=lambda i: direct[1].get(f"/api/v1/imports/{i}").json()["queue_position"] or -1)
    assert direct[1].get(f"/api/v1/imports/{last}").json()["status"] == "waiting"
    assert direct[0].post(f"/api/v1/imports/{last}/cancel").json()["status"] == "cancelled"
    assert direct[1].get(f"/api/v1/imports/{last}").json()["status"] == "cancelled"
    assert any(item["id"] == last and item["status"] == "cancelled"
               for item in direct[1].get(f"/api/v1/sites/{list(sites)[ids.index(last)]}/imports").json()["items"])
    seen_waiting = False
    deadline = time.monotonic() + 120
    while True:
        views = [{i: c.get(f"/api/v1/imports/{i}").json() for i in ids} for c in direct]
        if all(v["status"] in {"done", "superseded", "cancelled"} for v in views[1].values()):
            break
        for i in ids:  # a version read in the database keeps both processes' positions in step
            a, b = views[0][i], views[1][i]
            if a["status"] == b["status"] == "waiting" and a["queue_position"] is not None:
                seen_waiting = True
                assert b["queue_position"] is not None
        assert time.monotonic() < deadline, views[1]
        time.sleep(0.2)
    assert seen_waiting
    finished = [api.ok("GET", f"/imports/{i}") for i in ids]
    runs = sorted((f["started_at"], f["ended_at"]) for f in finished if f["status"] == "done")
    assert len(runs) == len(sites) - 1  # all but the one cancelled
    for (_, ended), (started, _) in zip(runs, runs[1:], strict=False):
        assert started >= ended, runs  # one at a time, whichever process decided

    e2e.cluster.kill("notifier")
    later = api.upload(f"{SITE}0", "e", sample_xml(sites[f"{SITE}0"], marker="after-kill"))
    assert api.wait(later, timeout=60)["status"] == "done"
    for c in direct:
        c.close()


def descendants(pid: int) -> set[int]:
    """Every process below `pid` (children of each of its threads, recursively), from /proc."""
    from pathlib import Path

    found: set[int] = set()
    todo = [pid]
    while todo:
        current = todo.pop()
        for children in Path(f"/proc/{current}/task").glob("*/children"):
            try:
                kids = {int(k) for k in children.read_text().split()}
            except OSError:
                continue
            todo += list(kids - found)
            found |= kids
    return found


def alive(pid: int) -> bool:
    from pathlib import Path

    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_validator_killed_leaves_no_parse_worker_behind(cluster_factory: Callable[..., E2E]) -> None:
    """kill -9 of the validator alone (not its process group): its parse worker (spawned at start, see
    ValidatorStage.warm_up) and multiprocessing's resource tracker end with it."""
    e2e = cluster_factory()
    validator = e2e.cluster.pids["validator"]
    deadline = time.monotonic() + 30
    while len(workers := descendants(validator)) < 2:  # the resource tracker and the parse worker
        assert time.monotonic() < deadline, f"the validator's parse worker never started: {workers}"
        time.sleep(0.1)
    os.kill(validator, signal.SIGKILL)
    deadline = time.monotonic() + 15
    while left := {p for p in workers if alive(p)}:
        assert time.monotonic() < deadline, f"processes of the killed validator still running: {sorted(left)}"
        time.sleep(0.1)


def test_a_service_that_dies_is_restarted_with_backoff(cluster_factory: Callable[..., E2E]) -> None:
    """`make run-distributed`'s supervision (Cluster.revive): a service killed from outside is started
    again after its backoff, the restart is logged, and imports flow again."""
    import threading

    from deploy.supervisor import http_status

    e2e = cluster_factory()
    said: list[str] = []
    e2e.cluster.echo = said.append
    stop = threading.Event()
    watcher = threading.Thread(target=e2e.cluster.supervise, args=(stop, 0.2), daemon=True)
    watcher.start()
    try:
        api = Api(e2e.base_url, e2e.admin_token)
        api.create_site(SITE, ESTS)
        for name in ("validator", "notifier"):
            old = e2e.cluster.pids[name]
            os.kill(old, signal.SIGKILL)  # from outside: the supervisor was not asked
            deadline = time.monotonic() + 30
            while (e2e.cluster.pids.get(name) in (None, old)
                   or http_status(f"{e2e.cluster.service_url(name)}/readyz") != 200):
                assert time.monotonic() < deadline, f"{name} never restarted: {said}"
                time.sleep(0.1)
            assert any(f"{name} (pid {old}) exited" in m and "restarting it in 1 s" in m for m in said), said
            assert any(m.startswith(f"{name} restarted") for m in said), said
            assert "supervisor: " in e2e.cluster.log_path(name).read_text()
        import_id = api.upload(SITE, "1754", sample_xml("0490856P"))
        assert api.wait(import_id, timeout=60)["status"] == "done"
    finally:
        stop.set()
        watcher.join(5)
