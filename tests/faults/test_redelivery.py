"""Duplicate and reordered deliveries of every stage's command, on the distributed product (a row of
`make test-faults`): the broker itself hands each stage its command again — twice more while the import
runs, then once more after it ended and after a newer import of the same establishment, latest stage first
— and nothing changes. The copies are the real messages, taken from RabbitMQ's firehose (`rabbitmqctl
trace_on`), and sent back through the management API with their message id and headers."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import pytest

from shared.bus import ATTEMPT_HEADER
from shared.messages import PIPELINE, STAGE_QUEUES
from tests.faults.conftest import FaultStack, record
from tests.faults.test_faults import UAI, compare, counts, until
from tests.harness import TERMINAL, sample_xml

STAGE_OF_QUEUE = {STAGE_QUEUES[s]: s for s in PIPELINE}
TABLES = ("scheduler.scheduler_sessions", "reconciler.groups", "reconciler.group_memberships")


@dataclass(frozen=True)
class Command:
    queue: str
    body: bytes
    import_id: str
    message_id: str
    headers: dict[str, Any] = field(hash=False)


class Tap:
    """Every stage command published in the stack's vhost, copied by the firehose into a queue of the test."""

    QUEUE = "faults.tap"

    def __init__(self, stack: FaultStack) -> None:
        self.rabbit, self.vhost = stack.infra.rabbit, stack.vhost
        self.path = quote(stack.vhost, safe="")
        self.rabbit.ctl("trace_on", "-p", self.vhost)
        self.rabbit.management("PUT", f"/queues/{self.path}/{self.QUEUE}", json={"durable": False})
        self.rabbit.management("POST", f"/bindings/{self.path}/e/amq.rabbitmq.trace/q/{self.QUEUE}",
                               json={"routing_key": "publish.#"})
        self.seen: dict[tuple[str, str], Command] = {}  # the first publication of each (import, stage)

    def take(self) -> list[Command]:
        got = self.rabbit.management("POST", f"/queues/{self.path}/{self.QUEUE}/get", json={
            "count": 500, "ackmode": "ack_requeue_false", "encoding": "base64", "truncate": 50_000_000})
        new = []
        for m in got:  # type: ignore[union-attr]
            trace = m["properties"].get("headers") or {}
            keys = trace.get("routing_keys") or []
            if trace.get("exchange_name") != "" or not keys or keys[0] not in STAGE_OF_QUEUE:
                continue
            props = trace.get("properties") or {}
            headers = dict(props.get("headers") or {})
            if int(headers.get(ATTEMPT_HEADER, 0)):
                continue  # a stage's own retry of a command already seen
            body = base64.b64decode(m["payload"])
            command = Command(keys[0], body, json.loads(body)["import_id"], props.get("message_id", ""), headers)
            if (command.import_id, command.queue) not in self.seen:  # not one of the test's own copies
                self.seen[(command.import_id, command.queue)] = command
                new.append(command)
        return new

    def send(self, command: Command) -> None:
        routed = self.rabbit.management("POST", f"/exchanges/{self.path}/amq.default/publish", json={
            "routing_key": command.queue, "payload": base64.b64encode(command.body).decode(),
            "payload_encoding": "base64",
            "properties": {"message_id": command.message_id, "headers": command.headers, "delivery_mode": 2,
                           "content_type": "application/json"}})
        assert routed == {"routed": True}, routed

    def close(self) -> None:
        self.rabbit.ctl("trace_off", "-p", self.vhost)
        self.rabbit.management("DELETE", f"/queues/{self.path}/{self.QUEUE}")


@pytest.fixture
def tap(fault_stack: FaultStack) -> Iterator[Tap]:
    t = Tap(fault_stack)
    try:
        yield t
    finally:
        t.close()


def digest(stack: FaultStack, site: str) -> list[str]:
    """The keys of the site's sessions, groups and memberships, one md5 per table: identical sets or not."""
    return [stack.sql(f"SELECT md5(coalesce(string_agg(key, ',' ORDER BY key), '')) FROM {t} "
                      f"WHERE site = '{site}'")[0][0] for t in TABLES]


def drained(stack: FaultStack) -> bool:
    """Every copy sent has been consumed and acknowledged (the broker's own count, not a delay), and no
    command or status event is left anywhere but the test's tap."""
    figures = stack.queue_figure("messages")
    return all(n == 0 for q, n in figures.items() if q != Tap.QUEUE)


def test_duplicate_and_reordered_deliveries_of_every_stage_command(fault_stack: FaultStack, tap: Tap) -> None:
    stack, api = fault_stack, fault_stack.api
    started = time.monotonic()
    first, follow = sample_xml(UAI, marker="first", seed=3), sample_xml(UAI, marker="follow", seed=4)
    api.create_site("replay-ref", {"e": UAI})
    for data in (first, follow):  # the reference: the same two deposits, delivered once each
        assert api.wait(api.upload("replay-ref", "e", data), timeout=120)["status"] == "done"
    reference, reference_keys = counts(stack, "replay-ref"), digest(stack, "replay-ref")

    api.create_site("replay", {"e": UAI})
    older = api.wait(api.upload("replay", "e", first), timeout=120)
    assert older["status"] == "done", older
    newer_id = api.upload("replay", "e", follow)
    doubled: set[str] = set()
    while True:  # the newer import's commands, each delivered twice more as soon as it is published
        ended = api.get_import(newer_id)["status"] in TERMINAL  # then every command of it is in the tap
        for command in tap.take():
            if command.import_id == newer_id and command.queue not in doubled:
                tap.send(command)
                tap.send(command)
                doubled.add(command.queue)
        if ended:
            break
        time.sleep(0.05)
    newer = api.get_import(newer_id)
    assert newer["status"] == "done", newer
    assert doubled == set(STAGE_OF_QUEUE), doubled

    # Reordered: the older import's commands, then the newer's, each stage's after the next one's.
    ours = [c for c in tap.seen.values() if c.import_id in (older["id"], newer_id)]
    replayed = sorted(ours, key=lambda c: (c.import_id == newer_id, -PIPELINE.index(STAGE_OF_QUEUE[c.queue])))
    assert len(replayed) == 2 * len(PIPELINE), [(c.import_id, c.queue) for c in replayed]
    for command in replayed:
        tap.send(command)
    until(lambda: drained(stack), "the replayed commands were not all consumed", 120, 0.2)

    lost, duplicated = compare(reference, counts(stack, "replay"))
    history = api.history("replay")
    after = api.get_import(newer_id)
    dead = {q: n for q, n in stack.queue_figure("messages").items() if q.endswith(".dlq") and n}
    identical = digest(stack, "replay") == reference_keys
    ok = (lost == 0 and duplicated == 0 and identical and [h["status"] for h in history] == ["done", "done"]
          and after["counts"] == newer["counts"] and not dead)
    record("duplicate + reordered deliveries (4 stages)", runs=1, imports=2, lost=lost, duplicated=duplicated,
           ok=ok, seconds=time.monotonic() - started, note=f"{len(replayed) + 2 * len(doubled)} copies")
    assert (lost, duplicated) == (0, 0)
    assert identical, "sessions, groups or memberships differ from the reference's"
    assert [h["status"] for h in history] == ["done", "done"], history
    assert after["counts"] == newer["counts"], (after["counts"], newer["counts"])
    assert not dead, f"a duplicate was dead-lettered: {dead}"
