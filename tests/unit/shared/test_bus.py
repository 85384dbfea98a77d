"""The in-process bus has the broker's semantics: topic routing, retries with backoff, dead letters."""

from __future__ import annotations

import asyncio

from shared.bus import Delivery, MemoryBus, topic_matches


def test_topic_matching() -> None:
    assert topic_matches("import.#", "import.deposit.ok")
    assert topic_matches("import.*.ok", "import.deposit.ok")
    assert not topic_matches("import.*.ok", "import.deposit.error")
    assert topic_matches("#", "a.b")
    assert topic_matches("import.history.done", "import.history.done")
    assert not topic_matches("import.deposit.#", "import.history.done")
    assert topic_matches("a.#.z", "a.z") and topic_matches("a.#.z", "a.b.c.z")


async def test_retries_then_dead_letters_and_reports() -> None:
    bus = MemoryBus(max_retries=2, backoff_s=0.001, prefetch=1)
    attempts: list[int] = []
    given_up: list[str] = []

    async def handler(d: Delivery) -> None:
        attempts.append(d.attempt)
        raise RuntimeError("boom")

    async def give_up(d: Delivery, exc: BaseException) -> None:
        given_up.append(str(exc))

    await bus.consume("q", handler, on_give_up=give_up)
    await bus.publish("", "q", b"x")
    await bus.drain(5)
    assert attempts == [0, 1, 2] and given_up == ["boom"]
    assert len(bus.dead_letters["q"]) == 1
    await bus.close()


async def test_a_transient_failure_is_retried_once() -> None:
    bus = MemoryBus(max_retries=3, backoff_s=0.001)
    seen: list[bytes] = []

    async def handler(d: Delivery) -> None:
        if d.attempt == 0:
            raise ConnectionError("db restarted")
        seen.append(d.body)

    await bus.consume("q", handler, bindings=(("edt.status", "import.#"),))
    await bus.publish("edt.status", "import.deposit.ok", b"e1")
    await bus.publish("edt.status", "other.key", b"ignored")
    await bus.drain(5)
    assert seen == [b"e1"] and not bus.dead_letters
    await bus.close()


async def test_paused_queue_holds_messages() -> None:
    bus = MemoryBus()
    seen: list[bytes] = []

    async def handler(d: Delivery) -> None:
        seen.append(d.body)

    await bus.consume("q", handler)
    bus.pause("q")
    await bus.publish("", "q", b"a")
    for _ in range(20):  # let every consumer task run: a paused queue must still hold the message
        await asyncio.sleep(0)
    assert seen == [] and (await bus.queue_stats("q"))["ready"] == 1
    bus.resume("q")
    await bus.drain(5)
    assert seen == [b"a"]
    await bus.close()
