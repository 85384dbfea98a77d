"""Session generation rules, pure (design.md §7 sessions, §8a weeks). No I/O here.

`plan_establishment` turns one establishment's canonical timetable into the courses and dated sessions
it means from the import's start time on; `diff_sessions` compares them with what is stored (by session
key) into creations, updates and deletions; `decide` reports the counts for the bilan. The JSON views are
here too, so that the API and the change events agree (display names: views.py; iCal feeds: ical.py).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from shared.messages import ImportStatus, StepStatus
from shared.messages import iso as shared_iso
from shared.stage import StageResult
from shared.timetable import (
    ClosurePeriod,
    Course,
    Member,
    Timetable,
    course_classes,
    course_slot_weeks,
    derive_closure_weeks,
    derive_courses,
    member_index,
    weeks_bitmap,
    weeks_taking_part,
)

EVENT_BATCH = 1000  # sessions per change event on edt.changes


class SessionRow(NamedTuple):
    id: str
    key: str
    course: str
    start: datetime  # aware UTC
    end: datetime  # aware UTC
    week: int
    rooms: tuple[str, ...]
    teachers: tuple[str, ...]
    classes: tuple[str, ...]
    groups: tuple[str, ...]
    students: tuple[str, ...]
    equipment: tuple[str, ...]
    staff: tuple[str, ...]
    fp: str


@dataclass
class CourseRow:
    key: str
    subject: str
    kind: str
    target: str
    label: str
    teachers: tuple[str, ...]
    classes: tuple[str, ...]
    members: list[Member]
    fp: str

    student_count: int = 0


@dataclass
class Plan:
    """What one establishment's timetable means from `cutoff` on."""

    site: str
    establishment: str
    cutoff: datetime
    sessions: dict[str, SessionRow]  # by key, only those starting after cutoff
    courses: dict[str, CourseRow]
    names: dict[str, dict[str, str]]
    total_sessions: int  # every session of the year, before the cutoff too
    # (kind "sclass" | "part", class or part ident, student, start, end): who is in each class and part,
    # stored once per establishment instead of once per course
    class_students: list[tuple[str, str, str, date | None, date | None]] = field(default_factory=list)
    class_students_fp: str = ""


def session_id(site: str, establishment: str, key: str) -> str:
    """Stable id of a session: known before it is written, the same across re-imports (iCal UID)."""
    return hashlib.blake2b(f"{site}/{establishment}/{key}".encode(), digest_size=12).hexdigest()


