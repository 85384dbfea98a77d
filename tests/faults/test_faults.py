"""The fault suite (`make test-faults`, docs/reliability.md): the distributed product on a private
PostgreSQL cluster and RabbitMQ node, faults injected while imports run, and what must hold after each:
every import ends (done, or with its reason), none is lost, none is applied twice — sessions, groups and
memberships counted in PostgreSQL against a clean run of the same file.

Each kill happens at a point proven reached (the broker's unacknowledged count, or the stage's run
record started and not finished), never after a sleep."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

import pytest

from tests.factory import make_school, uai_for
from tests.faults.conftest import FaultStack, record
from tests.harness import CURRENT_SCHOOL_YEAR, TERMINAL, sample_xml

SIZE = os.environ.get("EDT_FAULTS_SIZE", "L")  # the kills' import: an L lycée (2,000 students)
UAI = "0490856P"
HERD = int(os.environ.get("EDT_FAULTS_HERD", "30"))
OUTAGE_S = float(os.environ.get("EDT_FAULTS_PG_OUTAGE_S", "12"))


@lru_cache(maxsize=2)
def school(size: str) -> bytes:
    return make_school(size, 1, uai=UAI, year=CURRENT_SCHOOL_YEAR).to_xml_bytes()


def until(predicate: Callable[[], Any], what: str, within: float = 60, every: float = 0.1) -> Any:
    deadline = time.monotonic() + within
    while not (value := predicate()):
        assert time.monotonic() < deadline, what
        time.sleep(every)
    return value


# Sessions are generated from the import's time on: counted from a fixed later instant, an import made
# after the clean run (a class having begun in between) has the same sessions to count.
SESSIONS_FROM = (datetime.now(UTC) + timedelta(days=2)).date().isoformat()


def counts(stack: FaultStack, site: str) -> dict[str, tuple[int, int]]:
    """(rows, distinct keys) of the site's sessions (from SESSIONS_FROM), groups and memberships, read in
    PostgreSQL."""
    out = {}
    for name, table, more in (("sessions", "scheduler.scheduler_sessions", f" AND start >= '{SESSIONS_FROM}'"),
                              ("groups", "reconciler.groups", ""),
                              ("memberships", "reconciler.group_memberships", "")):
        ((rows, keys),) = stack.sql(f"SELECT count(*), count(DISTINCT key) FROM {table} WHERE site = '{site}'{more}")
        out[name] = (int(rows), int(keys))
    return out


def compare(clean: dict[str, tuple[int, int]], got: dict[str, tuple[int, int]]) -> tuple[int, int]:
    """(lost, duplicated) rows against the clean run."""
    lost = sum(max(0, clean[k][1] - got[k][1]) for k in clean)
    duplicated = sum(max(0, got[k][0] - clean[k][0]) + (got[k][0] - got[k][1]) for k in clean)
    return lost, duplicated


def run_started(stack: FaultStack, schema: str, import_id: str) -> bool:
    """The stage's run record of the import exists and is not finished: its step is under way."""
    rows = stack.sql(f"SELECT finished_at IS NULL FROM {schema}.{schema}_stage_runs WHERE import_id = '{import_id}'")
    assert not rows or rows[0][0] == "t", f"{schema} finished its step before it could be caught in the middle"
    return bool(rows)


@pytest.fixture(scope="module")
def clean(fault_stack: FaultStack) -> dict[str, dict[str, tuple[int, int]]]:
    """A clean run of each file the faults use, on sites of its own: the counts every fault must match."""
    api = fault_stack.api
    out = {}
    for size, site in ((SIZE, "clean-l"), ("XS", "clean-xs")):
        api.create_site(site, {"e": UAI})
        started = time.monotonic()
        done = api.wait(api.upload(site, "e", school(size) if size != "XS" else sample_xml(UAI, marker="x")),
                        timeout=300)
        assert done["status"] == "done", done
        out[size] = counts(fault_stack, site)
        assert all(v[0] == v[1] for v in out[size].values()), out[size]
        record(f"clean run ({size})", runs=1, imports=1, lost=0, duplicated=0, ok=True,
               seconds=time.monotonic() - started)
    return out


KILLS = [
    ("validator", "unacked"),  # holding the command (stopped on it), then killed
    ("thresholds", "unacked"),
    ("reconciler", "write"),  # inside its write transaction, its groups' INSERT waiting
    ("scheduler", "write"),  # inside its write transaction, its sessions' COPY waiting
    ("notifier", "202"),  # right after the deposit's 202
    ("dropzone", "run"),  # while the reconciler works on the import
]
QUEUES = {"validator": "edt.validate", "thresholds": "edt.thresholds"}
WRITES = {"reconciler": "reconciler.groups", "scheduler": "scheduler.scheduler_sessions"}


def write_waiting(stack: FaultStack, table: str) -> bool:
    """A backend of the product waits for the lock on `table` in the middle of a statement writing it: the
    stage's write transaction is open, some of its rows written, none committed."""
    name = table.split(".")[1]
    rows = stack.sql("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND "
                     f"wait_event_type = 'Lock' AND query ILIKE '%{name}%' AND query !~* '^\\s*select'")
    return int(rows[0][0]) > 0


