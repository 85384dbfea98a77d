"""Logs name the import they serve (log_context), in text or JSON (EDT_LOG_FORMAT), with the current trace."""

from __future__ import annotations

import asyncio
import io
import json
import logging

from shared.observability import log_context, setup_tracing, span
from shared.observability.logs import make_handler, setup_logging


def capture(fmt: str) -> tuple[logging.Logger, io.StringIO]:
    out = io.StringIO()
    logger = logging.getLogger(f"edt.test.{fmt}")
    logger.handlers = [make_handler("svc", fmt, out)]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger, out


def test_json_lines_carry_the_import_context_and_the_trace() -> None:
    setup_tracing("test")
    logger, out = capture("json")
    logger.info("outside")
    with log_context(import_id="abc", site="4817", establishment=None, stage="validation"), span("work") as s:
        logger.info("inside %d", 1)
    outside, inside = (json.loads(line) for line in out.getvalue().splitlines())
    assert "import_id" not in outside and "trace_id" not in outside
    assert inside["message"] == "inside 1" and inside["service"] == "svc" and inside["level"] == "INFO"
    assert (inside["import_id"], inside["site"], inside["stage"]) == ("abc", "4817", "validation")
    assert "establishment" not in inside  # None is left out, not written as null
    assert inside["trace_id"] == f"{s.get_span_context().trace_id:032x}"


def test_tasks_and_threads_started_inside_keep_the_context() -> None:
    logger, out = capture("json")

    async def main() -> None:
        with log_context(import_id="xyz", stage="sessions"):
            await asyncio.create_task(asyncio.to_thread(logger.info, "from a thread"))
        logger.info("after")

    asyncio.run(main())
    thread, after = (json.loads(line) for line in out.getvalue().splitlines())
    assert thread["import_id"] == "xyz" and thread["stage"] == "sessions"
    assert "import_id" not in after


def test_text_lines_end_with_the_context() -> None:
    logger, out = capture("text")
    with log_context(import_id="abc", site="4817"):
        logger.warning("slow")
    assert out.getvalue().rstrip().endswith("svc WARNING edt.test.text: slow [import_id=abc site=4817]")


def test_setup_logging_json_replaces_the_root_handler() -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        setup_logging("svc", level="WARNING", log_format="json")
        (handler,) = root.handlers
        assert root.level == logging.WARNING
        record = logging.LogRecord("edt.x", logging.WARNING, __file__, 1, "hello", None, None)
        for f in handler.filters:
            f.filter(record)  # type: ignore[union-attr]
        assert json.loads(handler.format(record))["message"] == "hello"
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
