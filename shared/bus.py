"""One bus interface, two implementations with the same semantics (design.md §2, §8b).

- RabbitBus: aio-pika, durable quorum queues, publisher confirms, persistent messages, prefetch,
  manual ack after the handler returned (i.e. after its transaction committed), bounded retries with
  backoff, then the dead-letter exchange `edt.dlx` and a `<queue>.dlq` queue.
- MemoryBus: the same in one process (embedded mode, fast tests).

Handlers are idempotent: a message may be delivered twice (redelivery after a crash, retry). This module
is the transport alone: handlers never publish here directly but emit through their unit of work
(`shared.outbox`), whose relay publishes after commit; the stage consumer is `shared.worker.StageWorker`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from shared.messages import CHANGES_EXCHANGE, DEAD_LETTER_EXCHANGE, NOTIFICATIONS_EXCHANGE, STATUS_EXCHANGE
from shared.observability import BUS_DEAD_LETTERED, BUS_FAILURES, BUS_OUTAGE_WAITS, BUS_RETRIES
from shared.outage import is_outage

log = logging.getLogger("edt.bus")

TOPIC_EXCHANGES = (STATUS_EXCHANGE, CHANGES_EXCHANGE, NOTIFICATIONS_EXCHANGE)
ATTEMPT_HEADER = "x-edt-attempt"
OUTAGE_BACKOFF_MAX_S = 5.0  # the longest pause between two tries while the infrastructure is down
PUBLISHED_KEPT = 200  # MemoryBus: the newest publishes kept for tests to inspect, older ones dropped
DEAD_LETTERS_KEPT = 1000  # MemoryBus: per queue
CONSUME_ATTEMPTS = 6  # RabbitBus.consume: tries 0.25, 0.5, 1, 2, 4 s apart, each once the connection is back


@dataclass
class Delivery:
    body: bytes
    routing_key: str
    message_id: str
    attempt: int = 0  # 0 on first delivery
    headers: dict[str, Any] = field(default_factory=dict)


Handler = Callable[[Delivery], Awaitable[None]]
# Called once when a message is given up (after its retries), before it goes to the dead-letter queue.
GiveUp = Callable[[Delivery, BaseException], Awaitable[None]]


def queue_label(queue: str, transient: bool) -> str:
    """The queue as a metric label: a process's own transient queue ends with a random part, dropped."""
    return queue.rsplit(".", 1)[0] if transient else queue


def topic_matches(pattern: str, key: str) -> bool:
    """AMQP topic matching: `*` is one word, `#` zero or more words."""
    p, k = pattern.split("."), key.split(".")

    def match(i: int, j: int) -> bool:
        if i == len(p):
            return j == len(k)
        if p[i] == "#":
            return any(match(i + 1, jj) for jj in range(j, len(k) + 1))
        return j < len(k) and p[i] in ("*", k[j]) and match(i + 1, j + 1)

    return match(0, 0)