@pytest.mark.parametrize("service,point", KILLS, ids=[k[0] for k in KILLS])
def test_kill_9_mid_import_then_restart(fault_stack: FaultStack, clean: dict[str, Any], service: str,
                                        point: str) -> None:
    stack, api = fault_stack, fault_stack.api
    site = f"kill-{service}"
    api.create_site(site, {"e": UAI})
    started = time.monotonic()
    if point == "unacked":
        queue = QUEUES[service]
        os.kill(stack.cluster.pids[service], signal.SIGSTOP)  # it takes the command and holds it, unacked
        import_id = api.upload(site, "e", school(SIZE))
        until(lambda: stack.queue_figure("messages_unacknowledged").get(queue, 0) >= 1,
              f"{service} never held the command")
    elif point == "run":
        import_id = api.upload(site, "e", school(SIZE))
        until(lambda: run_started(stack, "reconciler", import_id), "reconciler never started the step", 120, 0.05)
    elif point == "write":
        with stack.infra.pg.table_lock(stack.database, WRITES[service]):
            import_id = api.upload(site, "e", school(SIZE))
            until(lambda: write_waiting(stack, WRITES[service]), f"{service} never wrote {WRITES[service]}", 120)
            stack.cluster.kill(service)  # its transaction dies uncommitted with its connection
    else:
        import_id = api.upload(site, "e", school(SIZE))
    if point != "write":
        stack.cluster.kill(service)
    stack.cluster.restart(service)
    done = api.wait(import_id, timeout=300)
    lost, duplicated = compare(clean[SIZE], counts(stack, site))
    history = api.history(site)
    ok = done["status"] == "done" and lost == 0 and duplicated == 0 and len(history) == 1
    where = {"unacked": "holding the command", "run": "mid-step", "write": "in its write transaction",
             "202": "after the 202"}[point]
    record(f"kill -9 {service} ({where})", runs=1, imports=1, lost=lost, duplicated=duplicated, ok=ok,
           seconds=time.monotonic() - started)
    assert done["status"] == "done", done
    assert (lost, duplicated) == (0, 0)
    assert len(history) == 1


def herd(stack: FaultStack, prefix: str) -> dict[str, str]:
    """HERD first imports at once, one per site: site → import id (every upload answered)."""
    sites = {f"{prefix}-{n:02d}": uai_for(f"{2000000 + n:07d}") for n in range(HERD)}
    for site, uai in sites.items():
        stack.api.create_site(site, {"e": uai})
    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(lambda item: stack.api.upload(item[0], "e", sample_xml(item[1], marker=item[0])),
                            sites.items()))
    return dict(zip(sites, ids, strict=True))


def in_flight(stack: FaultStack) -> int:
    return int(stack.api.ok("GET", "/ops/queues")["in_flight_imports"])


def settle(stack: FaultStack, imports: dict[str, str], fault: str, started: float,
           clean: dict[str, tuple[int, int]] | None) -> None:
    """Every import of the herd ends; none vanishes (one history row per site, terminal), none is applied
    twice; nothing is left waiting or in flight. Recorded, then asserted."""
    api = stack.api
    deadline = time.monotonic() + 240
    final: dict[str, dict[str, Any]] = {}
    while len(final) < len(imports) and time.monotonic() < deadline:
        for site, import_id in imports.items():
            if site not in final and (seen := api.get_import(import_id))["status"] in TERMINAL:
                final[site] = seen
        time.sleep(0.2)
    lost = len(imports) - len(final)
    duplicated = 0
    for site in imports:
        duplicated += max(0, len(api.history(site)) - 1)
        if clean is not None and site in final and final[site]["status"] == "done":
            site_lost, site_dup = compare(clean, counts(stack, site))
            lost += site_lost
            duplicated += site_dup
    unclear = [f for f in final.values() if f["status"] != "done" and not f.get("message")]
    queues = api.ok("GET", "/ops/queues")
    statuses = sorted({f["status"] for f in final.values()})
    ok = (lost == 0 and duplicated == 0 and not unclear and statuses == ["done"]
          and queues["in_flight_imports"] == 0 and queues["waiting_imports"] == 0)
    record(fault, runs=1, imports=len(imports), lost=lost, duplicated=duplicated, ok=ok,
           seconds=time.monotonic() - started, note=",".join(statuses))
    assert lost == 0, f"{len(imports) - len(final)} imports never ended"
    assert duplicated == 0 and not unclear, unclear
    assert statuses == ["done"], [(f["status"], f.get("message")) for f in final.values()]
    assert queues["in_flight_imports"] == 0 and queues["waiting_imports"] == 0, queues


def test_rabbitmq_restart_during_a_herd(fault_stack: FaultStack, clean: dict[str, Any]) -> None:
    stack = fault_stack
    started = time.monotonic()
    imports = herd(stack, "mq")
    until(lambda: in_flight(stack), "no import in flight")
    stack.infra.rabbit.stop()
    stack.infra.rabbit.start()
    settle(stack, imports, f"RabbitMQ restart during {HERD} deposits", started, clean["XS"])


