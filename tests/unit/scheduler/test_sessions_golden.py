"""Golden tests of session generation (design.md §7 sessions, §8a weeks) on the hand-built export of
tests/golden/scheduler.py: exact session sets, with an explicit "now" (the import's start time)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from services.scheduler import domain
from services.scheduler.domain import Stored, diff_sessions, plan_establishment
from shared.timetable import (
    ClosurePeriod,
    Place,
    Ref,
    course_members,
    derive_closure_weeks,
    derive_courses,
    session_key,
)
from tests.golden.scheduler import golden_timetable, w

PARIS = ZoneInfo("Europe/Paris")
BEFORE_YEAR = datetime(2026, 8, 1, tzinfo=UTC)
FR, EPS_A, EPS_B = "S1|class:C6A", "S4|class:C6A", "S4|class:C6B"
ESP, SVT_B, MATHS = "S2|group:G1", "S3|class:C6B", "S5|class:C6A"


def plan(tt=None, *, now=BEFORE_YEAR, closures=(), kept=None):  # type: ignore[no-untyped-def]
    return plan_establishment(tt or golden_timetable(), site="4817", establishment="1754", cutoff=now, tz=PARIS,
                              closures=closures, kept=kept)


def z(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def sessions_of(p: domain.Plan) -> set[tuple[str, datetime, datetime, tuple[str, ...], tuple[str, ...]]]:
    return {(s.course, s.start, s.end, s.teachers, s.rooms) for s in p.sessions.values()}


# Every session of the golden export, in UTC (Paris is UTC+2 until 25 October 2026, UTC+1 after).
GOLDEN = {
    # a course over two places (08:00–10:00), week 2 cancelled, a substitute and another room in week 3
    (FR, z("2026-09-01 06:00"), z("2026-09-01 08:00"), ("T1",), ("R1",)),
    (FR, z("2026-09-15 06:00"), z("2026-09-15 08:00"), ("T9",), ("R2",)),
    # two classes on one slot: two courses, each with its own weeks
    (EPS_A, z("2026-09-23 08:15"), z("2026-09-23 09:15"), ("T2",), ("GYM",)),
    (EPS_A, z("2026-09-30 08:15"), z("2026-09-30 09:15"), ("T2",), ("GYM",)),
    (EPS_B, z("2026-09-30 08:15"), z("2026-09-30 09:15"), ("T2",), ("GYM",)),
    # a group across two classes: one course (the slot's class is ignored: courses for its groups only)
    (ESP, z("2026-09-03 07:00"), z("2026-09-03 08:00"), ("T3",), ("R1",)),
    (ESP, z("2026-09-10 07:00"), z("2026-09-10 08:00"), ("T3",), ("R1",)),
    # DST: 08:00 Paris is 06:00 UTC on 19 October, 07:00 UTC on 26 October
    (SVT_B, z("2026-10-19 06:00"), z("2026-10-19 07:00"), ("T1",), ("R2",)),
    (SVT_B, z("2026-10-26 07:00"), z("2026-10-26 08:00"), ("T1",), ("R2",)),
    (MATHS, z("2026-10-19 09:15"), z("2026-10-19 10:15"), ("T2",), ("R1",)),
    (MATHS, z("2026-11-02 10:15"), z("2026-11-02 11:15"), ("T2",), ("R1",)),
    (MATHS, z("2026-11-09 10:15"), z("2026-11-09 11:15"), ("T2",), ("R1",)),
}


def test_golden_export_makes_exactly_these_sessions() -> None:
    p = plan()
    assert sessions_of(p) == GOLDEN
    assert len(p.sessions) == p.total_sessions == 12


def test_a_slot_with_only_a_part_of_class_makes_no_course() -> None:
    assert set(plan().courses) == {FR, EPS_A, EPS_B, ESP, SVT_B, MATHS}
    assert not any(k.startswith("S3|class:C6A") for k in plan().courses)


def test_two_classes_on_one_slot_make_two_courses_and_a_group_one() -> None:
    p = plan()
    assert p.courses[EPS_A].label == "EPS - 6A" and p.courses[EPS_B].label == "EPS - 6B"
    esp = [s for s in p.sessions.values() if s.course == ESP]
    assert {(s.classes, s.groups) for s in esp} == {(("C6A", "C6B"), ("G1",))}
    assert p.courses[ESP].label == "ESPAGNOL - 6AB ESP"


def test_a_cancelled_week_has_no_session() -> None:
    fr = sorted(s.start for s in plan().sessions.values() if s.course == FR)
    assert [d.date() for d in fr] == [date(2026, 9, 1), date(2026, 9, 15)]  # not 8 September (week 2)


def test_session_spans_first_place_start_to_last_place_end() -> None:
    fr = min((s for s in plan().sessions.values() if s.course == FR), key=lambda s: s.start)
    assert (fr.end - fr.start).total_seconds() == 2 * 3600


def test_no_session_in_the_files_closure_weeks_nor_on_an_establishment_closure() -> None:
    tt = golden_timetable()
    assert derive_closure_weeks(tt)[0] == ClosurePeriod(date(2026, 10, 5), date(2026, 10, 18))
    assert not [s for s in plan().sessions.values() if date(2026, 10, 5) <= s.start.date() <= date(2026, 10, 18)]
    closed = plan(closures=[ClosurePeriod(date(2026, 11, 2), date(2026, 11, 8))])  # Toussaint moved by the school
    assert sessions_of(closed) == GOLDEN - {(MATHS, z("2026-11-02 10:15"), z("2026-11-02 11:15"), ("T2",), ("R1",))}
    assert closed.total_sessions == 11


def test_dst_week_keeps_the_wall_clock_time() -> None:
    svt = sorted(s.start for s in plan().sessions.values() if s.course == SVT_B)
    assert [s.astimezone(PARIS).strftime("%a %H:%M %z") for s in svt] == ["Mon 08:00 +0200", "Mon 08:00 +0100"]


def test_another_timezone_setting_moves_every_instant() -> None:
    p = plan_establishment(golden_timetable(), site="4817", establishment="1754", cutoff=BEFORE_YEAR,
                           tz=ZoneInfo("America/Cayenne"))
    fr = min((s for s in p.sessions.values() if s.course == FR), key=lambda s: s.start)
    assert fr.start == z("2026-09-01 11:00")  # 08:00 in Cayenne (UTC−3)


def test_import_mid_week_generates_only_later_sessions() -> None:
    now = datetime(2026, 9, 2, 12, 0, tzinfo=PARIS)  # Wednesday noon of week 1
    p = plan(now=now)
    assert sessions_of(p) == {s for s in GOLDEN if s[1] > now}
    assert (FR, z("2026-09-01 06:00"), z("2026-09-01 08:00"), ("T1",), ("R1",)) not in sessions_of(p)
    assert p.total_sessions == 12  # the year still has 12; 11 are generated


def test_a_session_starting_exactly_at_the_import_time_is_not_generated() -> None:
    p = plan(now=z("2026-09-03 07:00"))
    assert (ESP, z("2026-09-03 07:00"), z("2026-09-03 08:00"), ("T3",), ("R1",)) not in sessions_of(p)


def test_courses_kept_by_reconciliation_limit_the_sessions() -> None:
    p = plan(kept=[ESP, MATHS])
    assert {s.course for s in p.sessions.values()} == {ESP, MATHS} and set(p.courses) == {ESP, MATHS}


# ------------------------------------------------------------------------------------------- keys


def test_session_keys_are_course_date_and_place_and_ids_stable() -> None:
    a, b = plan(), plan()
    assert set(a.sessions) == set(b.sessions)
    assert f"{FR}|2026-09-01|0" in a.sessions
    assert [s.id for s in a.sessions.values()] == [s.id for s in b.sessions.values()]
    assert len({s.id for s in a.sessions.values()}) == 12
    assert all(s.id == domain.session_id("4817", "1754", k) for k, s in a.sessions.items())
    assert all(k == session_key(s.course, s.start.astimezone(PARIS).date(), int(k.rsplit("|", 1)[1]))
               for k, s in a.sessions.items())
    other = plan_establishment(golden_timetable(), site="4817", establishment="9001", cutoff=BEFORE_YEAR, tz=PARIS)
    assert not {s.id for s in a.sessions.values()} & {s.id for s in other.sessions.values()}


# ------------------------------------------------------------------------------------------- diff


def stored_of(p: domain.Plan) -> list[Stored]:
    return [Stored(s.id, s.key, s.fp, s.start) for s in p.sessions.values()]


def test_same_export_again_changes_nothing() -> None:
    d = diff_sessions(plan(), stored_of(plan()))
    assert (len(d.create), len(d.update), len(d.delete), d.unchanged) == (0, 0, 0, 12)


def test_new_teacher_or_room_is_an_update_a_moved_slot_delete_and_create() -> None:
    tt = golden_timetable()
    slots = list(tt.slots)
    slots[4] = replace(slots[4], teachers=(Ref("T3", w(8, 9)),))  # SVT 6B: new teacher → 2 updates
    slots[2] = replace(slots[2], day=5)  # ESPAGNOL moves from Thursday to Friday → 2 deletes, 2 creates
    slots[0] = replace(slots[0], place_count=1)  # FRANCAIS shorter (same key): 2 updates (time)
    d = diff_sessions(plan(replace(tt, slots=tuple(slots))), stored_of(plan()))
    assert sorted(s.course for s in d.update) == [FR, FR, SVT_B, SVT_B]
    assert sorted(s.start.date() for s in d.create) == [date(2026, 9, 4), date(2026, 9, 11)]
    assert sorted(s.start.date() for s in d.delete) == [date(2026, 9, 3), date(2026, 9, 10)]
    assert d.unchanged == 6


def test_reimport_mid_week_never_touches_earlier_sessions() -> None:
    stored = stored_of(plan())  # integrated before the year began
    tt = golden_timetable()
    removed = replace(tt, slots=tuple(s for i, s in enumerate(tt.slots) if i != 2))  # ESPAGNOL gone
    now = datetime(2026, 9, 5, 9, 0, tzinfo=PARIS)  # Saturday of week 1
    d = diff_sessions(plan(removed, now=now), stored)
    assert [s.start.date() for s in d.delete] == [date(2026, 9, 10)]  # 3 September stays: it is in the past
    assert not d.create and not d.update


def test_a_same_day_session_moved_across_the_import_time_is_left_alone() -> None:
    stored = stored_of(plan())
    now = z("2026-09-01 07:00")  # Tuesday 09:00 Paris: FRANCAIS (06:00–08:00 UTC) has started
    tt = golden_timetable()
    later_grid = replace(tt.grid, places=(Place(0, 10 * 60, 11 * 60),) + tt.grid.places[1:])  # place 0 now 10:00
    d = diff_sessions(plan(replace(tt, grid=later_grid), now=now), stored)
    key = f"{FR}|2026-09-01|0"
    assert key not in {s.key for s in d.create + d.update} and key not in {s.key for s in d.delete}
    assert all(s.start > now for s in d.create + d.update + d.delete)


# ----------------------------------------------------------------------------------------- report


def test_report_counts_each_action_with_success_and_error() -> None:
    p = plan()
    d = diff_sessions(p, [])
    cd = domain.diff_courses(p, {})
    result = domain.decide({"1754": domain.est_counts(p, d, cd)}, dry_run=False, cutoff=BEFORE_YEAR)
    assert result.outcome == "done" and result.step_status == "ok"
    actions = {a["action"]: (a["success"], a["error"]) for a in result.counts["actions"]}
    assert actions["sessions_created"] == (12, 0) and actions["sessions_deleted"] == (0, 0)
    assert actions["courses_created"] == (6, 0)
    assert result.counts["sessions"] == 12
    assert domain.decide({}, dry_run=True, cutoff=BEFORE_YEAR).outcome == "previewed"


def test_change_events_are_batched_json() -> None:
    p = plan()
    d = diff_sessions(p, [])
    events = [json.loads(e) for e in domain.change_events(p, d, "imp1", batch=5)]
    assert [len(e["created"]) for e in events] == [5, 5, 2]
    assert {(e["batch"], e["batches"]) for e in events} == {(1, 3), (2, 3), (3, 3)}
    assert events[0]["created"][0].keys() >= {"id", "course", "start", "end", "rooms", "teachers", "classes",
                                               "groups"}
    for row in p.sessions.values():  # the events' text and the API's view agree
        assert json.loads(domain.session_json(row)) == domain.session_view(row)
    gone = diff_sessions(plan(kept=[]), stored_of(p))
    (event,) = [json.loads(e) for e in domain.change_events(p, gone, "imp2")]
    assert len(event["deleted"]) == 12 and event["deleted"][0].keys() == {"id", "key", "start"}


def test_course_members_cover_classes_groups_teachers_and_dated_students() -> None:
    tt = golden_timetable()
    courses = {c.key: c for c in derive_courses(tt)}
    esp = {(m.kind, m.ident, m.start, m.end) for m in course_members(tt, courses[ESP])}
    assert ("group", "G1", None, None) in esp and ("class", "C6A", None, None) in esp
    assert ("class", "C6B", None, None) in esp and ("teacher", "T3", None, None) in esp
    assert {("student", "E1", None, None), ("student", "E2", None, None),
            ("student", "E3", None, date(2026, 9, 30)), ("student", "E3", date(2026, 10, 1), None)} <= esp
    assert {m.ident for m in course_members(tt, courses[MATHS]) if m.kind == "student"} == {"E1", "E3"}
    p = plan()
    stored = {(m.kind, m.ident) for m in p.courses[ESP].members}
    assert stored == {("group", "G1"), ("class", "C6A"), ("class", "C6B"), ("teacher", "T3"), ("sclass", "C6A"),
                      ("sclass", "C6B")}
    assert p.courses[ESP].student_count == 3 and p.courses[MATHS].student_count == 2
    assert ("sclass", "C6A", "E3", None, date(2026, 9, 30)) in p.class_students
    assert ("part", "P1", "E1", None, None) in p.class_students