class Bus(ABC):
    """`max_retries` is the budget of a message that fails by itself; a failure that is an infrastructure
    outage (`shared.outage.is_outage`: the database or the broker unreachable) spends none of it — the
    handler is tried again, with backoff, for as long as `outage_wait_s`, holding its message."""

    def __init__(self, *, max_retries: int = 3, backoff_s: float = 0.5, prefetch: int = 4,
                 outage_wait_s: float = 900.0) -> None:
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.prefetch = prefetch
        self.outage_wait_s = outage_wait_s

    @abstractmethod
    async def start(self) -> None: ...

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    async def publish(self, exchange: str, routing_key: str, body: bytes, *, message_id: str | None = None,
                      headers: dict[str, Any] | None = None) -> None:
        """Publish and wait for the broker's confirm. `exchange` "" sends straight to the queue named
        `routing_key`."""

    @abstractmethod
    async def consume(self, queue: str, handler: Handler, *, bindings: tuple[tuple[str, str], ...] = (),
                      on_give_up: GiveUp | None = None, prefetch: int | None = None,
                      transient: bool = False) -> None:
        """Declare `queue` (bound to each (exchange, pattern)) and start consuming it. `transient`: this
        process's own queue, gone with it (a notice only the live process cares about, e.g. an
        acknowledgement it waits for), not a durable queue shared by the consumers of a service."""

    @abstractmethod
    async def unbind(self, queue: str, exchange: str, pattern: str) -> None:
        """Remove a binding `queue` had (one an earlier version declared: bindings outlive their consumer);
        nothing when there is no such binding or queue."""

    async def queue_stats(self, queue: str) -> dict[str, Any]:
        return {}

    async def dead_letters_of(self, queue: str, limit: int = 50) -> list[Delivery]:
        """The oldest messages (at most `limit`) of `queue`'s dead-letter queue, left where they are."""
        return []

    async def replay_dead_letters(self, queue: str, limit: int = 1000) -> int:
        """Send the messages of `queue`'s dead-letter queue back to `queue`, oldest first, each with a whole
        retry budget again (attempt 0). Returns how many."""
        return 0

    def is_ready(self) -> bool:
        """The broker is reachable (readiness): the in-process bus always is."""
        return True

    def backoff(self, attempt: int) -> float:
        return self.backoff_s * (2**attempt)

    async def outlast(self, call: Callable[[], Awaitable[None]], what: str, label: str) -> None:
        """`call()`, tried again with backoff while it fails with an infrastructure outage, for at most
        `outage_wait_s`; any other failure (or an outage outlasting that) is raised."""
        started = time.monotonic()
        tries = 0
        while True:
            try:
                await call()
                if tries:
                    log.info("%s: infrastructure back after %.1f s", what, time.monotonic() - started)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not is_outage(exc) or time.monotonic() - started >= self.outage_wait_s:
                    raise
                delay = min(OUTAGE_BACKOFF_MAX_S, max(self.backoff_s, 0.05) * (2 ** min(tries, 10)))
                if tries == 0 or tries % 10 == 0:
                    log.warning("%s: infrastructure unavailable (%r); waiting, no retry spent", what, exc)
                BUS_OUTAGE_WAITS.labels(label).inc()
                tries += 1
                await asyncio.sleep(delay)

    async def _run_handler(self, delivery: Delivery, handler: Handler, on_give_up: GiveUp | None,
                           retry: Callable[[Delivery], Awaitable[None]],
                           dead_letter: Callable[[Delivery], Awaitable[None]], label: str) -> None:
        """Shared retry policy: handler → ok; an outage → waited out (`outlast`), the attempt not counted;
        or retry with backoff; or give up to the dead-letter queue."""
        try:
            await self.outlast(lambda: handler(delivery), f"handler on {delivery.routing_key}", label)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - any handler failure follows the retry policy
            BUS_FAILURES.labels(label).inc()
            if delivery.attempt < self.max_retries:
                BUS_RETRIES.labels(label).inc()
                log.warning("handler failed on %s (attempt %d), retrying: %r",
                            delivery.routing_key, delivery.attempt + 1, exc)
                await asyncio.sleep(self.backoff(delivery.attempt))
                await retry(Delivery(delivery.body, delivery.routing_key, delivery.message_id,
                                     delivery.attempt + 1, dict(delivery.headers)))
            else:
                log.error("giving up on %s after %d attempts: %r", delivery.routing_key, delivery.attempt + 1, exc)
                BUS_DEAD_LETTERED.labels(label).inc()
                if on_give_up is not None:
                    report, failure = on_give_up, exc
                    try:
                        # Reporting the failure (the import `failed`) also waits out an outage: a message
                        # dead-lettered without it would leave its import in flight with nobody on it.
                        await self.outlast(lambda: report(delivery, failure), f"give-up on {delivery.routing_key}",
                                           label)
                    except Exception:  # noqa: BLE001 - reporting must not lose the message
                        log.exception("on_give_up failed")
                await dead_letter(delivery)


