"""Observability through the real pipeline: N WebDAV deposits move the counters, gauges and histograms of
/metrics by N; one import is one trace across every service (through RabbitMQ's headers too), and every
log line of its work names it (JSON logs)."""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families

from shared.observability import setup_tracing
from shared.observability.logs import make_handler
from tests.harness import curl_put, sample_xml
from tests.integration.conftest import Stack

SITE = "4817"
ESTABLISHMENTS = {"1754": "0490856P", "1755": "0490857R", "1756": "0490858S"}
STAGES = ("validation", "thresholds", "groups", "sessions")
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(stack: Stack) -> Samples:
    text = httpx.get(f"{stack.url}/metrics", timeout=10).text
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    """A sample's value, or the sum of those whose labels include `labels` (0 when none)."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def test_n_deposits_move_the_counters_gauges_and_histograms_by_n(sqlite_stack: Stack, tmp_path: Path) -> None:
    stack, api = sqlite_stack, sqlite_stack.api
    n = len(ESTABLISHMENTS)
    api.create_site(SITE, ESTABLISHMENTS)
    first = [api.upload(SITE, est, sample_xml(uai, marker=f"first-{est}")) for est, uai in ESTABLISHMENTS.items()]
    for import_id in first:
        assert api.wait(import_id, {"done"})["status"] == "done"
    account = api.create_account(SITE)
    files = []
    for est, uai in ESTABLISHMENTS.items():
        path = tmp_path / f"EDT_To_KOSMOS_{uai}.xml"
        path.write_bytes(sample_xml(uai, marker=f"metrics-{est}"))
        files.append((est, path))
    before = scrape(stack)

    stack.pause("edt.validate")
    try:
        ids = [curl_put(f"{stack.url}/webdav/{SITE}/{est}/", account["login"], account["password"], path).import_id
               for est, path in files]
        assert all(ids)
        held = scrape(stack)  # one command per establishment waits in the validation queue
        queue = {"stage": "validation", "queue": "edt.validate"}
        assert value(held, "edt_queue_ready_messages", **queue) + value(held, "edt_queue_unacked_messages",
                                                                        **queue) == n
        assert value(held, "edt_queue_consumers", **queue) == 1
        assert value(held, "edt_queue_oldest_message_age_seconds", **queue) > 0
        assert moved(before, held, "edt_imports", status="received", mode="auto") == n
    finally:
        stack.resume("edt.validate")
    for import_id in ids:
        assert api.wait(str(import_id))["status"] == "done"
    after = scrape(stack)

    for stage in STAGES:
        assert moved(before, after, "edt_stage_messages_in_total", stage=stage) == n, stage
        assert moved(before, after, "edt_stage_messages_out_total", stage=stage) == n, stage
        assert moved(before, after, "edt_stage_duration_seconds_count", stage=stage) == n, stage
        assert moved(before, after, "edt_stage_duration_seconds_bucket", stage=stage, le="+Inf") == n, stage
        assert moved(before, after, "edt_stage_duration_seconds_sum", stage=stage) > 0, stage
        assert moved(before, after, "edt_stage_failures_total", stage=stage) == 0, stage
    assert moved(before, after, "edt_deposits_total", source="webdav") == n
    assert moved(before, after, "edt_webdav_requests_total", method="PUT", status="201") == n
    assert moved(before, after, "edt_webdav_bytes_total", direction="received") == sum(p.stat().st_size
                                                                                      for _, p in files)
    assert moved(before, after, "edt_imports_finished_total", status="done", mode="auto") == n
    assert moved(before, after, "edt_import_duration_seconds_count", mode="auto") == n
    assert moved(before, after, "edt_import_queue_wait_seconds_count", mode="auto") == n
    assert moved(before, after, "edt_imports", status="done", mode="auto") == n
    assert value(after, "edt_imports", status="received") == 0
    assert value(after, "edt_queue_ready_messages", queue="edt.validate") == 0
    assert value(after, "edt_queue_oldest_message_age_seconds", queue="edt.validate") == 0
    assert moved(before, after, "edt_http_requests_total", method="GET", status="200") > 0
    # No label names a site, an establishment or an import.
    for (_, labels) in after:
        assert not {k for k, _ in labels} & {"site", "establishment", "import_id"}


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = setup_tracing("edt-import")
    processor = SimpleSpanProcessor(exporter)
    provider.add_span_processor(processor)
    try:
        yield exporter
    finally:
        processor.shutdown()


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    """The JSON log lines of the edt.* loggers (EDT_LOG_FORMAT=json's formatter and context)."""
    out = io.StringIO()
    handler = make_handler("test", "json", out)
    logger = logging.getLogger("edt")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield out
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def import_spans(exporter: InMemorySpanExporter, import_id: str) -> list[Any]:
    return [s for s in exporter.get_finished_spans() if s.attributes.get("edt.import_id") == import_id]


def wait_for_spans(exporter: InMemorySpanExporter, import_id: str, names: set[str]) -> list[Any]:
    """The import's spans once every stage's has ended (the last ends just after the import is done)."""
    deadline = time.monotonic() + 10
    while True:
        found = import_spans(exporter, import_id)
        if names <= {s.name for s in found}:
            return found
        assert time.monotonic() < deadline, sorted(s.name for s in found)
        time.sleep(0.05)


def check_one_trace(exporter: InMemorySpanExporter, logs: io.StringIO, import_id: str) -> None:
    expected = {"deposit", *(f"stage {s}" for s in STAGES), "notifier deposit ok", "notifier sessions ok"}
    found = wait_for_spans(exporter, import_id, expected)
    traces = {s.context.trace_id for s in found}
    assert len(traces) == 1, {s.name: s.context.trace_id for s in found}
    trace_id = f"{traces.pop():032x}"
    # The deposit starts it (under the upload's own HTTP span, when FastAPI records one): every other span of
    # the import descends from it.
    (deposit,) = [s for s in found if s.name == "deposit"]
    ids = {s.context.span_id: s for s in found}
    assert deposit.parent is None or deposit.parent.span_id not in ids
    for s in found:
        while s.parent is not None and s.parent.span_id in ids:
            s = ids[s.parent.span_id]
        assert s is deposit
    lines = [json.loads(line) for line in logs.getvalue().splitlines()]
    mine = [line for line in lines if line.get("import_id") == import_id]
    stages = {line["stage"] for line in mine if line["logger"] == "edt.stage"}
    assert stages == set(STAGES)
    for line in mine:
        assert line["site"] == SITE and line["establishment"] == "1754", line
        assert line["trace_id"] == trace_id, line
        assert line["stage"] in ("deposit", *STAGES), line
    assert any(line["stage"] == "deposit" and line["logger"] == "edt.dropzone" for line in mine)


def test_one_import_is_one_trace_and_its_log_lines_name_it(sqlite_stack: Stack, spans: InMemorySpanExporter,
                                                           json_logs: io.StringIO) -> None:
    api = sqlite_stack.api
    api.create_site(SITE, {"1754": "0490856P"})
    sqlite_stack.pause("edt.validate")
    try:  # the second waits, and is started by the first one's last event: it still runs in its own trace
        first = api.upload(SITE, "1754", sample_xml("0490856P", marker="trace-1"))
        second = api.upload(SITE, "1754", sample_xml("0490856P", marker="trace-2"))
    finally:
        sqlite_stack.resume("edt.validate")
    assert api.wait(first)["status"] == api.wait(second)["status"] == "done"
    check_one_trace(spans, json_logs, first)
    check_one_trace(spans, json_logs, second)
    assert {s.context.trace_id for s in import_spans(spans, first)} != {
        s.context.trace_id for s in import_spans(spans, second)}


@pytest.mark.rabbitmq
def test_the_trace_crosses_rabbitmq_in_the_message_headers(rabbit_stack: Stack, spans: InMemorySpanExporter,
                                                           json_logs: io.StringIO) -> None:
    api = rabbit_stack.api
    api.create_site(SITE, {"1754": "0490856P"})
    import_id = api.upload(SITE, "1754", sample_xml("0490856P", marker="rabbit-trace"))
    assert api.wait(import_id, timeout=60)["status"] == "done"
    check_one_trace(spans, json_logs, import_id)
    # The management API's figures reach the gauges (its statistics are refreshed every few seconds).
    deadline = time.monotonic() + 30
    while value(scrape(rabbit_stack), "edt_queue_consumers", queue="edt.validate") < 1:
        assert time.monotonic() < deadline, "no consumer of edt.validate in the gauges"
        time.sleep(0.5)
