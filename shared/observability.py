"""Logging, Prometheus metrics and health routes, the same in every service."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from pydantic import BaseModel

MESSAGES = Counter("edt_messages_total", "Messages handled", ["service", "queue", "outcome"])
STAGE_SECONDS = Histogram("edt_stage_seconds", "Time a stage handler takes", ["service", "stage"],
                          buckets=(0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 120))
HTTP_REQUESTS = Counter("edt_http_requests_total", "HTTP requests", ["method", "status"])
DEPOSITS = Counter("edt_deposits_total", "Files deposited", ["source"])


def setup_logging(service: str) -> None:
    level = os.environ.get("EDT_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(level=level, format=f"%(asctime)s {service} %(levelname)s %(name)s: %(message)s")
    # aio-pika/aiormq are chatty at INFO on every reconnect.
    logging.getLogger("aiormq").setLevel(logging.WARNING)
    logging.getLogger("aio_pika").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # WsgiDAV warns on every 401, which WebDAV clients trigger by design before sending credentials.
    logging.getLogger("wsgidav").setLevel(logging.ERROR)


class HealthRead(BaseModel):
    status: str


def ops_router(ready: Callable[[], Awaitable[bool]]) -> APIRouter:
    router = APIRouter()

    @router.get("/metrics", include_in_schema=False, response_class=Response,
                responses={200: {"description": "Prometheus metrics", "content": {CONTENT_TYPE_LATEST: {}}}})
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @router.get("/healthz", response_model=HealthRead, summary="Liveness")
    async def healthz() -> HealthRead:
        return HealthRead(status="ok")

    @router.get("/readyz", response_model=HealthRead, summary="Readiness (the database answers)",
                responses={503: {"model": HealthRead, "description": "Not ready"}})
    async def readyz(response: Response) -> HealthRead:
        if await ready():
            return HealthRead(status="ready")
        response.status_code = 503
        return HealthRead(status="not ready")

    return router


class Timer:
    def __init__(self) -> None:
        self.start = time.perf_counter()

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start
