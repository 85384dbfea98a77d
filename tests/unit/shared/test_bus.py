"""The in-process bus has the broker's semantics: topic routing, retries with backoff, dead letters."""

from __future__ import annotations

import asyncio

from shared.bus import DEAD_LETTERS_KEPT, PUBLISHED_KEPT, Delivery, MemoryBus, topic_matches


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
            raise RuntimeError("deadlock detected")  # a failure of this try, not an outage
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


async def _until(predicate: object, within: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not predicate():  # type: ignore[operator]
        assert loop.time() < deadline, "condition never met"
        await asyncio.sleep(0.005)


async def test_an_outage_spends_no_retry() -> None:
    """A database that refuses connections five times in a row: the message is handled once the outage is
    over, on its first attempt, never dead-lettered (before: 2 retries spent, then the dead-letter queue)."""
    bus = MemoryBus(max_retries=2, backoff_s=0.001, prefetch=1)
    attempts: list[int] = []
    handled: list[int] = []

    async def handler(d: Delivery) -> None:
        attempts.append(d.attempt)
        if len(attempts) <= 5:
            raise ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 5432)")
        handled.append(d.attempt)

    await bus.consume("q", handler)
    await bus.publish("", "q", b"x")
    await _until(lambda: handled)
    assert handled == [0] and set(attempts) == {0}
    assert not bus.dead_letters.get("q")
    await bus.close()


async def test_the_give_up_report_outlasts_an_outage() -> None:
    """A bad message whose failure report first meets an outage: the report is made once the database is
    back, then the message is dead-lettered (before: "on_give_up failed", the import left in flight)."""
    bus = MemoryBus(max_retries=0, backoff_s=0.001, prefetch=1)
    reports: list[str] = []
    tries = 0

    async def handler(d: Delivery) -> None:
        raise ValueError("not a timetable")

    async def give_up(d: Delivery, exc: BaseException) -> None:
        nonlocal tries
        tries += 1
        if tries < 4:
            raise OSError(111, "Connection refused") from ConnectionRefusedError()
        reports.append(str(exc))

    await bus.consume("q", handler, on_give_up=give_up)
    await bus.publish("", "q", b"x")
    await _until(lambda: bus.dead_letters.get("q"))
    assert reports == ["not a timetable"] and tries == 4
    await bus.close()


async def test_an_outage_longer_than_the_wait_counts_as_an_attempt() -> None:
    bus = MemoryBus(max_retries=1, backoff_s=0.001, prefetch=1, outage_wait_s=0.05)
    attempts: list[int] = []

    async def handler(d: Delivery) -> None:
        attempts.append(d.attempt)
        raise ConnectionResetError(104, "Connection reset by peer")

    await bus.consume("q", handler)
    await bus.publish("", "q", b"x")
    await _until(lambda: bus.dead_letters.get("q"))
    assert set(attempts) == {0, 1}
    await bus.close()


def test_outages_told_apart_from_bad_messages() -> None:
    import sqlalchemy as sa

    from shared.outage import is_outage

    assert is_outage(ConnectionRefusedError(111, "refused"))
    assert is_outage(OSError("Multiple exceptions: [Errno 111] Connect call failed ('127.0.0.1', 5432)"))
    assert not is_outage(FileNotFoundError(2, "No such file"))  # a missing blob is the message's problem
    assert not is_outage(ValueError("bad XML"))
    wrapped = sa.exc.InterfaceError("SELECT 1", {}, Exception("connection is closed"))
    assert is_outage(wrapped)
    assert not is_outage(sa.exc.IntegrityError("INSERT", {}, Exception("duplicate key")))
    assert not is_outage(sa.exc.ProgrammingError("SELECT", {}, Exception('relation "x" does not exist')))
    try:
        try:
            raise ConnectionResetError(104, "reset")
        except ConnectionResetError as inner:
            raise RuntimeError("step failed") from inner
    except RuntimeError as outer:
        assert is_outage(outer)


async def test_the_in_process_bus_keeps_a_bounded_number_of_messages() -> None:
    """A long-running embedded server does not keep what its bus carried: the newest PUBLISHED_KEPT
    publishes and DEAD_LETTERS_KEPT dead letters per queue, whatever went through (`python -m
    tests.faults.memory` measures the embedded server's RSS over 50 real imports)."""
    bus = MemoryBus(max_retries=0, backoff_s=0.001, prefetch=64)
    handled: list[bytes] = []

    async def handler(d: Delivery) -> None:
        handled.append(d.body)

    async def poison(d: Delivery) -> None:
        raise RuntimeError("poison")

    await bus.consume("q", handler, bindings=(("edt.status", "import.#"),))
    await bus.consume("dlq-source", poison)
    for n in range(PUBLISHED_KEPT + 300):
        await bus.publish("edt.status", "import.deposit.ok", b"%d " % n + b" " * 10_000)
    for n in range(DEAD_LETTERS_KEPT + 100):
        await bus.publish("", "dlq-source", b"%d" % n)
    await bus.drain(30)
    assert len(handled) == PUBLISHED_KEPT + 300  # every message delivered…
    assert len(bus.published) == PUBLISHED_KEPT  # …the newest kept
    assert bus.published[-1][2] == b"%d" % (DEAD_LETTERS_KEPT + 99)
    assert len(bus.dead_letters["dlq-source"]) == DEAD_LETTERS_KEPT
    assert bus.dead_letters["dlq-source"][-1].body == b"%d" % (DEAD_LETTERS_KEPT + 99)
    await bus.close()
