"""Pure derivations from the canonical model (design.md §7, §8a): school weeks, courses from slots,
dated sessions from week bitmaps, closure periods from the weeks without courses, session keys and the
members of a course."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Any, Literal, NamedTuple

from shared.timetable.model import MAX_WEEK, Membership, Place, Ref, Slot, Timetable

# ---------------------------------------------------------------------------------------- weeks


def iter_weeks(bitmap: int) -> Iterator[int]:
    """Week numbers whose bit is set, ascending (bit 0 and bits past MAX_WEEK are ignored)."""
    m = (bitmap >> 1) & ((1 << MAX_WEEK) - 1)
    week = 1
    while m:
        if m & 1:
            yield week
        m >>= 1
        week += 1


def weeks_bitmap(weeks: Iterable[int]) -> int:
    """Inverse of `iter_weeks`."""
    out = 0
    for w in weeks:
        out |= 1 << w
    return out


def week_dates(tt: Timetable, week: int) -> tuple[date, date]:
    """First and last day (7 days) of school week `week` (1-based)."""
    first = tt.school_year.week1 + timedelta(weeks=week - 1)
    return first, first + timedelta(days=6)


def school_weeks_bitmap(tt: Timetable) -> int:
    """Bitmap of the weeks that overlap DateDebut–DateFin."""
    y = tt.school_year
    out = 0
    for week in range(1, MAX_WEEK + 1):
        first = y.week1 + timedelta(weeks=week - 1)
        if first > y.end:
            break
        if first + timedelta(days=6) >= y.start:
            out |= 1 << week
    return out


# -------------------------------------------------------------------------------------- courses

CourseKind = Literal["class", "group"]


@dataclass(frozen=True, slots=True)
class Course:
    """A teaching service: subject + class, or subject + group (design.md §7).

    `key` is stable across exports of the same school (idents are stable in EDT/PRONOTE):
    `<subject ident>|class:<class ident>` or `<subject ident>|group:<group ident>`.
    """

    key: str
    subject: str
    kind: CourseKind
    target: str  # class or group ident
    label: str  # "SUBJECT - CLASS", subject's Libelle (else Code) and the class or group name
    slots: tuple[int, ...]  # indexes into Timetable.slots
    teachers: tuple[str, ...]  # every teacher named on those slots, in order of appearance


def course_key(subject: str, kind: CourseKind, target: str) -> str:
    return f"{subject}|{kind}:{target}"


def slot_targets(slot: Slot) -> list[tuple[CourseKind, Ref]]:
    """The course targets a slot makes (design.md §7, as the public importers do):
    its groups if it names any (its classes are then ignored), else each of its classes;
    a slot naming only parts of class (or nothing) makes no course."""
    if slot.groups:
        return [("group", r) for r in slot.groups]
    return [("class", r) for r in slot.classes]


def derive_courses(tt: Timetable) -> list[Course]:
    """Courses of the timetable in order of first appearance.

    Two classes on one slot make two courses; two classes share one course only through a group."""
    acc: dict[str, tuple[str, CourseKind, str, list[int], dict[str, None]]] = {}
    for index, slot in enumerate(tt.slots):
        for kind, ref in slot_targets(slot):
            key = f"{slot.subject}|{kind}:{ref.ident}"
            entry = acc.get(key)
            if entry is None:
                entry = acc[key] = (slot.subject, kind, ref.ident, [], {})
            if not entry[3] or entry[3][-1] != index:
                entry[3].append(index)
            for t in slot.teachers:
                entry[4][t.ident] = None
    out = []
    for key, (subject, kind, target, slots, teachers) in acc.items():
        out.append(
            Course(key, subject, kind, target, course_label(tt, subject, kind, target), tuple(slots), tuple(teachers))
        )
    return out


def course_label(tt: Timetable, subject: str, kind: CourseKind, target: str) -> str:
    s = tt.subjects.get(subject)
    subject_name = s.display if s is not None else subject
    holder = tt.classes.get(target) if kind == "class" else tt.groups.get(target)
    target_name = holder.name if holder is not None else target
    return f"{subject_name} - {target_name}"


# ------------------------------------------------------------------------------------- sessions


class Session(NamedTuple):
    """One dated occurrence of a course: week, naive local start and end, and who/where that week."""

    week: int
    start: datetime
    end: datetime
    slot: int  # index into Timetable.slots
    teachers: tuple[str, ...]
    rooms: tuple[str, ...]
    equipment: tuple[str, ...] = ()
    staff: tuple[str, ...] = ()


def _taking_part(refs: tuple[Ref, ...], bit: int) -> tuple[str, ...]:
    return tuple([r.ident for r in refs if r.weeks & bit])


class SlotWeeks(NamedTuple):
    """The sessions one slot makes for one course, column-wise (see `course_slot_weeks`): the i-th session
    is week `weeks[i]`, from `starts[i]` to `ends[i]` (naive local), with `teachers[i]`, `rooms[i]`…
    (equal tuples of one slot are the same object, so a consumer can compare them by identity)."""

    slot: int  # index into Timetable.slots
    weeks: tuple[int, ...]
    starts: tuple[datetime, ...]
    ends: tuple[datetime, ...]
    teachers: tuple[tuple[str, ...], ...]
    rooms: tuple[tuple[str, ...], ...]
    equipment: tuple[tuple[str, ...], ...]
    staff: tuple[tuple[str, ...], ...]


def weeks_taking_part(refs: tuple[Ref, ...], weeks: tuple[int, ...], mask: int) -> tuple[tuple[str, ...], ...]:
    """`_taking_part(refs, 1 << w)` for each week `w` of `weeks` (`mask` = their bitmap); equal results are
    one tuple object. The common case, every resource there all those weeks or none of them, is one pass."""
    if not refs:
        return ((),) * len(weeks)
    if all(not (r.weeks & mask) or r.weeks & mask == mask for r in refs):
        return (tuple([r.ident for r in refs if r.weeks & mask]),) * len(weeks)
    seen: dict[tuple[str, ...], tuple[str, ...]] = {}
    out = []
    for week in weeks:
        t = _taking_part(refs, 1 << week)
        out.append(seen.setdefault(t, t))
    return tuple(out)


@lru_cache(maxsize=64)
def _weeks_starting(week1: date, first_day: date, last_day: date,
                    offset: timedelta) -> tuple[int, tuple[datetime, ...]]:
    """For a slot starting `offset` after each week's Monday: the bitmap of weeks (1..MAX_WEEK) whose start
    day lies in first_day–last_day, and the naive start of every week (index = week number)."""
    base = datetime(week1.year, week1.month, week1.day)
    starts = tuple([base + timedelta(weeks=week - 1) + offset for week in range(MAX_WEEK + 1)])
    mask = 0
    for week in range(1, MAX_WEEK + 1):
        if first_day <= starts[week].date() <= last_day:
            mask |= 1 << week
    return mask, starts


_SessionWeeks = tuple[int, Slot, int, Place, Place, tuple[datetime, ...]]


def _session_weeks(tt: Timetable, course: Course) -> Iterator[_SessionWeeks]:
    """The one rule of which weeks make a session (design.md §8a): for each slot of the course, the weeks
    whose bit the course's own class or group element sets and the slot does not cancel, whose day falls
    within DateDebut–DateFin, on a slot whose places are on the grid — with those places and the naive
    start of every week."""
    places = {p.number: p for p in tt.grid.places}
    year = tt.school_year
    group = course.kind == "group"
    target = course.target
    for index in course.slots:
        slot = tt.slots[index]
        weeks = 0
        for r in slot.groups if group else slot.classes:
            if r.ident == target:
                weeks |= r.weeks
        weeks &= ~slot.cancelled_weeks
        first = places.get(slot.first_place)
        last = places.get(slot.first_place + slot.place_count - 1)
        if not weeks or first is None or last is None:
            continue
        start_off = timedelta(days=slot.day - 1, minutes=first.start)
        valid, week_starts = _weeks_starting(year.week1, year.start, year.end, start_off)
        weeks &= valid
        if weeks:
            yield index, slot, weeks, first, last, week_starts


def count_sessions(tt: Timetable, course: Course) -> int:
    """How many sessions `sessions_for_course` yields, without building them."""
    return sum(weeks.bit_count() for _, _, weeks, *_ in _session_weeks(tt, course))


def course_slot_weeks(tt: Timetable, course: Course) -> list[SlotWeeks]:
    """`sessions_for_course` column-wise, one `SlotWeeks` per slot that makes sessions (same rules, same
    order: slot by slot, weeks ascending); what the scheduler plans from without a tuple per session."""
    out: list[SlotWeeks] = []
    for index, slot, weeks, first, last, week_starts in _session_weeks(tt, course):
        kept = []
        m = weeks
        while m:
            low = m & -m
            kept.append(low.bit_length() - 1)
            m ^= low
        wk = tuple(kept)
        gap = timedelta(minutes=last.end - first.start)  # end = Monday + (day−1) days + end of the last place
        starts = tuple([week_starts[w] for w in wk])
        out.append(SlotWeeks(index, wk, starts, tuple([s + gap for s in starts]),
                             weeks_taking_part(slot.teachers, wk, weeks), weeks_taking_part(slot.rooms, wk, weeks),
                             weeks_taking_part(slot.equipment, wk, weeks), weeks_taking_part(slot.staff, wk, weeks)))
    return out


def sessions_for_course(tt: Timetable, course: Course) -> Iterator[Session]:
    """Sessions of a course (design.md §8a): week *i* has a session when the course's own class or group
    element has bit *i* set and the slot's cancellation bit *i* is not; the session's teachers and rooms
    are those whose bit *i* is set. Weeks whose day falls outside DateDebut–DateFin make no session.
    Start = week1 + (i−1) weeks + (Jour−1) days + start of the first place; end = end of the last place."""
    for run in course_slot_weeks(tt, course):
        index = run.slot
        for week, start, end, teachers, rooms, equipment, staff in zip(
                run.weeks, run.starts, run.ends, run.teachers, run.rooms, run.equipment, run.staff, strict=True):
            yield Session(week, start, end, index, teachers, rooms, equipment, staff)


def derive_sessions(tt: Timetable) -> Iterator[tuple[Course, Session]]:
    """Every session of every course."""
    for course in derive_courses(tt):
        for session in sessions_for_course(tt, course):
            yield course, session


# -------------------------------------------------------------------------------------- closures


class ClosurePeriod(NamedTuple):
    start: date
    end: date  # inclusive


def active_weeks_bitmap(tt: Timetable) -> int:
    """Weeks in which at least one course-making element of a slot has its bit set (cancellations
    do not count: a cancelled week is not a closure)."""
    out = 0
    for slot in tt.slots:
        for _, ref in slot_targets(slot):
            out |= ref.weeks
    return out


def derive_closure_weeks(tt: Timetable) -> list[ClosurePeriod]:
    """Closure periods of the file (design.md §8a): runs of consecutive weeks inside DateDebut–DateFin in
    which no course has a bit set, each clipped to the school year."""
    year = tt.school_year
    active = active_weeks_bitmap(tt)
    school = school_weeks_bitmap(tt)
    out: list[ClosurePeriod] = []
    run_start: date | None = None
    run_end: date | None = None
    for week in iter_weeks(school):
        first, last = week_dates(tt, week)
        if active & (1 << week):
            if run_start is not None and run_end is not None:
                out.append(ClosurePeriod(run_start, run_end))
            run_start = run_end = None
            continue
        if run_start is None:
            run_start = max(first, year.start)
        run_end = min(last, year.end)
    if run_start is not None and run_end is not None:
        out.append(ClosurePeriod(run_start, run_end))
    return out



# ------------------------------------------------------------------------- session keys and members


def session_key(course: str, day: date, first_place: int) -> str:
    """The stable key of one session: course + date + first place of the day. An unchanged export gives
    the same keys, so a re-import diffs sessions (create / update / delete) instead of recreating them;
    a slot moved to another day or place is a deletion plus a creation, a new room, teacher or length of
    the same slot an update."""
    return f"{course}|{day.isoformat()}|{first_place}"


class Member(NamedTuple):
    """One member of a course: kind (`teacher`, `staff`, `student`, `class`, `group`), ident, and for a
    student the dates of the class / part membership that puts them in it (None = open-ended)."""

    kind: str
    ident: str
    start: date | None = None
    end: date | None = None


def course_classes(tt: Timetable, course: Course) -> tuple[str, ...]:
    """Classes a course belongs to: its own class; for a group course, the group's classes and the classes
    owning its parts of class (a student-list group names no class)."""
    if course.kind == "class":
        return (course.target,)
    group = tt.groups.get(course.target)
    if group is None:
        return ()
    out: dict[str, None] = dict.fromkeys(group.classes)
    if group.parts:
        owner = {p: c.ident for c in tt.classes.values() for p in c.parts}
        for p in group.parts:
            if p in owner:
                out[owner[p]] = None
    return tuple(out)


def course_members(tt: Timetable, course: Course, *, _index: dict[str, Any] | None = None) -> list[Member]:
    """Everyone and everything a course concerns (design.md §1 "rattachement"): its class or group, the
    classes of §`course_classes`, teachers and staff named on its slots, and its students — the class's
    students (dated by their class membership), or the group's own students plus the students of its
    classes and parts; students named on its slots (`Eleve`) too. A student appears once per membership
    that brings them in. `_index` lets a caller deriving many courses share the student indexes
    (see `member_index`)."""
    index = _index if _index is not None else member_index(tt)
    by_class: dict[str, list[Membership]] = index["class"]
    by_part: dict[str, list[Membership]] = index["part"]
    out: list[Member] = [Member(course.kind, course.target)]
    classes = course_classes(tt, course)
    out += [Member("class", c) for c in classes if not (course.kind == "class" and c == course.target)]
    staff: dict[str, None] = {}
    slot_students: dict[str, None] = {}
    for i in course.slots:
        slot = tt.slots[i]
        for r in slot.staff:
            staff[r.ident] = None
        for r in slot.students:
            slot_students[r.ident] = None
    out += [Member("teacher", t) for t in course.teachers]
    out += [Member("staff", s) for s in staff]
    seen: set[tuple[str, date | None, date | None]] = set()

    def add(m: Membership) -> None:  # m.ident is the student here
        k = (m.ident, m.start, m.end)
        if k not in seen:
            seen.add(k)
            out.append(Member("student", m.ident, m.start, m.end))

    if course.kind == "class":
        for m in by_class.get(course.target, ()):
            add(m)
    else:
        group = tt.groups.get(course.target)
        if group is not None:
            for s in group.students:
                add(Membership(s))
            for c in group.classes:
                for m in by_class.get(c, ()):
                    add(m)
            for p in group.parts:
                for m in by_part.get(p, ()):
                    add(m)
    for s in slot_students:
        add(Membership(s))
    return out


def member_index(tt: Timetable) -> dict[str, dict[str, list[Membership]]]:
    """Students of each class and of each part of class, as Memberships whose ident is the student."""
    by_class: dict[str, list[Membership]] = {}
    by_part: dict[str, list[Membership]] = {}
    for s in tt.students.values():
        for m in s.classes:
            by_class.setdefault(m.ident, []).append(Membership(s.ident, m.start, m.end))
        for m in s.parts:
            by_part.setdefault(m.ident, []).append(Membership(s.ident, m.start, m.end))
    return {"class": by_class, "part": by_part}
