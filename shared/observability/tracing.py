"""Tracing (OpenTelemetry): one trace per import, followed across services.

The W3C `traceparent` of the work in progress rides in every message's headers: `uow.emit` stores it in the
outbox row (shared/outbox.py), the relay publishes it as AMQP headers, and each consumer (StageWorker, the
notifier) continues the trace from the headers it received. The notifier keeps an import's own trace and
starts its stages in it, whatever event woke the admission.

The SDK always runs (so traces propagate and every log line names its trace); spans are exported only when
EDT_TRACING_EXPORTER says where: `none` (default), `console`, or `otlp` (needs the
opentelemetry-exporter-otlp-proto-http package; the standard OTEL_EXPORTER_OTLP_* variables configure it).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
from opentelemetry.trace import Span

EXPORTERS = ("none", "console", "otlp")
tracer = trace.get_tracer("edt-import")


def setup_tracing(service: str, exporter: str = "none") -> TracerProvider:
    """The process's tracer provider (once per process: a second call returns the first, adding its exporter)."""
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        provider = current
    else:
        provider = TracerProvider(resource=Resource.create({"service.name": service}))
        trace.set_tracer_provider(provider)
    processor = _processor(exporter)
    if processor is not None:
        provider.add_span_processor(processor)
    return provider


def _processor(exporter: str) -> SpanProcessor | None:
    if exporter == "none":
        return None
    if exporter == "console":
        return BatchSpanProcessor(ConsoleSpanExporter())
    if exporter == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError as exc:
            raise RuntimeError("EDT_TRACING_EXPORTER=otlp needs the opentelemetry-exporter-otlp-proto-http "
                               "package") from exc
        return BatchSpanProcessor(OTLPSpanExporter())
    raise ValueError(f"EDT_TRACING_EXPORTER is one of {', '.join(EXPORTERS)} (got {exporter!r})")


def trace_headers() -> dict[str, str]:
    """The current trace context as message headers (`traceparent`, `tracestate` when set); {} outside a trace."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def _text(headers: Mapping[str, Any]) -> dict[str, str]:
    out = {}
    for key, value in headers.items():
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        if isinstance(value, str):
            out[str(key).lower()] = value
    return out


@contextlib.contextmanager
def span(name: str, headers: Mapping[str, Any] | None = None, **attributes: str | None) -> Iterator[Span]:
    """A span, child of the trace in `headers` when they carry one, else of the current span."""
    parent = propagate.extract(_text(headers)) if headers and "traceparent" in _text(headers) else None
    attrs = {f"edt.{k}": v for k, v in attributes.items() if v is not None}
    with tracer.start_as_current_span(name, context=parent, attributes=attrs) as current:
        yield current
