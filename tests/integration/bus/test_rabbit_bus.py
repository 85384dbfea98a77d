"""The RabbitMQ bus on the real broker: confirms, manual ack, retries, dead letters, redelivery."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import aio_pika

from shared.bus import Delivery, RabbitBus
from tests.harness import sample_xml
from tests.integration.conftest import Stack


async def until(predicate: Callable[[], bool], within: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_publish_consume_and_topic_routing(rabbit_vhost: str) -> None:
    bus = RabbitBus(rabbit_vhost, max_retries=1, backoff_s=0.01)
    await bus.start()
    got: list[Delivery] = []

    async def handler(d: Delivery) -> None:
        got.append(d)

    await bus.consume("t.status", handler, bindings=(("edt.status", "import.deposit.#"),))
    await bus.publish("edt.status", "import.deposit.ok", b"a", message_id="m1")
    await bus.publish("edt.status", "import.history.done", b"not for us")
    await bus.publish("", "t.status", b"direct")
    await until(lambda: len(got) == 2)
    assert sorted(d.body for d in got) == [b"a", b"direct"]
    assert {d.message_id for d in got if d.body == b"a"} == {"m1"}
    await bus.close()


async def test_a_binding_an_earlier_version_declared_is_removed_and_unbinding_twice_or_on_no_queue_is_harmless(
        rabbit_vhost: str) -> None:
    """The notifier's status queue once had the deposits' binding: bindings outlive their consumers, so the
    version that gave the deposits a queue of their own removes it, and a deposit reaches one queue only."""
    old = RabbitBus(rabbit_vhost, max_retries=1, backoff_s=0.01)
    await old.start()

    async def ignore(d: Delivery) -> None:
        return None

    await old.consume("t.events", ignore, bindings=(("edt.status", "import.deposit.#"),
                                                    ("edt.status", "import.validation.#")))
    await old.close()  # the earlier version stops; its queue and bindings stay on the broker
    bus = RabbitBus(rabbit_vhost, max_retries=1, backoff_s=0.01)
    await bus.start()
    got: dict[str, list[bytes]] = {"t.events": [], "t.deposits": []}

    def collect(queue: str) -> Callable[[Delivery], Awaitable[None]]:
        async def handler(d: Delivery) -> None:
            got[queue].append(d.body)
        return handler

    await bus.consume("t.deposits", collect("t.deposits"), bindings=(("edt.status", "import.deposit.#"),))
    await bus.consume("t.events", collect("t.events"), bindings=(("edt.status", "import.validation.#"),))
    for _ in range(2):
        await bus.unbind("t.events", "edt.status", "import.deposit.#")
    await bus.unbind("t.never-declared", "edt.status", "import.deposit.#")
    await bus.publish("edt.status", "import.deposit.ok", b"deposit")
    await bus.publish("edt.status", "import.validation.ok", b"validation")
    await until(lambda: got["t.deposits"] == [b"deposit"] and got["t.events"] == [b"validation"])
    await bus.publish("edt.status", "import.validation.ok", b"after")  # the queue is still consumed
    await until(lambda: got["t.events"] == [b"validation", b"after"])
    assert got["t.deposits"] == [b"deposit"]
    await bus.close()


async def test_a_consumer_refused_by_the_broker_for_a_moment_tries_again(rabbit_vhost: str) -> None:
    """Another connection holds the queue (exclusive) as the consumer starts: the broker refuses the setup
    (RESOURCE_LOCKED), as it refuses a quorum queue whose replica is not running yet (two processes of a
    stage starting at once). The consumer tries again and consumes once the queue is free."""
    holder = await aio_pika.connect(rabbit_vhost)
    await (await holder.channel()).declare_queue("t.held", exclusive=True)
    refusals: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "refused" in record.getMessage():
                refusals.append(record)

    collect = Collect()
    logging.getLogger("edt.bus").addHandler(collect)
    bus = RabbitBus(rabbit_vhost, max_retries=1, backoff_s=0.01)
    await bus.start()
    got: list[bytes] = []

    async def handler(d: Delivery) -> None:
        got.append(d.body)

    try:
        consuming = asyncio.create_task(bus.consume("t.held", handler))
        await until(lambda: bool(refusals))
        assert not consuming.done()
        await holder.close()  # the exclusive queue goes with its connection
        await asyncio.wait_for(consuming, 15)
        await bus.publish("", "t.held", b"after")
        await until(lambda: got == [b"after"])
    finally:
        logging.getLogger("edt.bus").removeHandler(collect)
        await bus.close()
        if not holder.is_closed:
            await holder.close()


async def test_failing_handler_is_retried_then_dead_lettered(rabbit_vhost: str) -> None:
    bus = RabbitBus(rabbit_vhost, max_retries=2, backoff_s=0.01)
    await bus.start()
    attempts: list[int] = []
    given_up: list[str] = []

    async def handler(d: Delivery) -> None:
        attempts.append(d.attempt)
        raise RuntimeError("poison")

    async def give_up(d: Delivery, exc: BaseException) -> None:
        given_up.append(d.body.decode())

    await bus.consume("t.poison", handler, on_give_up=give_up)
    await bus.publish("", "t.poison", b"bad")
    await until(lambda: given_up == ["bad"])
    assert attempts == [0, 1, 2]
    conn = await aio_pika.connect(rabbit_vhost)
    channel = await conn.channel()
    dlq = await channel.get_queue("t.poison.dlq")
    message = None
    for _ in range(50):
        message = await dlq.get(fail=False)
        if message:
            break
        await asyncio.sleep(0.05)
    assert message is not None and message.body == b"bad"
    await message.ack()
    await conn.close()
    await bus.close()


async def test_unacked_message_is_redelivered_when_its_consumer_dies(rabbit_vhost: str) -> None:
    first = RabbitBus(rabbit_vhost)
    await first.start()
    started = asyncio.Event()

    async def hang(d: Delivery) -> None:
        started.set()
        await asyncio.sleep(3600)  # killed mid-work

    await first.consume("t.crash", hang)
    await first.publish("", "t.crash", b"work")
    await asyncio.wait_for(started.wait(), 10)
    await first.close()  # the process dies: no ack was sent
    second = RabbitBus(rabbit_vhost)
    await second.start()
    done: list[bytes] = []

    async def finish(d: Delivery) -> None:
        done.append(d.body)

    await second.consume("t.crash", finish)
    await until(lambda: done == [b"work"])
    await second.close()


def test_pipeline_on_rabbitmq_and_postgres(rabbit_stack: Stack) -> None:
    api = rabbit_stack.api
    api.create_site("4817", {"1754": "0490856P"})
    done = api.wait(api.upload("4817", "1754", sample_xml("0490856P")))
    assert done["status"] == "done"
    assert [s["status"] for s in done["steps"]] == ["ok", "warning", "warning", "warning", "ok"]
    ops = api.ok("GET", "/ops/queues")
    assert set(ops["stages"]) == {"validation", "thresholds", "groups", "sessions"}
    assert ops["stages"]["validation"]["queue"] == "edt.validate"