def test_postgresql_down_longer_than_10_s_during_a_herd(fault_stack: FaultStack, clean: dict[str, Any]) -> None:
    stack = fault_stack
    started = time.monotonic()
    imports = herd(stack, "pg")
    until(lambda: in_flight(stack), "no import in flight")
    stack.infra.pg.stop("fast")
    time.sleep(OUTAGE_S)  # the outage itself: the database stays down this long
    stack.infra.pg.start()
    settle(stack, imports, f"PostgreSQL down {OUTAGE_S:g} s during {HERD} deposits", started, clean["XS"])


def test_a_poison_message_is_dead_lettered_and_replayable(fault_stack: FaultStack) -> None:
    """A threshold-control command whose canonical model has vanished from the blob store fails however
    often it is tried: after its retry budget it is in edt.thresholds.dlq, its import `failed` with the
    reason; another import flows meanwhile; GET /api/v1/ops/dead-letters lists it, POST …/replay sends it
    back, and its consumer drops it (the step has ended)."""
    stack, api = fault_stack, fault_stack.api
    started = time.monotonic()
    api.create_site("poison", {"e": UAI})
    api.create_site("healthy", {"e": uai_for("3000001")})
    blobs = stack.data_dir / "blobs"
    before = set(blobs.rglob("*"))
    os.kill(stack.cluster.pids["thresholds"], signal.SIGSTOP)
    try:
        poison = api.upload("poison", "e", sample_xml(UAI, marker="poison", seed=5))  # a model of its own
        until(lambda: stack.queue_figure("messages_unacknowledged").get("edt.thresholds", 0) >= 1,
              "threshold control never held the command")
        deposit = api.get_import(poison)["file"]["sha256"]
        models = [p for p in set(blobs.rglob("*")) - before if p.is_file() and p.name != deposit]
        assert models
        for model in models:
            model.unlink()
    finally:
        os.kill(stack.cluster.pids["thresholds"], signal.SIGCONT)
    healthy = api.upload("healthy", "e", sample_xml(uai_for("3000001"), marker="healthy"))
    failed = api.wait(poison, timeout=120)
    flowed = api.wait(healthy, timeout=120)
    until(lambda: stack.queue_figure("messages").get("edt.thresholds.dlq", 0) == 1, "nothing dead-lettered")
    listed = {q["queue"]: q for q in api.ok("GET", "/ops/dead-letters")["queues"]}
    letters = listed["edt.thresholds"]["messages"]
    replay = api.ok("POST", "/ops/dead-letters/edt.thresholds/replay")
    until(lambda: stack.queue_figure("messages").get("edt.thresholds.dlq", 1) == 0
          and stack.queue_figure("messages").get("edt.thresholds", 1) == 0, "the replayed message was not consumed")
    after = api.get_import(poison)
    ok = (failed["status"] == "failed" and bool(failed["message"]) and flowed["status"] == "done"
          and [lt["import_id"] for lt in letters] == [poison] and replay["replayed"] == 1
          and after["status"] == "failed")
    record("poison message (dead letter, replay)", runs=1, imports=2, lost=0, duplicated=0, ok=ok,
           seconds=time.monotonic() - started)
    assert failed["status"] == "failed" and failed["message"], failed
    assert flowed["status"] == "done"
    assert [lt["import_id"] for lt in letters] == [poison], letters
    assert letters[0]["attempts"] >= 4
    assert replay == {"queue": "edt.thresholds", "replayed": 1}
    assert after["status"] == "failed"


def test_a_lost_command_fails_its_import_after_its_lease(fault_stack: FaultStack) -> None:
    """The validator is down and the command waiting for it is lost (the queue purged, as the broker's
    delivery limit or a lost node would): nobody owns the import any more. Once its lease (30 s here) has
    run out and the management API counts nothing in edt.validate, the notifier fails it with its reason and
    frees its slot; the validator back, the next deposit flows."""
    stack, api = fault_stack, fault_stack.api
    started = time.monotonic()
    api.create_site("lost", {"e": UAI})
    stack.cluster.kill("validator")
    try:
        lost = api.upload("lost", "e", sample_xml(UAI, marker="lost"))
        until(lambda: stack.queue_figure("messages_ready").get("edt.validate", 0) >= 1, "the command never queued")
        stack.infra.rabbit.ctl("purge_queue", "-p", stack.vhost, "edt.validate")
        failed = api.wait(lost, timeout=120)
    finally:
        stack.cluster.restart("validator")
    freed = in_flight(stack) == 0
    after = api.wait(api.upload("lost", "e", sample_xml(UAI, marker="after")), timeout=120)
    ok = (failed["status"] == "failed" and "signe de vie" in (failed["message"] or "") and freed
          and after["status"] == "done")
    record("command lost (lease runs out)", runs=1, imports=2, lost=0, duplicated=0, ok=ok,
           seconds=time.monotonic() - started)
    assert failed["status"] == "failed" and "signe de vie" in failed["message"], failed
    assert freed
    assert after["status"] == "done"