class MemoryBus(Bus):
    """In-process bus with the RabbitMQ bus' semantics (routing, retries, dead letters)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.queues: dict[str, asyncio.Queue[Delivery]] = {}
        self.bindings: list[tuple[str, str, str]] = []  # (exchange, pattern, queue)
        self.dead_letters: dict[str, collections.deque[Delivery]] = {}
        # The newest publishes, for tests: bounded, as a long-running embedded server publishes megabytes of
        # change events per first import.
        self.published: collections.deque[tuple[str, str, bytes]] = collections.deque(maxlen=PUBLISHED_KEPT)
        self.inflight: dict[str, int] = {}
        self.consumers: dict[str, int] = {}
        self._running: dict[str, asyncio.Event] = {}
        self._tasks: list[asyncio.Task[None]] = []

    def pause(self, queue: str) -> None:
        """Stop taking messages from `queue` (like stopping its consumer process); they wait in it."""
        self._running.setdefault(queue, asyncio.Event()).clear()

    def resume(self, queue: str) -> None:
        self._running.setdefault(queue, asyncio.Event()).set()

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()

    def _queue(self, name: str) -> asyncio.Queue[Delivery]:
        return self.queues.setdefault(name, asyncio.Queue())

    async def unbind(self, queue: str, exchange: str, pattern: str) -> None:
        self.bindings = [b for b in self.bindings if b != (exchange, pattern, queue)]

    async def publish(self, exchange: str, routing_key: str, body: bytes, *, message_id: str | None = None,
                      headers: dict[str, Any] | None = None) -> None:
        delivery = Delivery(body, routing_key, message_id or uuid.uuid4().hex, 0, dict(headers or {}))
        self.published.append((exchange, routing_key, body))
        if exchange == "":
            self._queue(routing_key).put_nowait(delivery)
            return
        for ex, pattern, queue in self.bindings:
            if ex == exchange and topic_matches(pattern, routing_key):
                copy = Delivery(body, routing_key, delivery.message_id, 0, dict(delivery.headers))
                self._queue(queue).put_nowait(copy)

    async def consume(self, queue: str, handler: Handler, *, bindings: tuple[tuple[str, str], ...] = (),
                      on_give_up: GiveUp | None = None, prefetch: int | None = None,
                      transient: bool = False) -> None:
        q = self._queue(queue)
        for exchange, pattern in bindings:
            if (exchange, pattern, queue) not in self.bindings:
                self.bindings.append((exchange, pattern, queue))
        self.consumers[queue] = self.consumers.get(queue, 0) + 1

        async def retry(d: Delivery) -> None:
            q.put_nowait(d)

        async def dead_letter(d: Delivery) -> None:
            self.dead_letters.setdefault(queue, collections.deque(maxlen=DEAD_LETTERS_KEPT)).append(d)

        running = self._running.get(queue)
        if running is None:  # not paused before its consumer started
            running = self._running[queue] = asyncio.Event()
            running.set()

        async def worker() -> None:
            while True:
                await running.wait()
                delivery = await q.get()
                # delivered, not yet acknowledged (RabbitMQ's "unacked"), also while a pause holds it
                self.inflight[queue] = self.inflight.get(queue, 0) + 1
                await running.wait()  # paused while it waited for a message: hold it unprocessed
                try:
                    await self._run_handler(delivery, handler, on_give_up, retry, dead_letter,
                                            queue_label(queue, transient))
                finally:
                    self.inflight[queue] -= 1
                    q.task_done()

        for _ in range(prefetch or self.prefetch):
            self._tasks.append(asyncio.create_task(worker(), name=f"consume:{queue}"))

    async def queue_stats(self, queue: str) -> dict[str, Any]:
        q = self.queues.get(queue)
        return {
            "ready": q.qsize() if q else 0,
            "unacked": self.inflight.get(queue, 0),
            "consumers": self.consumers.get(queue, 0),
            "dead_lettered": len(self.dead_letters.get(queue, [])),
        }

    async def dead_letters_of(self, queue: str, limit: int = 50) -> list[Delivery]:
        return list(self.dead_letters.get(queue, ()))[:limit]

    async def replay_dead_letters(self, queue: str, limit: int = 1000) -> int:
        held = self.dead_letters.get(queue)
        replayed = 0
        while held and replayed < limit:
            d = held.popleft()
            self._queue(queue).put_nowait(Delivery(d.body, d.routing_key, d.message_id, 0, dict(d.headers)))
            replayed += 1
        return replayed

    async def drain(self, within: float = 10.0) -> None:
        """Wait until every queue is empty and no handler runs (tests)."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if all(q.empty() for q in self.queues.values()) and not any(self.inflight.values()):
                await asyncio.sleep(0.05)
                if all(q.empty() for q in self.queues.values()) and not any(self.inflight.values()):
                    return
            await asyncio.sleep(0.02)
        raise TimeoutError("bus did not drain")


