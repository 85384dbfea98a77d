"""Every message has one effect and every import in flight an owner (docs/reliability.md): a command
delivered twice at the same time is a duplicate, not a failure; an import whose command is lost (its stage
died with it, or it was dead-lettered unreported) is failed with its reason once its lease has run out, and
its admission slot goes to the next import. Through the REST API of the embedded stack."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from shared.bus import MemoryBus
from shared.observability import BUS_RETRIES, STAGE_FAILURES
from tests.harness import database, sample_xml
from tests.integration.conftest import BOTH_BACKENDS, Stack, start_stack

SITE = "4817"
ESTS = {"1754": "0490856P", "4817": "0490857R"}


def until(predicate: object, what: str, within: float = 20) -> None:
    deadline = time.monotonic() + within
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def deliver_again(stack: Stack, queue: str, import_id: str) -> None:
    """A second copy of the import's command in `queue` while the first is being delivered: a broker's
    redelivery racing the original."""
    bus = stack.runtime.bus
    assert isinstance(bus, MemoryBus)
    body = next(b for ex, key, b in reversed(bus.published) if ex == "" and key == queue and import_id.encode() in b)
    stack.run(bus.publish("", queue, body))


@pytest.mark.parametrize("queue,stage", [("edt.validate", "validation"), ("edt.thresholds", "thresholds"),
                                         ("edt.groups", "groups"), ("edt.sessions", "sessions")])
@BOTH_BACKENDS
def test_a_command_delivered_twice_at_once_is_a_duplicate_not_a_failure(stack: Stack, queue: str,
                                                                        stage: str) -> None:
    stack.api.create_site(SITE, ESTS)
    stack.pause(queue)
    import_id = stack.api.upload(SITE, "1754", sample_xml("0490856P"))
    until(lambda: stack.queue_depth(queue) == 1, f"the command never reached {queue}")
    deliver_again(stack, queue, import_id)
    until(lambda: stack.queue_depth(queue) == 2, "the copy never reached the queue")
    failures = STAGE_FAILURES.labels(stage)._value.get()
    retries = BUS_RETRIES.labels(queue)._value.get()
    stack.resume(queue)  # both copies are taken at once by two of the stage's consumers
    done = stack.api.wait(import_id, timeout=60)
    stack.drain()
    assert done["status"] == "done"
    assert [s["status"] for s in done["steps"]] == ["ok", "warning", "warning", "warning", "ok"]
    assert STAGE_FAILURES.labels(stage)._value.get() == failures, "the duplicate counted as a failure"
    assert BUS_RETRIES.labels(queue)._value.get() == retries, "the duplicate spent a retry"
    assert len(stack.api.history(SITE)) == 1


def test_an_import_in_flight_when_the_server_died_fails_with_its_reason_and_frees_its_slot(
        tmp_path: Path) -> None:
    """The embedded server stops while an import's command waits in its in-process bus: the command is
    gone with it. Started again, the import has no owner: once its lease has run out it is failed with the
    reason, and the one admission slot (EDT_MAX_IN_FLIGHT=1) goes to the next import."""
    lease = {"EDT_IMPORT_LEASE_S": "1", "EDT_MAX_IN_FLIGHT": "1"}
    with database("sqlite", tmp_path) as url:
        first = start_stack(tmp_path, url, **lease)
        stack = next(first)
        stack.api.create_site(SITE, ESTS)
        stack.pause("edt.validate")
        lost = stack.api.upload(SITE, "1754", sample_xml("0490856P"))
        until(lambda: stack.queue_depth("edt.validate") == 1, "the command never reached edt.validate")
        first.close()  # the server stops: its in-process bus and the command in it are gone
        for again in start_stack(tmp_path, url, **lease):
            waiting = again.api.upload(SITE, "4817", sample_xml("0490857R"))
            failed = again.api.wait(lost, timeout=30)
            assert failed["status"] == "failed"
            assert "signe de vie" in failed["message"] and "validation" in failed["message_en"]
            assert next(s for s in failed["steps"] if s["stage"] == "validation")["status"] == "error"
            assert again.api.wait(waiting, timeout=60)["status"] == "done"
