"""A long-running embedded server does not keep what its in-process bus carried: after a dozen imports
that each replace the timetable (megabytes of change events), the bus holds at most PUBLISHED_KEPT
messages. `python -m tests.faults.memory` measures the process's RSS over 50 such imports."""

from __future__ import annotations

from shared.bus import PUBLISHED_KEPT, MemoryBus
from tests.harness import sample_xml
from tests.integration.conftest import Stack


def test_the_in_process_bus_keeps_a_bounded_number_of_messages(sqlite_stack: Stack) -> None:
    stack = sqlite_stack
    stack.api.create_site("4817", {"1754": "0490856P"})
    bus = stack.runtime.bus
    assert isinstance(bus, MemoryBus)
    for n in range(12):
        import_id = stack.api.upload("4817", "1754", sample_xml("0490856P", marker=f"m{n}", seed=1 + n % 2))
        assert stack.api.wait(import_id, timeout=60)["status"] == "done"
    stack.drain()
    carried = sum(1 for _ in bus.published)
    assert carried <= PUBLISHED_KEPT
    assert sum(len(body) for _, _, body in bus.published) < 10_000_000
    assert all(len(kept) <= 1000 for kept in bus.dead_letters.values())
