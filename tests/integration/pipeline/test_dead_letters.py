"""A poison message (a threshold-control command whose canonical model has vanished from the blob store,
so the stage fails on it however often it tries) goes to its dead-letter queue after the retry budget,
its import ends `failed` with the reason, other imports keep flowing, and the admin routes list and
replay the dead letters. REST only."""

from __future__ import annotations

import time

from tests.harness import sample_xml
from tests.integration.conftest import Stack


def test_a_poison_message_is_dead_lettered_its_import_failed_and_replayable(stack: Stack) -> None:
    stack.api.create_site("4817", {"1754": "0490856P"})
    stack.api.create_site("5000", {"e": "0490857R"})
    poison = stack.poison_thresholds(
        lambda: stack.api.upload("4817", "1754", sample_xml("0490856P", marker="poison")))
    healthy = stack.api.upload("5000", "e", sample_xml("0490857R", marker="healthy"))
    failed = stack.api.wait(poison, timeout=60)
    assert failed["status"] == "failed" and failed["message"]
    assert next(s for s in failed["steps"] if s["stage"] == "thresholds")["status"] == "error"
    assert stack.api.wait(healthy, timeout=60)["status"] == "done"

    listed = {q["queue"]: q for q in stack.api.ok("GET", "/ops/dead-letters")["queues"]}
    (letter,) = listed["edt.thresholds"]["messages"]
    assert letter["import_id"] == poison and letter["site"] == "4817"
    assert letter["attempts"] == stack.settings.max_retries + 1
    assert stack.api.call("GET", "/ops/dead-letters", token="nope").status_code == 401

    replay = stack.api.ok("POST", "/ops/dead-letters/edt.thresholds/replay")
    assert replay == {"queue": "edt.thresholds", "replayed": 1}
    deadline = time.monotonic() + 20
    while stack.api.ok("GET", "/ops/dead-letters")["queues"][1]["count"]:
        assert time.monotonic() < deadline, "the replayed message came back to the dead-letter queue"
        time.sleep(0.05)
    stack.drain()  # handled: the step had ended (the import failed), the command is dropped
    assert stack.api.get_import(poison)["status"] == "failed"
    unknown = stack.api.call("POST", "/ops/dead-letters/edt.nope/replay")
    assert unknown.status_code == 404 and unknown.json()["code"] == "unknown_queue"
