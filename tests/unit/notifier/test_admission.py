"""Admission rules of design.md §2, one test per rule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.notifier.domain import (
    Slot,
    conflicts,
    eta_seconds,
    merge_step,
    next_import_status,
    plan_dispatch,
    queue_positions,
    supersedes,
)
from shared.messages import ImportStatus, Mode, Stage, StepStatus

T0 = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)


def slot(i: str, site: str, est: str | None, minutes: int = 0, mode: Mode = Mode.AUTO) -> Slot:
    return Slot(i, site, est, T0 + timedelta(minutes=minutes), mode)


def test_one_import_in_flight_per_establishment() -> None:
    assert plan_dispatch([slot("a", "S", "E1")], [slot("b", "S", "E1", 1)], capacity=10) == []
    assert [s.id for s in plan_dispatch([slot("a", "S", "E1")], [slot("b", "S", "E2", 1)], 10)] == ["b"]


def test_site_wide_import_excludes_every_import_of_its_site() -> None:
    assert conflicts(slot("a", "S", None), slot("b", "S", "E1"))
    assert conflicts(slot("a", "S", "E1"), slot("b", "S", None))
    assert not conflicts(slot("a", "S", None), slot("b", "T", None))
    assert plan_dispatch([], [slot("a", "S", "E1"), slot("b", "S", None, 1)], 10) == [slot("a", "S", "E1")]


def test_fairness_no_site_waits_behind_many_imports_of_another() -> None:
    herd = [slot(f"big{i}", "BIG", f"E{i}", i) for i in range(10)]
    late = slot("small", "SMALL", "E1", 30)
    started = plan_dispatch([], [*herd, late], capacity=3)
    assert "small" in [s.id for s in started], "the other site gets a worker in the first round"
    positions = queue_positions([], [*herd, late], capacity=2)
    assert positions["small"] <= 1


def test_capacity_bounds_imports_in_flight() -> None:
    waiting = [slot(f"w{i}", f"S{i}", "E", i) for i in range(5)]
    assert len(plan_dispatch([], waiting, capacity=2)) == 2
    paused = Slot("p", "S9", "E", T0, counts_for_capacity=False)  # awaiting_selection holds no worker
    assert len(plan_dispatch([paused], waiting, capacity=2)) == 2


def test_queue_position_counts_imports_that_must_finish_first() -> None:
    running = [slot("a1", "S", "E1"), slot("a2", "S", "E2", 1), slot("a3", "S", "E3", 2)]
    waiting = [slot("b1", "S", "E1", 5), slot("b2", "S", "E2", 6), slot("b3", "S", "E3", 7)]
    assert queue_positions(running, waiting, capacity=4) == {"b1": 1, "b2": 2, "b3": 3}
    assert queue_positions([slot("a", "S", "E1")], [slot("b", "S", "E1", 1)], 4) == {"b": 1}
    assert queue_positions([], [slot("b", "S", "E1", 1)], 4) == {"b": 0}


def test_queue_position_with_capacity_full() -> None:
    running = [slot("a", "S1", "E"), slot("b", "S2", "E", 1)]
    assert queue_positions(running, [slot("c", "S3", "E", 5)], capacity=2) == {"c": 1}


def test_newer_deposit_supersedes_waiting_older_of_same_target_and_mode() -> None:
    older, newer = slot("o", "S", "E1", 0), slot("n", "S", "E1", 1)
    assert supersedes(newer, older)
    assert not supersedes(older, newer)
    assert not supersedes(slot("n", "S", "E2", 1), older)
    assert not supersedes(slot("n", "S", "E1", 1, Mode.MANUAL), older), "auto never replaces manual"


def test_statuses_only_move_forward_and_terminal_is_final() -> None:
    s = next_import_status(ImportStatus.RECEIVED, Stage.VALIDATION, StepStatus.RUNNING, None)
    assert s is ImportStatus.VALIDATING
    late = next_import_status(ImportStatus.CREATING_GROUPS, Stage.VALIDATION, StepStatus.RUNNING, None)
    assert late is ImportStatus.CREATING_GROUPS
    assert next_import_status(ImportStatus.DONE, Stage.VALIDATION, StepStatus.ERROR, None) is ImportStatus.DONE
    blocked = next_import_status(ImportStatus.CHECKING_THRESHOLDS, Stage.THRESHOLDS, StepStatus.ERROR,
                                 ImportStatus.BLOCKED)
    assert blocked is ImportStatus.BLOCKED
    unexplained = next_import_status(ImportStatus.CREATING_GROUPS, Stage.GROUPS, StepStatus.ERROR, None)
    assert unexplained is ImportStatus.FAILED


def test_a_confirmed_manual_import_moves_from_awaiting_selection_to_session_generation() -> None:
    # The reconciler pauses a wizard import (outcome awaiting_selection, not an ending)…
    paused = next_import_status(ImportStatus.CREATING_GROUPS, Stage.GROUPS, StepStatus.WARNING,
                                ImportStatus.AWAITING_SELECTION)
    assert paused is ImportStatus.AWAITING_SELECTION
    # …a late stage event leaves it there…
    assert next_import_status(paused, Stage.GROUPS, StepStatus.RUNNING, None) is ImportStatus.AWAITING_SELECTION
    # …its confirm (a groups step ending without pausing) or the sessions stage sends it on, and then done.
    resumed = next_import_status(paused, Stage.GROUPS, StepStatus.OK, None)
    assert resumed is ImportStatus.GENERATING_SESSIONS
    assert next_import_status(paused, Stage.SESSIONS, StepStatus.RUNNING, None) is ImportStatus.GENERATING_SESSIONS
    assert next_import_status(resumed, Stage.SESSIONS, StepStatus.OK, ImportStatus.DONE) is ImportStatus.DONE
    # The pausing event delivered again never takes it back.
    again = next_import_status(resumed, Stage.GROUPS, StepStatus.WARNING, ImportStatus.AWAITING_SELECTION)
    assert again is ImportStatus.GENERATING_SESSIONS


def test_a_step_never_goes_back_from_its_end() -> None:
    assert merge_step(StepStatus.OK, StepStatus.RUNNING) is StepStatus.OK
    assert merge_step(StepStatus.SKIPPED, StepStatus.RUNNING) is StepStatus.SKIPPED  # a step stored long ago
    assert merge_step(None, StepStatus.RUNNING) is StepStatus.RUNNING


def test_eta_from_average_import_duration() -> None:
    assert eta_seconds(2, None, 10.0) == 30
    assert eta_seconds(None, 4.0, 10.0) == 6
    assert eta_seconds(None, 40.0, 10.0) == 0
    assert eta_seconds(None, None, 10.0) is None


def _replay_reference(in_flight: list[Slot], waiting: list[Slot], capacity: int) -> dict[str, int]:
    """The admission replay written plainly (plan_dispatch round after round): the indexed replay of
    `queue_positions` must give exactly the same positions."""
    running = sorted(in_flight, key=lambda s: (s.at, s.id))
    pending = list(waiting)
    finished = 0
    positions: dict[str, int] = {}
    while pending:
        for s in plan_dispatch(running, pending, capacity):
            positions[s.id] = finished
            pending.remove(s)
            running.append(s)
        if not pending:
            break
        if not running:
            positions.update({s.id: finished for s in pending})
            break
        running.pop(0)
        finished += 1
    return positions


def test_queue_positions_replay_the_admission_rule_exactly() -> None:
    import random

    base = datetime(2026, 12, 1, 8, 0)
    for seed in range(400):
        rng = random.Random(seed)
        sites = [f"S{i}" for i in range(rng.randint(1, 6))]

        def any_slot(ident: str, paused: bool, rng: random.Random = rng, sites: list[str] = sites) -> Slot:
            est = rng.choice([None, "E1", "E2", "E3", "E1"])
            return Slot(ident, rng.choice(sites), est, base + timedelta(seconds=rng.randint(0, 50)),
                        rng.choice(list(Mode)), counts_for_capacity=not paused)

        # in flight, some paused for a human (awaiting_selection: no worker held); waiting ones all count
        in_flight = [any_slot(f"r{i}", rng.random() < 0.2) for i in range(rng.randint(0, 4))]
        waiting = [any_slot(f"w{i}", False) for i in range(rng.randint(0, 25))]
        capacity = rng.randint(1, 5)
        assert queue_positions(in_flight, waiting, capacity) == _replay_reference(in_flight, waiting, capacity), seed
