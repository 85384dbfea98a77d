"""Change events reach an ENT in both modes (embedded here, on SQLite and PostgreSQL; on RabbitMQ too):
`GET /sites/{site}/changes` streams what the scheduler publishes on `edt.changes`, resumable with
Last-Event-ID, bounded by retention — beside the exchange, which ENT consumers still get."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import pytest

from tests.factory import make_school
from tests.harness import database
from tests.integration.conftest import Stack, start_stack

SITE, EST, UAI = "4817", "1754", "0490856P"


def parse_sse(text: str) -> list[dict[str, Any]]:
    events = []
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            if line.startswith(":") or ":" not in line:
                continue
            name, _, value = line.partition(":")
            fields[name] = value[1:] if value.startswith(" ") else value
        if "event" in fields:
            events.append({"id": int(fields["id"]), "event": fields["event"], "data": json.loads(fields["data"])})
    return events


def replay(stack: Stack, last_id: int | None = None, token: str | None = None, **params: str) -> list[dict[str, Any]]:
    headers = {"Last-Event-ID": str(last_id)} if last_id is not None else {}
    r = stack.api.call("GET", f"/sites/{SITE}/changes", token, params={"once": "true", **params}, headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/event-stream")
    return parse_sse(r.text)


def replay_all(stack: Stack, within: float = 10) -> list[dict[str, Any]]:
    """The replay once the last batch of the newest import is stored: change events travel on their own
    queue and may reach the notifier a moment after the import's `done`."""
    deadline = time.monotonic() + within
    while True:
        events = replay(stack)
        if events and events[-1]["data"]["batch"] == events[-1]["data"]["batches"]:
            return events
        assert time.monotonic() < deadline, f"the last batch never came: {[e['data']['batch'] for e in events]}"
        time.sleep(0.05)


def report(stack: Stack, import_id: str) -> dict[str, int]:
    return {a["action"]: a["success"] for a in stack.api.ok("GET", f"/imports/{import_id}/report")["actions"]}


def test_the_change_stream_replays_resumes_and_follows_imports(stack: Stack) -> None:
    api = stack.api
    api.create_site(SITE, {EST: UAI})
    api.create_site("9999", {"1": "0490857R"})
    first = api.wait(api.upload(SITE, EST, make_school("XS", 5, uai=UAI).to_xml_bytes()), {"done"})
    events = replay_all(stack)
    assert events and all(e["event"] == "sessions.changed" for e in events)
    assert [e["id"] for e in events] == sorted({e["id"] for e in events})
    data = [e["data"] for e in events]
    assert {d["import_id"] for d in data} == {first["id"]} and len(data) == data[0]["batches"] > 1
    assert sum(len(d["created"]) for d in data) == report(stack, first["id"])["sessions_created"]
    session = data[0]["created"][0]  # each event names what its sessions show
    assert data[0]["names"]["courses"][session["course"]] and all(
        r in data[0]["names"]["rooms"] for r in session["rooms"])

    # resumable: after the first event, exactly the others
    assert replay(stack, events[0]["id"]) == events[1:]
    assert replay(stack, events[-1]["id"]) == []

    # a live stream receives the next import's events as they are stored
    token = api.site_token(SITE)
    received: list[dict[str, Any]] = []
    done = threading.Event()

    def follow() -> None:
        with httpx.stream("GET", f"{stack.url}/api/v1/sites/{SITE}/changes", timeout=60, trust_env=False,
                          headers={"Authorization": f"Bearer {token}", "Last-Event-ID": str(events[-1]["id"])}) as r:
            buffer = ""
            for chunk in r.iter_text():
                buffer += chunk
                while "\n\n" in buffer:
                    block, buffer = buffer.split("\n\n", 1)
                    received.extend(parse_sse(block + "\n\n"))
                    if received and len(received) == received[0]["data"]["batches"]:
                        done.set()
                        return

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    follow_up = make_school("XS", 5, uai=UAI, changes=20)
    second = api.wait(api.upload(SITE, EST, follow_up.to_xml_bytes()), {"done"})
    assert done.wait(30), f"the live stream saw {len(received)} events"
    assert {e["data"]["import_id"] for e in received} == {second["id"]}
    changed = report(stack, second["id"])
    assert sum(len(e["data"]["created"]) for e in received) == changed["sessions_created"]
    assert sum(len(e["data"]["deleted"]) for e in received) == changed["sessions_deleted"]
    assert sum(len(e["data"]["updated"]) for e in received) == changed["sessions_updated"]

    # per site, per establishment filter, cross-site is 404
    assert replay(stack, establishment="other") == []
    assert api.call("GET", f"/sites/{SITE}/changes", api.site_token("9999"), params={"once": "true"}).status_code == 404


@pytest.fixture
def small_retention(tmp_path: Path) -> Iterator[Stack]:
    with database("sqlite", tmp_path) as url:
        yield from start_stack(tmp_path, url, EDT_CHANGES_MAX_EVENTS="1")


def test_retention_keeps_the_newest_events_and_says_when_some_were_dropped(small_retention: Stack) -> None:
    stack = small_retention
    stack.api.create_site(SITE, {EST: UAI})
    stack.api.wait(stack.api.upload(SITE, EST, make_school("XS", 5, uai=UAI).to_xml_bytes()), {"done"})
    stack.drain()  # every change event of the import handled (their batches may come in any order)
    kept = replay_all(stack)  # a client starting afresh gets what is kept, no reset
    assert len(kept) == 1 and kept[0]["data"]["batch"] == kept[0]["data"]["batches"] >= 2
    (reset, *rest) = replay(stack, 1)  # one that saw event 1 missed the dropped ones: told so, then the rest
    assert reset["event"] == "reset" and reset["data"]["reason"] == "retention"
    assert reset["id"] == kept[0]["id"] - 1 and rest == kept
    assert replay(stack, kept[0]["id"] - 1) == kept  # one that saw every dropped event missed nothing


def test_change_events_reach_both_the_stream_and_the_rabbitmq_exchange(rabbit_stack: Stack) -> None:
    stack = rabbit_stack
    stack.api.create_site(SITE, {EST: UAI})

    async def ent_queue() -> tuple[Any, Any, Any]:
        connection = await aio_pika.connect_robust(stack.settings.broker_url)
        channel = await connection.channel()
        exchange = await channel.declare_exchange("edt.changes", aio_pika.ExchangeType.TOPIC, durable=True)
        queue = await channel.declare_queue("", exclusive=True)
        await queue.bind(exchange, routing_key=f"sessions.{SITE}.#")
        return connection, channel, queue

    loop = asyncio.new_event_loop()
    try:
        connection, _, queue = loop.run_until_complete(ent_queue())
        done = stack.api.wait(stack.api.upload(SITE, EST, make_school("XS", 5, uai=UAI).to_xml_bytes()), {"done"})
        streamed = replay(stack)

        async def drain() -> list[dict[str, Any]]:
            out = []
            while len(out) < len(streamed):
                message = await queue.get(timeout=10)
                await message.ack()
                out.append(json.loads(message.body))
            return out

        consumed = loop.run_until_complete(drain())
        loop.run_until_complete(connection.close())
    finally:
        loop.close()
    assert [e["data"] for e in streamed] == sorted(consumed, key=lambda d: d["batch"])
    assert {e["data"]["import_id"] for e in streamed} == {done["id"]}