class RabbitBus(Bus):
    def __init__(self, url: str, *, management_url: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.url = url
        self.management_url = management_url
        self._connection: Any = None
        self._publish_channel: Any = None
        self._exchanges: dict[str, Any] = {}
        self._publish_lock = asyncio.Lock()
        self._management: Any = None  # one HTTP client (and TLS context) for every queue figure

    async def start(self) -> None:
        import aio_pika

        self._connection = await aio_pika.connect_robust(self.url)
        self._publish_channel = await self._connection.channel(publisher_confirms=True)
        await self._declare_exchanges(self._publish_channel)

    async def _declare_exchanges(self, channel: Any) -> None:
        import aio_pika

        for name in TOPIC_EXCHANGES:
            self._exchanges[name] = await channel.declare_exchange(name, aio_pika.ExchangeType.TOPIC, durable=True)
        self._exchanges[DEAD_LETTER_EXCHANGE] = await channel.declare_exchange(
            DEAD_LETTER_EXCHANGE, aio_pika.ExchangeType.DIRECT, durable=True)
        self._exchanges[""] = channel.default_exchange

    async def close(self) -> None:
        if self._management is not None:
            await self._management.aclose()
            self._management = None
        if self._connection is not None:
            await self._connection.close()
            self._connection = None

    def is_ready(self) -> bool:
        # A robust connection reconnects by itself: `connected` is clear while it is down.
        connection = self._connection
        return connection is not None and not connection.is_closed and connection.connected.is_set()

    async def declare_queue(self, channel: Any, queue: str) -> Any:
        # Quorum queue; x-delivery-limit is the safety net for a message that kills its consumer
        # process over and over (our own retry counter never gets a chance to run then).
        dlq = await channel.declare_queue(f"{queue}.dlq", durable=True, arguments={"x-queue-type": "quorum"})
        await dlq.bind(self._exchanges[DEAD_LETTER_EXCHANGE], routing_key=queue)
        return await channel.declare_queue(
            queue,
            durable=True,
            arguments={
                "x-queue-type": "quorum",
                "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE,
                "x-dead-letter-routing-key": queue,
                "x-delivery-limit": self.max_retries + 5,
            },
        )

    async def publish(self, exchange: str, routing_key: str, body: bytes, *, message_id: str | None = None,
                      headers: dict[str, Any] | None = None) -> None:
        import aio_pika

        message = aio_pika.Message(
            body,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=message_id or uuid.uuid4().hex,
            content_type="application/json",
            headers=headers or {},
            timestamp=time.time(),
        )
        # With publisher confirms, publish() returns once the broker has taken responsibility.
        async with self._publish_lock:
            await self._exchanges[exchange].publish(message, routing_key=routing_key, mandatory=False)

    async def consume(self, queue: str, handler: Handler, *, bindings: tuple[tuple[str, str], ...] = (),
                      on_give_up: GiveUp | None = None, prefetch: int | None = None,
                      transient: bool = False) -> None:
        """Declare `queue`, bind it and consume it. The broker may refuse a setup for a moment — a quorum
        queue another process has just declared answers `noproc` until its replica runs (the connection
        closes with INTERNAL_ERROR), an exclusive queue is held by a connection on its way out —: each
        setup is tried again, over a few seconds, on a fresh channel once the connection is back."""
        import aiormq

        for attempt in range(CONSUME_ATTEMPTS):
            try:
                await self._consume_once(queue, handler, bindings, on_give_up, prefetch, transient)
                return
            except (aiormq.exceptions.AMQPConnectionError, aiormq.exceptions.ChannelClosed) as exc:
                if attempt == CONSUME_ATTEMPTS - 1:
                    raise
                log.warning("consuming %s refused (%r): trying again", queue, exc)
                await asyncio.sleep(0.25 * 2**attempt)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._connection.connected.wait(), 10)

    async def unbind(self, queue: str, exchange: str, pattern: str) -> None:
        import aiormq

        channel = await self._connection.channel()
        try:
            q = await channel.get_queue(queue, ensure=True)
            await q.unbind(exchange, routing_key=pattern)
        except aiormq.exceptions.ChannelNotFoundEntity:
            pass  # no such queue (a new broker): no binding to remove
        finally:
            with contextlib.suppress(Exception):
                await channel.close()

    async def _consume_once(self, queue: str, handler: Handler, bindings: tuple[tuple[str, str], ...],
                            on_give_up: GiveUp | None, prefetch: int | None, transient: bool) -> None:
        channel = await self._connection.channel(publisher_confirms=True)
        await channel.set_qos(prefetch_count=prefetch or self.prefetch)
        await self._declare_exchanges(channel)
        if transient:  # exclusive, auto-deleted with this connection; the robust connection declares it again
            q = await channel.declare_queue(queue, durable=False, exclusive=True, auto_delete=True)
        else:
            q = await self.declare_queue(channel, queue)
        for exchange, pattern in bindings:
            await q.bind(self._exchanges[exchange], routing_key=pattern)

        async def on_message(message: Any) -> None:
            headers = dict(message.headers or {})
            delivery = Delivery(message.body, message.routing_key or "", message.message_id or "",
                                int(headers.get(ATTEMPT_HEADER, 0)), headers)

            async def retry(d: Delivery) -> None:
                # Republish a copy carrying the attempt count straight to this queue, then ack the
                # original: a crash in between only means one more (idempotent) delivery.
                hdrs = dict(d.headers)
                hdrs[ATTEMPT_HEADER] = d.attempt
                await self.publish("", queue, d.body, message_id=d.message_id, headers=hdrs)
                await message.ack()

            async def dead_letter(d: Delivery) -> None:
                await message.reject(requeue=False)

            async def run() -> None:
                await self._run_handler(delivery, handler, on_give_up, retry, dead_letter,
                                        queue_label(queue, transient))

            try:
                await run()
            except asyncio.CancelledError:
                raise
            else:
                if not message.processed:
                    await message.ack()

        await q.consume(on_message, no_ack=False)

    async def _dead_letter_queue(self, channel: Any, queue: str) -> Any:
        """`queue`'s dead-letter queue, declared as its consumers declare it (arguments must match)."""
        return await channel.declare_queue(f"{queue}.dlq", durable=True, arguments={"x-queue-type": "quorum"})

    async def dead_letters_of(self, queue: str, limit: int = 50) -> list[Delivery]:
        channel = await self._connection.channel()
        found: list[Delivery] = []
        try:
            dlq = await self._dead_letter_queue(channel, queue)
            for _ in range(limit):
                message = await dlq.get(no_ack=False, fail=False)
                if message is None:
                    break
                headers = dict(message.headers or {})
                found.append(Delivery(message.body, message.routing_key or "", message.message_id or "",
                                      int(headers.get(ATTEMPT_HEADER, 0)), headers))
        finally:
            await channel.close()  # unacknowledged: every message read goes back to the dead-letter queue
        return found

    async def replay_dead_letters(self, queue: str, limit: int = 1000) -> int:
        channel = await self._connection.channel()
        replayed = 0
        try:
            dlq = await self._dead_letter_queue(channel, queue)
            while replayed < limit:
                message = await dlq.get(no_ack=False, fail=False)
                if message is None:
                    break
                headers = {k: v for k, v in dict(message.headers or {}).items()
                           if not k.startswith(("x-death", "x-first-death", "x-last-death", "x-delivery-count"))}
                headers[ATTEMPT_HEADER] = 0
                # Published (and confirmed) before the dead letter is acknowledged: a crash in between
                # replays it twice, which its idempotent consumer tolerates.
                await self.publish("", queue, message.body, message_id=message.message_id, headers=headers)
                await message.ack()
                replayed += 1
        finally:
            await channel.close()
        return replayed

    async def queue_stats(self, queue: str) -> dict[str, Any]:
        if not self.management_url:
            return {}
        from urllib.parse import quote, unquote, urlsplit

        import httpx

        url = self.management_url.rstrip("/")
        vhost = quote(unquote(urlsplit(self.url).path[1:]) or "/", safe="")
        if self._management is None:
            self._management = httpx.AsyncClient(timeout=3)
        client = self._management
        try:
            r = await client.get(f"{url}/api/queues/{vhost}/{queue}")
            r.raise_for_status()
            data = r.json()
            dlq = (await client.get(f"{url}/api/queues/{vhost}/{queue}.dlq")).json()
        except Exception as exc:  # noqa: BLE001 - ops endpoint reports what it can
            return {"error": f"management API unavailable: {exc.__class__.__name__}"}
        stats = data.get("message_stats") or {}
        return {
            "ready": data.get("messages_ready", 0),
            "unacked": data.get("messages_unacknowledged", 0),
            "consumers": data.get("consumers", 0),
            "publish_rate": (stats.get("publish_details") or {}).get("rate", 0.0),
            "ack_rate": (stats.get("ack_details") or {}).get("rate", 0.0),
            "dead_lettered": dlq.get("messages", 0) if isinstance(dlq, dict) else 0,
        }


