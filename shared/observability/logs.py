"""Logging of every service: plain text or one JSON object per line (EDT_LOG_FORMAT=json), each line of an
import's work carrying `import_id`, `site`, `establishment` and `stage` (set by `log_context` in the
StageWorker, the notifier and the dropzone) and the trace it belongs to (`trace_id`, `span_id`).

Context variables follow the work: asyncio tasks and `asyncio.to_thread` copy them, so a line logged deep
inside a stage's domain still names its import.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from opentelemetry import trace

CONTEXT_FIELDS = ("import_id", "site", "establishment", "stage")
_context: ContextVar[dict[str, str]] = ContextVar("edt_log_context", default={})  # noqa: B039 - never mutated


@contextlib.contextmanager
def log_context(**fields: str | None) -> Iterator[None]:
    """Lines logged inside the block (and in the tasks and threads it starts) carry these fields."""
    token = _context.set({**_context.get(), **{k: str(v) for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _context.reset(token)


def current_log_context() -> dict[str, str]:
    return dict(_context.get())


class ContextFilter(logging.Filter):
    """Puts the import's fields and the current trace on every record (attached to the handlers)."""

    def filter(self, record: logging.LogRecord) -> bool:
        ctx = _context.get()
        for name in CONTEXT_FIELDS:
            setattr(record, name, ctx.get(name))
        span = trace.get_current_span().get_span_context()
        record.trace_id = f"{span.trace_id:032x}" if span.is_valid else None
        record.span_id = f"{span.span_id:016x}" if span.is_valid else None
        shown = " ".join(f"{k}={ctx[k]}" for k in CONTEXT_FIELDS if k in ctx)
        record.context = f" [{shown}]" if shown else ""
        return True


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00",
                                                                                                        "Z"),
            "level": record.levelname, "service": self.service, "logger": record.name,
            "message": record.getMessage()}
        for name in (*CONTEXT_FIELDS, "trace_id", "span_id"):
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def text_formatter(service: str) -> logging.Formatter:
    return logging.Formatter(f"%(asctime)s {service} %(levelname)s %(name)s: %(message)s%(context)s")


def make_handler(service: str, log_format: str, stream: Any = None) -> logging.Handler:
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter(service) if log_format == "json" else text_formatter(service))
    handler.addFilter(ContextFilter())
    return handler


def setup_logging(service: str, *, level: str = "INFO", log_format: str = "text") -> None:
    """The process's logging (a service's main, `make run`): EDT_LOG_LEVEL, EDT_LOG_FORMAT text | json."""
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(make_handler(service, log_format))
    root.setLevel(level.upper())
    # aio-pika/aiormq are chatty at INFO on every reconnect.
    logging.getLogger("aiormq").setLevel(logging.WARNING)
    logging.getLogger("aio_pika").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # WsgiDAV warns on every 401, which WebDAV clients trigger by design before sending credentials.
    logging.getLogger("wsgidav").setLevel(logging.ERROR)
