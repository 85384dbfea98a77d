"""Threshold rules (design.md §6, §7; seeds 000 and 001), one test per rule, no I/O."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from services.thresholds import domain as d
from shared.messages import ImportStatus, Mode, StepStatus
from tests.factory import make_school

TODAY = date(2026, 11, 25)
N = 1000  # existing items: 299 / 300 / 301 of them give 29.9 % / 30 % / 30.1 %


def facts(**kw: Any) -> d.Facts:
    base: dict[str, Any] = {"subjects": frozenset(), "courses": {}, "sessions": 0, "sessions_on_incomplete": 0,
                            "cancellations": frozenset(), "closures": frozenset(),
                            "year": (date(2026, 9, 1), date(2027, 7, 4))}
    base.update(kw)
    return d.Facts(**base)


def closures(n: int, offset: int = 0) -> frozenset[tuple[date, date]]:
    days = [date(2030, 1, 1) + timedelta(days=2 * (i + offset)) for i in range(n)]
    return frozenset((day, day) for day in days)


def courses(n: int, offset: int = 0, sig: Any = ("t",)) -> dict[str, tuple[Any, ...]]:
    return {f"c{i + offset}": sig for i in range(n)}


# For each percent control: (old, new) facts whose figure is k/N × 100.
def pair(control: str, k: int) -> tuple[d.Facts, d.Facts]:
    if control == "subjects_created":
        old = frozenset(f"s{i}" for i in range(N))
        return facts(subjects=old), facts(subjects=old | {f"n{i}" for i in range(k)})
    if control == "courses_created":
        return facts(courses=courses(N)), facts(courses={**courses(N), **courses(k, N)})
    if control == "courses_modified":
        return facts(courses=courses(N)), facts(courses={**courses(N), **courses(k, 0, ("other",))})
    if control == "courses_deleted":
        return facts(courses=courses(N)), facts(courses=courses(N - k, k))
    if control == "sessions_changed":
        return facts(sessions=N), facts(sessions=N - k)  # fewer sessions count as much as more
    if control == "sessions_on_incomplete_courses":
        return facts(), facts(sessions=N, sessions_on_incomplete=k)
    if control == "cancelled_sessions":
        cancelled: frozenset[tuple[Any, ...]] = frozenset(("c", 1, 0, i) for i in range(N))
        return facts(cancellations=cancelled), facts(cancellations=cancelled | {("c", 2, 0, i) for i in range(k)})
    if control == "closures_added":
        return facts(closures=closures(N)), facts(closures=closures(N) | closures(k, N))
    if control == "closures_removed":
        return facts(closures=closures(N)), facts(closures=closures(N - k, k))
    raise AssertionError(control)


PERCENT_COMPUTED = ["subjects_created", "courses_created", "courses_modified", "courses_deleted", "sessions_changed",
                    "sessions_on_incomplete_courses", "cancelled_sessions", "closures_added", "closures_removed"]


def result_for(control: str, old: d.Facts | None, new: d.Facts, value: int = 30, blocking: bool = True,
               matching: dict[str, tuple[int, int]] | None = None) -> d.ControlResult:
    settings = d.default_settings()
    settings[control] = d.Setting(value, blocking)
    found = d.figures(old, new, TODAY, matching)
    return next(r for r in d.evaluate(settings, found) if r.control == control)


# --- the two arithmetic rules ------------------------------------------------------------------------


def test_exceeded_means_strictly_greater() -> None:
    assert d.exceeded(30.0001, 30) is True
    assert d.exceeded(30.0, 30) is False
    assert d.exceeded(29.9999, 30) is False
    assert d.exceeded(0.0, 0) is False and d.exceeded(0.1, 0) is True
    assert d.exceeded(100.0, 100) is False
    assert d.exceeded(None, 0) is False, "a figure not computed never exceeds"


def test_ratio_with_existing_zero_is_0_when_nothing_changed_else_100() -> None:
    assert d.ratio(0, 0) == 0.0
    assert d.ratio(1, 0) == 100.0 and d.ratio(57, 0) == 100.0
    assert d.ratio(3, 10) == 30.0 and d.ratio(15, 10) == 150.0


# --- every control at value − ε, value, value + ε ---------------------------------------------------


@pytest.mark.parametrize("control", PERCENT_COMPUTED)
def test_control_at_value_minus_epsilon_value_and_value_plus_epsilon(control: str) -> None:
    below, at, above = (result_for(control, *pair(control, k)) for k in (299, 300, 301))
    assert (below.figure.computed, at.figure.computed, above.figure.computed) == (29.9, 30.0, 30.1)
    assert (below.exceeded, at.exceeded, above.exceeded) == (False, False, True)
    assert above.blocks and above.status == "exceeded" and at.status == "ok"


@pytest.mark.parametrize("control", [c for c in PERCENT_COMPUTED if c != "sessions_on_incomplete_courses"])
def test_control_with_an_empty_baseline(control: str) -> None:
    """No integrated import yet: existing = 0 → 0 % when nothing is created, 100 % otherwise."""
    _, new = pair(control, 300)
    first = result_for(control, None, new, value=99)
    if control in ("courses_modified", "courses_deleted", "closures_removed"):
        assert first.figure.computed == 0.0 and not first.exceeded  # nothing existed to modify or remove
    else:
        assert first.figure.computed == 100.0 and first.exceeded
    nothing = result_for(control, None, facts(), value=0)
    assert nothing.figure.computed == 0.0 and not nothing.exceeded


def test_sessions_on_incomplete_courses_with_no_session_is_0() -> None:
    assert result_for("sessions_on_incomplete_courses", None, facts()).figure.computed == 0.0


@pytest.mark.parametrize("kind", d.UNRECONCILED)
def test_unreconciled_at_value_minus_epsilon_value_and_value_plus_epsilon(kind: str) -> None:
    rows = [result_for(kind, None, facts(), value=5, matching={kind: (k, 1000)}) for k in (49, 50, 51)]
    assert [r.figure.computed for r in rows] == [4.9, 5.0, 5.1]
    assert [r.exceeded for r in rows] == [False, False, True]
    empty = result_for(kind, None, facts(), value=5, matching={kind: (0, 0)})
    assert empty.figure.computed == 0.0 and not empty.exceeded


@pytest.mark.parametrize("kind", d.UNRECONCILED)
def test_unreconciled_without_the_reconciler_is_not_computed(kind: str) -> None:
    r = result_for(kind, None, facts(), value=0)
    assert r.figure.computed is None and r.status == "not_computed" and not r.exceeded


def test_closure_coherence_exceeded_by_any_incoherence() -> None:
    old = facts(closures=closures(3))
    ok = result_for("closure_coherence", old, facts(closures=closures(3)), value=None)  # type: ignore[arg-type]
    assert ok.figure.computed == 0 and not ok.exceeded
    moved = facts(closures=closures(3), year=(date(2026, 9, 2), date(2027, 7, 4)))
    bad = result_for("closure_coherence", old, moved, value=None)  # type: ignore[arg-type]
    assert bad.exceeded and bad.blocks and bad.figure.detail["incoherences"] == ["year_bounds_changed"]


def test_closure_incoherences() -> None:
    year = (date(2026, 9, 1), date(2027, 7, 4))
    assert d.closure_incoherences(None, facts(year=(year[1], year[0])), TODAY) == ["dates_inverted"]
    past = frozenset({(date(2026, 10, 17), date(2026, 11, 1))})
    future = frozenset({(date(2026, 12, 19), date(2027, 1, 3))})
    old = facts(closures=past | future)
    assert d.closure_incoherences(old, facts(closures=past), TODAY) == [], "a future closure may change"
    assert d.closure_incoherences(old, facts(closures=future), TODAY) == ["past_closures_changed"]
    assert d.closure_incoherences(None, facts(closures=future), TODAY) == [], "first import: nothing to compare"


def test_closure_coherence_disabled_is_never_exceeded() -> None:
    settings = d.default_settings()
    settings["closure_coherence"] = d.Setting(None, True, enabled=False)
    found = d.figures(facts(), facts(year=(date(2027, 1, 1), date(2026, 1, 1))), TODAY)
    r = next(r for r in d.evaluate(settings, found) if r.control == "closure_coherence")
    assert not r.exceeded and r.status == "disabled"


# --- figures on real models -------------------------------------------------------------------------


def test_figures_of_a_generated_follow_up_name_the_modified_courses() -> None:
    first = d.facts_of(make_school("XS", 5, year=2026).timetable)
    school = make_school("XS", 5, year=2026, changes=60)
    found = d.figures(first, d.facts_of(school.timetable), TODAY)
    assert found["courses_modified"].count == len(school.changed_courses)
    assert found["courses_modified"].computed == pytest.approx(60, abs=1)
    assert found["courses_created"].computed == found["courses_deleted"].computed == 0
    assert found["subjects_created"].computed == 0 and found["closure_coherence"].computed == 0
    same = d.figures(first, first, TODAY)
    assert all(f.computed in (0, None) for f in same.values())


def test_defaults_are_the_seeds() -> None:
    s = d.default_settings()
    assert {k: (v.value, v.blocking) for k, v in s.items() if k != "closure_coherence"} == {
        "subjects_created": (50, True), "courses_created": (50, True), "courses_modified": (30, True),
        "courses_deleted": (50, True), "sessions_changed": (50, True), "sessions_on_incomplete_courses": (40, False),
        "cancelled_sessions": (50, True), "closures_added": (10, True), "closures_removed": (10, True),
        "teachers_unreconciled": (5, False), "students_unreconciled": (5, False), "classes_unreconciled": (5, False),
        "groups_unreconciled": (5, False)}
    assert s["closure_coherence"] == d.Setting(None, True, True)


def test_settings_changes_are_listed_field_by_field() -> None:
    old = d.default_settings()
    new = {**old, "courses_modified": d.Setting(40, False)}
    assert d.setting_changes(old, new) == [("courses_modified", "value", 30, 40),
                                           ("courses_modified", "blocking", True, False)]


def test_weakening_closure_coherence_is_flagged() -> None:
    old = d.default_settings()
    assert d.weakens_closure_coherence(old, {**old, "closure_coherence": d.Setting(None, False)})
    assert d.weakens_closure_coherence(old, {**old, "closure_coherence": d.Setting(None, True, False)})
    assert not d.weakens_closure_coherence(old, {**old, "courses_modified": d.Setting(0, False)})


# --- the automatic-import precondition ---------------------------------------------------------------


def test_school_year_start_in_local_time() -> None:
    assert d.school_year_start(datetime(2026, 11, 25, tzinfo=UTC), "08-01", "Europe/Paris") == date(2026, 8, 1)
    assert d.school_year_start(datetime(2026, 7, 31, 12, tzinfo=UTC), "08-01", "Europe/Paris") == date(2025, 8, 1)
    # 31 July 22:30 UTC is already 1 August in Paris.
    assert d.school_year_start(datetime(2026, 7, 31, 22, 30, tzinfo=UTC), "08-01", "Europe/Paris") == date(2026, 8, 1)


def test_automatic_import_needs_a_manual_import_this_school_year() -> None:
    start = date(2026, 8, 1)
    assert d.automatic_import_refusal(Mode.AUTO, [], start) == d.NEVER_MANUAL
    assert d.automatic_import_refusal(Mode.AUTO, [date(2026, 6, 30)], start) == d.NEW_YEAR
    assert d.automatic_import_refusal(Mode.AUTO, [date(2026, 6, 30), date(2026, 8, 1)], start) is None
    assert d.automatic_import_refusal(Mode.MANUAL, [], start) is None
    assert "changement d'année" in d.NEW_YEAR[0] and "import manuel" in d.NEVER_MANUAL[0]


# --- the stage's decision ----------------------------------------------------------------------------


def checks_with(control: str, k: int, blocking: bool,
                refusal: tuple[str, str] | None = None) -> list[d.EstablishmentCheck]:
    settings = d.default_settings()
    settings[control] = d.Setting(30, blocking)
    results = d.evaluate(settings, d.figures(*pair(control, k), TODAY))
    return [d.EstablishmentCheck("1754", "imp0", results, refusal)]


def test_blocking_excess_blocks_an_automatic_import_naming_the_control() -> None:
    r = d.decide(Mode.AUTO, False, checks_with("courses_modified", 600, True))
    assert r.outcome is ImportStatus.BLOCKED and r.step_status is StepStatus.ERROR and not r.forwards
    assert r.message and "services d'enseignement modifiés" in r.message and "60,0 %" in r.message
    assert "import manuel" in r.message
    assert r.alerts and r.alerts[0]["control"] == "courses_modified" and r.alerts[0]["computed"] == 60.0
    assert r.alerts[0]["value"] == 30 and r.alerts[0]["blocking"] is True
    assert r.counts and r.counts["controls"]["courses_modified"]["status"] == "exceeded"
    assert r.counts["blocking_exceeded"] == 1


def test_non_blocking_excess_goes_on_with_alerts() -> None:
    r = d.decide(Mode.AUTO, False, checks_with("courses_modified", 600, False))
    assert r.forwards and r.step_status is StepStatus.WARNING and r.outcome is None
    assert r.alerts and r.alerts[0]["severity"] == "warning" and r.alerts[0]["exceeded"] is True


def test_nothing_exceeded_is_ok_without_message() -> None:
    r = d.decide(Mode.AUTO, False, checks_with("courses_modified", 100, True))
    assert r.forwards and r.step_status is StepStatus.OK and r.message is None and r.alerts == []


def test_manual_import_computes_the_controls_and_never_blocks() -> None:
    r = d.decide(Mode.MANUAL, False, checks_with("courses_modified", 600, True))
    assert r.forwards and r.step_status is StepStatus.WARNING
    assert r.alerts and r.alerts[0]["severity"] == "warning"
    assert r.artifacts["thresholds"]["controls"]["courses_modified"]["exceeded"] is True


def test_refused_automatic_import_is_rejected_with_the_seed_message() -> None:
    r = d.decide(Mode.AUTO, False, checks_with("courses_modified", 0, True, d.NEW_YEAR))
    assert r.outcome is ImportStatus.REJECTED and r.message == d.NEW_YEAR[0]


def test_dry_run_ends_previewed_with_every_figure() -> None:
    r = d.decide(Mode.AUTO, True, checks_with("courses_modified", 600, True))
    assert r.outcome is ImportStatus.PREVIEWED and r.step_status is StepStatus.WARNING
    assert r.message and r.message.startswith("Simulation")
    assert r.counts and set(r.counts["controls"]) == {c.name for c in d.CONTROLS}
