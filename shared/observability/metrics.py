"""Prometheus metrics of every service (one registry per process; every family is declared here, so that
each service's /metrics names them all and the Grafana dashboard can be checked against this module).

Labels are bounded: stages, queues (a process's own transient queue is named by its prefix), statuses,
modes, HTTP methods and status codes — never a site, an establishment or an import id.

Gauges that describe shared state (queue depths from the bus or the RabbitMQ management API, imports by
status from the notifier's table) are refreshed by the process that can read it, just before each scrape
(`add_refresher`), so a scrape never shows figures older than itself.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from prometheus_client import Counter, Gauge, Histogram

log = logging.getLogger("edt.metrics")

DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300)
IMPORT_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)

# --- pipeline stages (shared/worker.py) --------------------------------------------------------------
MESSAGES = Counter("edt_messages_total", "Stage commands handled, by outcome (ok, duplicate, dead_lettered)",
                   ["service", "queue", "outcome"])
STAGE_SECONDS = Histogram("edt_stage_seconds", "Time a stage handler takes (kept for existing dashboards; "
                          "see edt_stage_duration_seconds)", ["service", "stage"],
                          buckets=(0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 120))
STAGE_IN = Counter("edt_stage_messages_in_total", "Commands delivered to a stage (redeliveries included)", ["stage"])
STAGE_OUT = Counter("edt_stage_messages_out_total", "Steps a stage finished, by the step's status", ["stage",
                                                                                                   "step_status"])
STAGE_DURATION = Histogram("edt_stage_duration_seconds", "One step of one import: command in → transaction "
                           "committed", ["stage"], buckets=DURATION_BUCKETS)
STAGE_FAILURES = Counter("edt_stage_failures_total", "Attempts of a stage that raised (each is retried or "
                         "dead-lettered)", ["stage"])
STAGE_RETRIES = Counter("edt_stage_retries_total", "Redelivered attempts of a stage's commands", ["stage"])
STAGE_DEAD_LETTERED = Counter("edt_stage_dead_lettered_total", "Commands a stage gave up on (import failed, "
                              "message in the dead-letter queue)", ["stage"])

# --- the bus, every consumer (shared/bus.py) ---------------------------------------------------------
BUS_FAILURES = Counter("edt_bus_handler_failures_total", "Handler failures of any consumer", ["queue"])
BUS_RETRIES = Counter("edt_bus_retries_total", "Messages sent back to their queue for another attempt", ["queue"])
BUS_OUTAGE_WAITS = Counter("edt_bus_outage_waits_total", "Handler tries put off by an infrastructure outage "
                           "(database or broker unreachable; no retry spent)", ["queue"])
BUS_DEAD_LETTERED = Counter("edt_bus_dead_lettered_total", "Messages given up and dead-lettered", ["queue"])
OUTBOX_PUBLISHED = Counter("edt_outbox_published_total", "Outbox rows published (after commit)", ["service"])

# --- queues, refreshed before each scrape by the notifier (bus / management API / its table) ------------
QUEUE_READY = Gauge("edt_queue_ready_messages", "Messages waiting in a stage queue", ["stage", "queue"])
QUEUE_UNACKED = Gauge("edt_queue_unacked_messages", "Messages delivered, not yet acknowledged", ["stage", "queue"])
QUEUE_CONSUMERS = Gauge("edt_queue_consumers", "Consumers of a stage queue", ["stage", "queue"])
QUEUE_DEAD_LETTERED = Gauge("edt_queue_dead_lettered_messages", "Messages in a stage's dead-letter queue",
                            ["stage", "queue"])
QUEUE_OLDEST_AGE = Gauge("edt_queue_oldest_message_age_seconds", "Age of the oldest import queued for a stage",
                         ["stage", "queue"])

# --- imports (notifier) --------------------------------------------------------------------------------
IMPORTS = Gauge("edt_imports", "Imports recorded, by current status and mode", ["status", "mode"])
IMPORTS_FINISHED = Counter("edt_imports_finished_total", "Imports that reached a terminal status", ["status", "mode"])
IMPORT_DURATION = Histogram("edt_import_duration_seconds", "Integrated imports: admission → done", ["mode"],
                            buckets=IMPORT_BUCKETS)
IMPORT_QUEUE_WAIT = Histogram("edt_import_queue_wait_seconds", "Deposit → admission (time in the waiting line)",
                              ["mode"], buckets=IMPORT_BUCKETS)

# --- deposits and the edge (dropzone, every API) ---------------------------------------------------------
DEPOSITS = Counter("edt_deposits_total", "Files deposited", ["source"])
WEBDAV_REQUESTS = Counter("edt_webdav_requests_total", "WebDAV requests", ["method", "status"])
WEBDAV_BYTES = Counter("edt_webdav_bytes_total", "WebDAV body bytes, received (uploads) and sent", ["direction"])
HTTP_REQUESTS = Counter("edt_http_requests_total", "REST API requests", ["method", "status"])

# Methods a label may name; anything else is "other" (a client can send any token as a method).
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "PROPFIND", "PROPPATCH",
                          "MKCOL", "COPY", "MOVE", "LOCK", "UNLOCK"})


def method_label(method: str) -> str:
    method = method.upper()
    return method if method in HTTP_METHODS else "other"


Refresher = Callable[[], Awaitable[None]]
_refreshers: list[Refresher] = []
REFRESH_TIMEOUT_S = 3.0


def add_refresher(refresh: Refresher) -> Callable[[], None]:
    """Run `refresh` before each scrape of this process's /metrics; returns the function that removes it."""
    _refreshers.append(refresh)

    def remove() -> None:
        if refresh in _refreshers:
            _refreshers.remove(refresh)

    return remove


async def refresh_all() -> None:
    """Every refresher, bounded: a slow management API leaves its gauges as they were, never blocks a scrape."""
    for refresh in list(_refreshers):
        try:
            async with asyncio.timeout(REFRESH_TIMEOUT_S):
                await refresh()
        except Exception:  # noqa: BLE001 - a scrape reports what it can
            log.warning("metrics refresh failed", exc_info=True)


class Timer:
    def __init__(self) -> None:
        self.start = time.perf_counter()

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start