class AckWaiter:
    """Requests of this process waiting for named services to acknowledge a message (read-your-writes: a
    deposit recorded, a revocation or an abort registered). `expect` before the message can leave, `ack`
    from the consumer of the acknowledgements, `wait` in the request; `forget` when it is answered."""

    def __init__(self) -> None:
        self._pending: dict[str, tuple[set[str], asyncio.Event, dict[str, Any]]] = {}

    def expect(self, key: str, by: tuple[str, ...] | list[str]) -> None:
        self._pending[key] = (set(by), asyncio.Event(), {})

    def ack(self, key: str, by: str, detail: Any = None) -> None:
        waiting = self._pending.get(key)
        if waiting is None:
            return
        waiting[0].discard(by)
        waiting[2][by] = detail
        if not waiting[0]:
            waiting[1].set()

    async def wait(self, key: str, timeout_s: float) -> tuple[set[str], dict[str, Any]]:
        """The services still missing after at most `timeout_s` (empty: all acknowledged) and what each one
        that answered said."""
        missing, done, details = self._pending[key]
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await done.wait()
        return set(missing), dict(details)

    def forget(self, key: str) -> None:
        self._pending.pop(key, None)


def make_bus(broker_url: str, *, max_retries: int = 3, backoff_s: float = 0.5, prefetch: int = 4,
             management_url: str | None = None, outage_wait_s: float = 900.0) -> Bus:
    if broker_url.startswith("memory://"):
        return MemoryBus(max_retries=max_retries, backoff_s=backoff_s, prefetch=prefetch, outage_wait_s=outage_wait_s)
    return RabbitBus(broker_url, management_url=management_url, max_retries=max_retries,
                     backoff_s=backoff_s, prefetch=prefetch, outage_wait_s=outage_wait_s)
