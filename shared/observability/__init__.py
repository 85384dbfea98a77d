"""Observability of every service: Prometheus metrics (`metrics.py`), logs with the import they serve
(`logs.py`), traces across services (`tracing.py`), and the ops routes (/metrics, /healthz, /readyz)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel

from shared.observability.logs import current_log_context, log_context, setup_logging
from shared.observability.metrics import (
    BUS_DEAD_LETTERED,
    BUS_FAILURES,
    BUS_OUTAGE_WAITS,
    BUS_RETRIES,
    DEPOSITS,
    HTTP_REQUESTS,
    IMPORT_DURATION,
    IMPORT_QUEUE_WAIT,
    IMPORTS,
    IMPORTS_FINISHED,
    MESSAGES,
    OUTBOX_PUBLISHED,
    QUEUE_CONSUMERS,
    QUEUE_DEAD_LETTERED,
    QUEUE_OLDEST_AGE,
    QUEUE_READY,
    QUEUE_UNACKED,
    STAGE_DEAD_LETTERED,
    STAGE_DURATION,
    STAGE_FAILURES,
    STAGE_IN,
    STAGE_OUT,
    STAGE_RETRIES,
    STAGE_SECONDS,
    WEBDAV_BYTES,
    WEBDAV_REQUESTS,
    Timer,
    add_refresher,
    method_label,
    refresh_all,
)
from shared.observability.tracing import setup_tracing, span, trace_headers

__all__ = [
    "BUS_DEAD_LETTERED", "BUS_FAILURES", "BUS_OUTAGE_WAITS", "BUS_RETRIES", "DEPOSITS", "HTTP_REQUESTS", "IMPORTS",
    "IMPORTS_FINISHED", "IMPORT_DURATION", "IMPORT_QUEUE_WAIT", "MESSAGES", "OUTBOX_PUBLISHED", "QUEUE_CONSUMERS",
    "QUEUE_DEAD_LETTERED", "QUEUE_OLDEST_AGE", "QUEUE_READY", "QUEUE_UNACKED", "STAGE_DEAD_LETTERED",
    "STAGE_DURATION", "STAGE_FAILURES", "STAGE_IN", "STAGE_OUT", "STAGE_RETRIES", "STAGE_SECONDS", "WEBDAV_BYTES",
    "WEBDAV_REQUESTS", "HealthRead", "Timer", "add_refresher", "current_log_context", "log_context", "method_label",
    "ops_router", "refresh_all", "setup_logging", "setup_tracing", "span", "trace_headers",
]


class HealthRead(BaseModel):
    status: str


def ops_router(ready: Callable[[], Awaitable[bool]]) -> APIRouter:
    router = APIRouter()

    @router.get("/metrics", include_in_schema=False, response_class=Response,
                responses={200: {"description": "Prometheus metrics", "content": {CONTENT_TYPE_LATEST: {}}}})
    async def metrics() -> Response:
        await refresh_all()
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