def _digest_text(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def _union(a: tuple[str, ...], b: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(a + b))


def closed_days(periods: Iterable[ClosurePeriod]) -> frozenset[date]:
    out: set[date] = set()
    for p in periods:
        d = p.start
        while d <= p.end:
            out.add(d)
            d += timedelta(days=1)
    return frozenset(out)


def parse_closures(raw: Iterable[Mapping[str, Any]] | None) -> list[ClosurePeriod]:
    """Closure periods an establishment set through the API, as `[{start, end, label?}]` (dates inclusive)."""
    out = []
    for item in raw or ():
        start, end = item.get("start"), item.get("end")
        if not start or not end:
            continue
        out.append(ClosurePeriod(date.fromisoformat(str(start)[:10]), date.fromisoformat(str(end)[:10])))
    return out


class Memo(dict[Any, Any]):
    """A dict computing a missing value with `fn` (a hit is one C-level lookup); it keeps at most `cap`."""

    def __init__(self, fn: Callable[[Any], Any], cap: int = 1 << 62) -> None:
        super().__init__()
        self.fn, self.cap = fn, cap

    def __missing__(self, key: Any) -> Any:
        value = self.fn(key)
        if len(self) < self.cap:
            self[key] = value
        return value


def _tail(rooms: tuple[str, ...], teachers: tuple[str, ...], students: tuple[str, ...],
          equipment: tuple[str, ...], staff: tuple[str, ...]) -> str:
    return "\x1f".join((*rooms, "\x1e", *teachers, "\x1e", *students, "\x1e", *equipment, "\x1e", *staff))


def plan_establishment(tt: Timetable, *, site: str, establishment: str, cutoff: datetime, tz: ZoneInfo,
                       kept: Iterable[str] | None = None,
                       closures: Sequence[ClosurePeriod] = ()) -> Plan:
    """Courses and sessions of one establishment (design.md §7, §8a).

    - Courses: `derive_courses` (only those in `kept` when reconciliation gave a list).
    - Sessions: `sessions_for_course` (week bitmaps, cancellations, who takes part each week), none on a
      closure day (the file's own closure weeks and `closures` set by the establishment), local times in
      `tz` turned into UTC instants (so a DST week keeps its wall-clock times), only those starting
      strictly after `cutoff` (the import's start: earlier sessions are never touched).
    - Two sessions of one course on the same day and first place (one key) are merged.

    Hot loop (tens of thousands of sessions): the sessions come column-wise from `course_slot_weeks`, local
    instants, days and the fingerprint's participant part are memoised, the hashes are streamed from
    per-establishment / per-course prefixes. Same rows as `sessions_for_course` + `session_key` +
    `session_id` + the documented fingerprint."""
    keep = set(kept) if kept is not None else None
    courses = [c for c in derive_courses(tt) if keep is None or c.key in keep]
    closed = closed_days([*derive_closure_weeks(tt), *closures])
    index = member_index(tt)
    cutoff_utc = cutoff.astimezone(UTC)
    out_courses: dict[str, CourseRow] = {}
    out: dict[str, SessionRow] = {}
    total = 0
    slots = tt.slots
    # naive local → (aware UTC, its ISO text); a school year has a few thousand distinct instants
    instant = Memo(lambda naive: (u := naive.replace(tzinfo=tz).astimezone(UTC), iso(u)))
    day_iso = Memo(date.isoformat)
    new_row = tuple.__new__
    id_base = hashlib.blake2b(f"{site}/{establishment}/".encode(), digest_size=12)  # see session_id
    for course in courses:
        classes = course_classes(tt, course)
        groups = (course.target,) if course.kind == "group" else ()
        members = stored_members(tt, course, classes)
        ckey = course.key
        out_courses[ckey] = CourseRow(
            ckey, course.subject, course.kind, course.target, course.label, course.teachers, classes,
            members, _digest_text("\x1f".join((course.label, *course.teachers, "\x1e", *classes, "\x1e",
                                                *sorted(f"{m.kind}:{m.ident}:{m.start}:{m.end}" for m in members)))),
            student_count(tt, course, index))
        fixed = "\x1f".join((ckey, *classes, "\x1e", *groups))
        # fp = blake2b("\x1f".join((fixed, iso(start), iso(end), *rooms, "\x1e", *teachers, "\x1e", *students,
        #                             "\x1e", *equipment, "\x1e", *staff)), 8 bytes): the fixed part hashed once
        fp_base = hashlib.blake2b((fixed + "\x1f").encode(), digest_size=8)
        prefix = ckey + "|"
        for run in course_slot_weeks(tt, course):
            slot = slots[run.slot]
            place = f"|{slot.first_place}"  # key = session_key(course.key, day, first place)
            if slot.students:
                students_of = weeks_taking_part(slot.students, run.weeks, weeks_bitmap(run.weeks))
            else:
                students_of = ((),) * len(run.weeks)
            last: tuple[Any, ...] = ()
            tail = ""
            for week, start_l, end_l, teachers, rooms, equipment, staff, students in zip(
                    run.weeks, run.starts, run.ends, run.teachers, run.rooms, run.equipment, run.staff, students_of,
                    strict=True):
                day = start_l.date()
                if day in closed:
                    continue
                total += 1
                start, start_iso = instant[start_l]
                if start <= cutoff_utc:
                    continue
                end, end_iso = instant[end_l]
                key = f"{prefix}{day_iso[day]}{place}"
                prev = out.get(key)
                if prev is not None:  # same course, day and first place twice: one session
                    rooms, teachers = _union(prev.rooms, rooms), _union(prev.teachers, teachers)
                    students, equipment = _union(prev.students, students), _union(prev.equipment, equipment)
                    staff, end = _union(prev.staff, staff), max(prev.end, end)
                    end_iso = iso(end)
                    row_tail = _tail(rooms, teachers, students, equipment, staff)
                else:
                    if last != (rooms, teachers, students, equipment, staff):
                        last = (rooms, teachers, students, equipment, staff)
                        tail = _tail(rooms, teachers, students, equipment, staff)
                    row_tail = tail
                h = fp_base.copy()
                h.update(f"{start_iso}\x1f{end_iso}\x1f{row_tail}".encode())
                fp = h.hexdigest()
                h = id_base.copy()
                h.update(key.encode())
                out[key] = new_row(SessionRow, (h.hexdigest(), key, ckey, start, end, week, rooms, teachers, classes,
                                                groups, students, equipment, staff, fp))
    class_students = [("sclass", c, m.ident, m.start, m.end) for c, ms in index["class"].items() for m in ms]
    class_students += [("part", p, m.ident, m.start, m.end) for p, ms in index["part"].items() for m in ms]
    class_students.sort(key=lambda r: (r[0], r[1], r[2], str(r[3]), str(r[4])))
    return Plan(site, establishment, cutoff_utc, out, out_courses, names_of(tt), total, class_students,
                _digest_text(repr(class_students)))


def empty_plan(*, site: str, establishment: str, cutoff: datetime) -> Plan:
    """No timetable from `cutoff` on (an undo of an establishment's first import): every later session is
    deleted and every course deactivated; earlier sessions stay."""
    return Plan(site, establishment, cutoff.astimezone(UTC), {}, {}, {}, 0, [], _digest_text(repr([])))


def stored_members(tt: Timetable, course: Course, classes: tuple[str, ...]) -> list[Member]:
    """What the store keeps of `course_members`: the course's class or group, its classes (class filter),
    teachers, staff, and for its students the classes ("sclass") and parts whose every student is in it
    plus the students named one by one (group lists, slot `Eleve`). The students of each class and part
    are stored once per establishment (Plan.class_students), not once per course."""
    out = [Member(course.kind, course.target)]
    out += [Member("class", c) for c in classes if not (course.kind == "class" and c == course.target)]
    out += [Member("teacher", t) for t in course.teachers]
    staff: dict[str, None] = {}
    students: dict[str, None] = {}
    for i in course.slots:
        for r in tt.slots[i].staff:
            staff[r.ident] = None
        for r in tt.slots[i].students:
            students[r.ident] = None
    out += [Member("staff", x) for x in staff]
    if course.kind == "class":
        out.append(Member("sclass", course.target))
    else:
        group = tt.groups.get(course.target)
        if group is not None:
            out += [Member("sclass", c) for c in group.classes]
            out += [Member("part", p) for p in group.parts]
            students.update(dict.fromkeys(group.students))
    out += [Member("student", x) for x in students]
    return out


def student_count(tt: Timetable, course: Course, index: Mapping[str, Mapping[str, list[Any]]]) -> int:
    """How many students the course concerns (whatever their membership dates)."""
    ids: set[str] = set()
    if course.kind == "class":
        ids.update(m.ident for m in index["class"].get(course.target, ()))
    elif (group := tt.groups.get(course.target)) is not None:
        ids.update(group.students)
        for c in group.classes:
            ids.update(m.ident for m in index["class"].get(c, ()))
        for p in group.parts:
            ids.update(m.ident for m in index["part"].get(p, ()))
    for i in course.slots:
        ids.update(r.ident for r in tt.slots[i].students)
    return len(ids)


def names_of(tt: Timetable) -> dict[str, dict[str, str]]:
    """The display names feeds and views show. Students are listed without their names (docs/privacy.md):
    no session or list shows one, and a student's calendar is named by its ident (`feed_name`)."""
    def person(p: Any) -> str:
        return f"{p.last_name} {p.first_name}".strip()

    return {
        "teachers": {k: person(p) for k, p in tt.teachers.items()},
        "staff": {k: person(p) for k, p in tt.staff.items()},
        "rooms": {k: r.name for k, r in tt.rooms.items()},
        "equipment": {k: r.name for k, r in tt.equipment.items()},
        "classes": {k: c.name for k, c in tt.classes.items()},
        "groups": {k: g.name for k, g in tt.groups.items()},
        "subjects": {k: s.display for k, s in tt.subjects.items()},
        "students": dict.fromkeys(tt.students, ""),
    }


def feed_name(kind: str, ident: str, names: Mapping[str, Mapping[str, str]], feed_kinds: Mapping[str, str]) -> str:
    """The calendar's name: the display name of its class, group or teacher; « Élève <ident> » for a student."""
    return names.get(feed_kinds[kind], {}).get(ident) or (f"Élève {ident}" if kind == "student" else ident)


# ------------------------------------------------------------------------------------------ diff


class Stored(NamedTuple):
    id: str
    key: str
    fp: str
    start: datetime  # aware UTC


@dataclass
class SessionDiff:
    create: list[SessionRow] = field(default_factory=list)
    update: list[SessionRow] = field(default_factory=list)
    delete: list[Stored] = field(default_factory=list)
    unchanged: int = 0

    @property
    def changed(self) -> int:
        return len(self.create) + len(self.update) + len(self.delete)


def diff_sessions(plan: Plan, stored: Iterable[Stored]) -> SessionDiff:
    """Stored sessions vs the plan, by key: only sessions starting after the cutoff are compared; one at or
    before it is never touched (nor replaced by a planned session of the same key)."""
    out = SessionDiff()
    frozen: set[str] = set()
    current: dict[str, Stored] = {}
    for kept in stored:
        if kept.start <= plan.cutoff:
            frozen.add(kept.key)
        else:
            current[kept.key] = kept
    for key, row in plan.sessions.items():
        old = current.pop(key, None)
        if old is None:
            if key not in frozen:
                out.create.append(row)
        elif old.fp != row.fp:
            out.update.append(row)
        else:
            out.unchanged += 1
    out.delete = list(current.values())
    return out


@dataclass
class CourseDiff:
    create: list[CourseRow] = field(default_factory=list)
    update: list[CourseRow] = field(default_factory=list)  # label, teachers or members changed
    reactivate: list[CourseRow] = field(default_factory=list)
    deactivate: list[str] = field(default_factory=list)


def diff_courses(plan: Plan, stored: Mapping[str, tuple[str, bool]]) -> CourseDiff:
    """`stored`: course key → (fp, active)."""
    out = CourseDiff()
    for key, course in plan.courses.items():
        old = stored.get(key)
        if old is None:
            out.create.append(course)
        elif not old[1]:
            out.reactivate.append(course)
        elif old[0] != course.fp:
            out.update.append(course)
    out.deactivate = [k for k, (_, active) in stored.items() if active and k not in plan.courses]
    return out


# -------------------------------------------------------------------------------------- decision

ACTIONS = ("sessions_created", "sessions_updated", "sessions_deleted", "courses_created", "courses_updated",
           "courses_deleted")


def est_counts(plan: Plan, sd: SessionDiff, cd: CourseDiff) -> dict[str, int]:
    return {
        "sessions_created": len(sd.create), "sessions_updated": len(sd.update),
        "sessions_deleted": len(sd.delete), "sessions_unchanged": sd.unchanged,
        "courses_created": len(cd.create) + len(cd.reactivate), "courses_updated": len(cd.update),
        "courses_deleted": len(cd.deactivate),
        "sessions": len(plan.sessions), "sessions_in_year": plan.total_sessions, "courses": len(plan.courses),
    }


def decide(per_establishment: Mapping[str, Mapping[str, int]], *, dry_run: bool, cutoff: datetime,
           errors: Mapping[str, int] | None = None) -> StageResult:
    """The step's outcome: ok, the import `done` ("intégré", seed 001) once sessions are committed, or
    `previewed` for a dry run (nothing written); the bilan's per-action counts."""
    errors = errors or {}
    total = {k: sum(int(c.get(k, 0)) for c in per_establishment.values())
             for k in (*ACTIONS, "sessions_unchanged", "sessions", "sessions_in_year", "courses")}
    counts: dict[str, Any] = {
        "actions": [{"action": a, "success": total[a], "error": int(errors.get(a, 0))} for a in ACTIONS],
        "sessions": total["sessions"], "sessions_unchanged": total["sessions_unchanged"],
        "sessions_in_year": total["sessions_in_year"], "courses": total["courses"],
        "from": iso(cutoff), "dry_run": dry_run,
        "establishments": {k: dict(v) for k, v in per_establishment.items()},
    }
    return StageResult(StepStatus.OK, outcome=ImportStatus.PREVIEWED if dry_run else ImportStatus.DONE,
                       counts=counts)


# ----------------------------------------------------------------------------------------- views


_isos = Memo(shared_iso, 200_000)  # session instants repeat a lot


def iso(value: datetime) -> str:
    """`shared.messages.iso`, cached: session instants repeat a lot."""
    return _isos[value]


def session_view(row: Any) -> dict[str, Any]:
    """A session as the API and change events show it (design.md §5 plus week, key, extras)."""
    start = row.start if row.start.tzinfo else row.start.replace(tzinfo=UTC)
    end = row.end if row.end.tzinfo else row.end.replace(tzinfo=UTC)
    return {"id": row.id, "course": row.course, "start": iso(start), "end": iso(end),
            "rooms": list(row.rooms), "teachers": list(row.teachers), "classes": list(row.classes),
            "groups": list(row.groups), "students": list(row.students), "equipment": list(row.equipment),
            "staff": list(row.staff), "week": row.week, "key": row.key}


def session_json(row: SessionRow) -> str:
    """`session_view` as JSON text, built from cached pieces (change events carry tens of thousands)."""
    return (f'{{"id":"{row.id}","course":{json_str(row.course)},"start":"{iso(row.start)}","end":"{iso(row.end)}",'
            f'"rooms":{json_list(row.rooms)},"teachers":{json_list(row.teachers)},'
            f'"classes":{json_list(row.classes)},"groups":{json_list(row.groups)},'
            f'"students":{json_list(row.students)},"equipment":{json_list(row.equipment)},'
            f'"staff":{json_list(row.staff)},"week":{row.week},"key":{json_str(row.key)}}}')


def sessions_json(rows: Iterable[SessionRow]) -> list[str]:
    """`session_json` of each row, the hot way: one memo lookup per piece, no call per row. A row whose
    course needs JSON escaping goes through `session_json`; otherwise its key needs none either (a session
    key is its course, then `|`, an ISO date, `|` and a place number: see `plan_establishment`)."""
    J, T, plain = json_lists, _isos, _plain  # noqa: N806
    return [f'{{"id":"{i}","course":"{c}","start":"{T[s]}","end":"{T[e]}","rooms":{J[ro]},"teachers":{J[te]},'
            f'"classes":{J[cl]},"groups":{J[gr]},"students":{J[st]},"equipment":{J[eq]},"staff":{J[sf]},'
            f'"week":{w},"key":"{k}"}}' if plain[c] and k.startswith(c) else session_json(SessionRow(
                i, k, c, s, e, w, ro, te, cl, gr, st, eq, sf, fp))
            for i, k, c, s, e, w, ro, te, cl, gr, st, eq, sf, fp in rows]


def batch_names(plan: Plan, rows: Sequence[SessionRow]) -> str:
    """The display names a batch of sessions needs, as JSON: `{"courses": {key: label}, "subjects": {key:
    subject}, "rooms"|"teachers"|"classes"|"groups": {ident: name}}` (only the idents the batch names)."""
    used: dict[str, set[str]] = {"rooms": set(), "teachers": set(), "classes": set(), "groups": set()}
    course_keys: set[str] = set()
    for row in rows:
        course_keys.add(row.course)
        used["rooms"].update(row.rooms)
        used["teachers"].update(row.teachers)
        used["classes"].update(row.classes)
        used["groups"].update(row.groups)
    subjects = plan.names.get("subjects", {})
    out: dict[str, dict[str, str]] = {
        "courses": {k: plan.courses[k].label for k in sorted(course_keys) if k in plan.courses},
        "subjects": {k: subjects.get(plan.courses[k].subject, plan.courses[k].subject)
                     for k in sorted(course_keys) if k in plan.courses}}
    for kind, idents in used.items():
        known = plan.names.get(kind, {})
        out[kind] = {i: known.get(i, i) for i in sorted(idents)}
    return json.dumps(out, ensure_ascii=False, separators=(",", ":"))


def change_events(plan: Plan, sd: SessionDiff, import_id: str, *, batch: int = EVENT_BATCH) -> list[bytes]:
    """The change events (JSON bodies) of one establishment's import, ≤ `batch` sessions each, in the order
    created, updated, deleted; each says which import it belongs to and its rank (`batch`/`batches`), and
    carries the display names its sessions need (`batch_names`):
    `{"v": 1, "type": "sessions.changed", "import_id", "site", "establishment", "batch", "batches",
    "created": [session], "updated": [session], "deleted": [{"id", "key", "start"}], "names": {…}}`."""
    texts = sessions_json(sd.create)
    texts += sessions_json(sd.update)
    texts += [f'{{"id":"{r.id}","key":{json_str(r.key)},"start":"{iso(r.start)}"}}' for r in sd.delete]
    shown = [*sd.create, *sd.update]
    created, updated = len(sd.create), len(sd.create) + len(sd.update)
    starts = range(0, len(texts), batch)
    head = (f'{{"v":1,"type":"sessions.changed","import_id":{json_str(import_id)},"site":{json_str(plan.site)},'
            f'"establishment":{json_str(plan.establishment)}')
    out = []
    for n, i in enumerate(starts, 1):
        j = min(i + batch, len(texts))
        out.append((f'{head},"batch":{n},"batches":{len(starts)},"created":[{",".join(texts[i:min(j, created)])}],'
                    f'"updated":[{",".join(texts[max(i, created):min(j, updated)])}],'
                    f'"deleted":[{",".join(texts[max(i, updated):j])}],'
                    f'"names":{batch_names(plan, shown[i:min(j, updated)])}}}').encode())
    return out


# ---------------------------------------------------------------------------------- JSON columns

_NEEDS_ESCAPE = re.compile(r'["\\\x00-\x1f\x7f-\uffff]')
_plain = Memo(lambda text: not _NEEDS_ESCAPE.search(text), 100_000)  # text JSON shows as is, in quotes


def json_str(text: str) -> str:
    return json.dumps(text) if _NEEDS_ESCAPE.search(text) else f'"{text}"'


def _json_list(items: tuple[str, ...]) -> str:
    joined = '","'.join(items)
    return json.dumps(list(items)) if _NEEDS_ESCAPE.search(joined) else (f'["{joined}"]' if items else "[]")


json_lists = Memo(_json_list, 100_000)  # tuples of idents repeat a lot


def json_list(items: tuple[str, ...]) -> str:
    """JSON text of a tuple of idents, fast: idents rarely need escaping and tuples repeat a lot."""
    return json_lists[items]
