"""The canonical timetable model and its pure derivations (design.md §7, §8, §8a, §9).

Validator, thresholds, reconciler and scheduler all read this model, never the export file: the validator
turns an Index Education export into a `Timetable`, stores `dumps(tt)` as a blob, and the later stages
`loads` it. Everything here is pure (no I/O) except `sniff_export`, the cheap detector the dropzone runs
at deposit time.

Conventions:
- Idents are the export's `Ident` attributes kept as strings; each kind has its own ident space
  (a subject and a teacher may both be "2").
- Week bitmaps are the export's integers untouched: bit *i* is school week *i* (1-based, bit 0 unused),
  week 1 starting on `SchoolYear.week1`.
- Times of day are minutes after midnight; session datetimes are naive local time (the establishment's
  timezone is a setting, applied by the scheduler).
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import IO, Any, Literal, NamedTuple

MODEL_VERSION = 1

CLEAR_NAMESPACE = "http://www.index-education.com/exportemploidutemps"
CONTAINER_NAMESPACE = "http://www.index-education.com/conteneurexportchiffre"
CLEAR_ROOT = "ExportEmploiDuTemps"
CONTAINER_ROOT = "EXPORT_INDEX_EDUCATION"

# A 64-bit bitmap holds weeks 1..63; real years use 1..52/53.
MAX_WEEK = 63


# --------------------------------------------------------------------------------------------- model


class Ref(NamedTuple):
    """One resource of a slot (teacher, class, room…) and the weeks it takes part in."""

    ident: str
    weeks: int


class Membership(NamedTuple):
    """A student's class or part-of-class membership, with its dates when the file gives them."""

    ident: str
    start: date | None = None
    end: date | None = None


class Place(NamedTuple):
    """One place of the daily grid: `number` 0 = first place of the day; times in minutes after midnight."""

    number: int
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class SchoolYear:
    start: date  # DateDebut
    end: date  # DateFin
    week1: date  # DatePremierJourSemaine1: first day of school week 1


@dataclass(frozen=True, slots=True)
class TimeGrid:
    places_per_day: int
    place_minutes: int
    days: tuple[int, ...]  # working days, 1 = Monday
    places: tuple[Place, ...]  # sorted by number

    def place(self, number: int) -> Place | None:
        for p in self.places:
            if p.number == number:
                return p
        return None


@dataclass(frozen=True, slots=True)
class Subject:
    ident: str
    code: str
    label: str  # Libelle

    @property
    def display(self) -> str:
        """The name courses carry: the Libelle (what people read, e.g. FRANCAIS), else the Code."""
        return self.label or self.code


@dataclass(frozen=True, slots=True)
class Person:
    """A teacher (`Professeur`) or staff member (`Personnel`)."""

    ident: str
    last_name: str
    first_name: str
    birth_date: date | None = None
    pronote_id: str | None = None  # IDPN
    cas_id: str | None = None  # IDCAS
    sts_id: str | None = None  # IDSTS


@dataclass(frozen=True, slots=True)
class Establishment:
    ident: str
    uai: str  # Numero
    name: str


@dataclass(frozen=True, slots=True)
class SchoolClass:
    ident: str
    name: str
    parts: tuple[str, ...] = ()  # PartieDeClasse idents
    establishments: tuple[str, ...] = ()  # Etablissement idents (multi-establishment files only)


@dataclass(frozen=True, slots=True)
class Group:
    ident: str
    name: str
    classes: tuple[str, ...] = ()
    parts: tuple[str, ...] = ()
    students: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Room:
    """A room (`Salle`) or an equipment item (`Materiel`)."""

    ident: str
    name: str


@dataclass(frozen=True, slots=True)
class Student:
    ident: str
    last_name: str
    first_name: str
    birth_date: date | None = None
    sex: str | None = None  # "Masculin" / "Feminin" as exported
    pronote_id: str | None = None
    cas_id: str | None = None
    national_id: str | None = None  # NumeroNational
    classes: tuple[Membership, ...] = ()
    parts: tuple[Membership, ...] = ()


@dataclass(frozen=True, slots=True)
class Slot:
    """One `Cours` element: a weekly slot with its resources, each with its own weeks."""

    day: int  # 1 = first day of the week (Monday)
    first_place: int  # NumeroPlaceDebut
    place_count: int  # NombrePlaces
    subject: str
    cancelled_weeks: int = 0  # SemainesAnnulation
    teachers: tuple[Ref, ...] = ()
    classes: tuple[Ref, ...] = ()
    parts: tuple[Ref, ...] = ()
    groups: tuple[Ref, ...] = ()
    rooms: tuple[Ref, ...] = ()
    equipment: tuple[Ref, ...] = ()
    students: tuple[Ref, ...] = ()
    staff: tuple[Ref, ...] = ()


@dataclass(frozen=True, slots=True)
class Timetable:
    uai: str
    format_version: str
    school_year: SchoolYear
    grid: TimeGrid
    subjects: dict[str, Subject] = field(default_factory=dict)
    teachers: dict[str, Person] = field(default_factory=dict)
    staff: dict[str, Person] = field(default_factory=dict)
    establishments: dict[str, Establishment] = field(default_factory=dict)
    classes: dict[str, SchoolClass] = field(default_factory=dict)
    groups: dict[str, Group] = field(default_factory=dict)
    rooms: dict[str, Room] = field(default_factory=dict)
    equipment: dict[str, Room] = field(default_factory=dict)
    students: dict[str, Student] = field(default_factory=dict)
    slots: tuple[Slot, ...] = ()
    model_version: int = MODEL_VERSION


# ------------------------------------------------------------------------------------ serialisation
# Rows of plain lists (no field names) keep the blob small and (de)serialisation fast; the layout is
# tied to MODEL_VERSION: change a row and bump the version.


def _d(value: date | None) -> str | None:
    return value.isoformat() if value is not None else None


def _pd(value: str | None) -> date | None:
    return date.fromisoformat(value) if value else None


def _refs_out(refs: tuple[Ref, ...]) -> list[list[Any]]:
    return [[r.ident, r.weeks] for r in refs]


def _refs_in(rows: list[list[Any]]) -> tuple[Ref, ...]:
    return tuple([Ref(r[0], r[1]) for r in rows])


def to_jsonable(tt: Timetable) -> dict[str, Any]:
    y, g = tt.school_year, tt.grid
    return {
        "model_version": tt.model_version,
        "uai": tt.uai,
        "format_version": tt.format_version,
        "school_year": [_d(y.start), _d(y.end), _d(y.week1)],
        "grid": [g.places_per_day, g.place_minutes, list(g.days), [list(p) for p in g.places]],
        "subjects": [[s.ident, s.code, s.label] for s in tt.subjects.values()],
        "teachers": [_person_out(p) for p in tt.teachers.values()],
        "staff": [_person_out(p) for p in tt.staff.values()],
        "establishments": [[e.ident, e.uai, e.name] for e in tt.establishments.values()],
        "classes": [[c.ident, c.name, list(c.parts), list(c.establishments)] for c in tt.classes.values()],
        "groups": [[g.ident, g.name, list(g.classes), list(g.parts), list(g.students)] for g in tt.groups.values()],
        "rooms": [[r.ident, r.name] for r in tt.rooms.values()],
        "equipment": [[r.ident, r.name] for r in tt.equipment.values()],
        "students": [
            [
                s.ident,
                s.last_name,
                s.first_name,
                _d(s.birth_date),
                s.sex,
                s.pronote_id,
                s.cas_id,
                s.national_id,
                [[m.ident, _d(m.start), _d(m.end)] for m in s.classes],
                [[m.ident, _d(m.start), _d(m.end)] for m in s.parts],
            ]
            for s in tt.students.values()
        ],
        "slots": [
            [
                s.day,
                s.first_place,
                s.place_count,
                s.subject,
                s.cancelled_weeks,
                _refs_out(s.teachers),
                _refs_out(s.classes),
                _refs_out(s.parts),
                _refs_out(s.groups),
                _refs_out(s.rooms),
                _refs_out(s.equipment),
                _refs_out(s.students),
                _refs_out(s.staff),
            ]
            for s in tt.slots
        ],
    }


def _person_out(p: Person) -> list[Any]:
    return [p.ident, p.last_name, p.first_name, _d(p.birth_date), p.pronote_id, p.cas_id, p.sts_id]


def _person_in(r: list[Any]) -> Person:
    return Person(r[0], r[1], r[2], _pd(r[3]), r[4], r[5], r[6])


class ModelVersionError(ValueError):
    """The blob was written by another MODEL_VERSION."""


def from_jsonable(obj: dict[str, Any]) -> Timetable:
    if obj.get("model_version") != MODEL_VERSION:
        raise ModelVersionError(f"timetable model version {obj.get('model_version')!r}, expected {MODEL_VERSION}")
    y, g = obj["school_year"], obj["grid"]
    year = SchoolYear(date.fromisoformat(y[0]), date.fromisoformat(y[1]), date.fromisoformat(y[2]))
    grid = TimeGrid(g[0], g[1], tuple(g[2]), tuple([Place(*p) for p in g[3]]))
    return Timetable(
        uai=obj["uai"],
        format_version=obj["format_version"],
        school_year=year,
        grid=grid,
        subjects={r[0]: Subject(r[0], r[1], r[2]) for r in obj["subjects"]},
        teachers={r[0]: _person_in(r) for r in obj["teachers"]},
        staff={r[0]: _person_in(r) for r in obj["staff"]},
        establishments={r[0]: Establishment(r[0], r[1], r[2]) for r in obj["establishments"]},
        classes={r[0]: SchoolClass(r[0], r[1], tuple(r[2]), tuple(r[3])) for r in obj["classes"]},
        groups={r[0]: Group(r[0], r[1], tuple(r[2]), tuple(r[3]), tuple(r[4])) for r in obj["groups"]},
        rooms={r[0]: Room(r[0], r[1]) for r in obj["rooms"]},
        equipment={r[0]: Room(r[0], r[1]) for r in obj["equipment"]},
        students={
            r[0]: Student(
                r[0],
                r[1],
                r[2],
                _pd(r[3]),
                r[4],
                r[5],
                r[6],
                r[7],
                tuple([Membership(m[0], _pd(m[1]), _pd(m[2])) for m in r[8]]),
                tuple([Membership(m[0], _pd(m[1]), _pd(m[2])) for m in r[9]]),
            )
            for r in obj["students"]
        },
        slots=tuple(
            [
                Slot(
                    r[0],
                    r[1],
                    r[2],
                    r[3],
                    r[4],
                    _refs_in(r[5]),
                    _refs_in(r[6]),
                    _refs_in(r[7]),
                    _refs_in(r[8]),
                    _refs_in(r[9]),
                    _refs_in(r[10]),
                    _refs_in(r[11]),
                    _refs_in(r[12]),
                )
                for r in obj["slots"]
            ]
        ),
    )


def dumps(tt: Timetable) -> bytes:
    """Compact UTF-8 JSON of the model (the blob the validator stores)."""
    return json.dumps(to_jsonable(tt), ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def loads(data: bytes | str) -> Timetable:
    """Inverse of `dumps`; raises ModelVersionError for a blob of another model version."""
    return from_jsonable(json.loads(data))


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


def course_slot_weeks(tt: Timetable, course: Course) -> list[SlotWeeks]:
    """`sessions_for_course` column-wise, one `SlotWeeks` per slot that makes sessions (same rules, same
    order: slot by slot, weeks ascending); what the scheduler plans from without a tuple per session."""
    places = {p.number: p for p in tt.grid.places}
    year = tt.school_year
    group = course.kind == "group"
    target = course.target
    out: list[SlotWeeks] = []
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
        if not weeks:
            continue
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


# ----------------------------------------------------------------------------------------- sniff

SniffKind = Literal["clear", "encrypted", "unknown"]


@dataclass(frozen=True, slots=True)
class Sniff:
    kind: SniffKind
    uai: str | None = None  # root `UAI` attribute (clear) or `UAI` element (container)
    establishment_uais: list[str] = field(default_factory=list)  # Etablissements/Etablissement@Numero (clear)
    is_zip: bool = False
    member: str | None = None  # the XML member read inside a zip
    version: str | None = None  # `Version` (clear) or `VERSION` (container)
    software: str | None = None  # `LOGICIEL` (container)


SNIFF_MAX_BYTES = 256 * 1024 * 1024  # an encrypted container must be streamed up to its UAI, after CONTENU
SNIFF_MAX_MEMBERS = 1000
SNIFF_MAX_ZIP_RATIO = 200
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
_SECTIONS_AFTER_ESTABLISHMENTS = frozenset(["Classes", "Groupes", "Salles", "Materiels", "Eleves", "Cours"])


class _CappedReader:
    """File-like wrapper that stops (EOF) after `cap` bytes, so a parser never reads an unbounded stream."""

    def __init__(self, raw: IO[bytes], cap: int) -> None:
        self.raw, self.left = raw, cap

    def read(self, size: int = -1) -> bytes:
        if self.left <= 0:
            return b""
        n = self.left if size is None or size < 0 else min(size, self.left)
        data = self.raw.read(n)
        self.left -= len(data)
        return data


def _local(tag: object) -> str:
    if not isinstance(tag, str):
        return ""
    return tag.rsplit("}", 1)[-1]


def _looks_like_xml(head: bytes) -> bool:
    head = head.lstrip(b"\xef\xbb\xbf").lstrip()
    return head.startswith(b"<") or head.startswith(b"\xff\xfe<") or head.startswith(b"\xfe\xff\x00<")


def safe_iterparse(source: Any) -> Any:
    """The one way exports are parsed: streaming, no DTD, no entities, no network, no huge nodes."""
    from lxml import etree  # local: keeps `import shared.timetable` light for services that only read blobs

    return etree.iterparse(source, events=("start", "end"), resolve_entities=False, no_network=True,
                           load_dtd=False, huge_tree=False, remove_comments=True, remove_pis=True)


def _sniff_stream(raw: IO[bytes], cap: int, *, is_zip: bool, member: str | None) -> Sniff:
    unknown = Sniff("unknown", is_zip=is_zip, member=member)
    parser = safe_iterparse(_CappedReader(raw, cap))
    kind: SniffKind = "unknown"
    uai: str | None = None
    version: str | None = None
    software: str | None = None
    establishments: list[str] = []
    depth = 0
    try:
        for event, elem in parser:
            name = _local(elem.tag)
            if event == "start":
                depth += 1
                if depth == 1:
                    if elem.getroottree().docinfo.doctype:
                        return unknown  # no real export has a DOCTYPE: never go further with one
                    if name == CLEAR_ROOT:
                        kind, uai, version = "clear", elem.get("UAI"), elem.get("Version")
                    elif name == CONTAINER_ROOT:
                        kind = "encrypted"
                    else:
                        return unknown
                elif kind == "clear" and depth == 2 and name in _SECTIONS_AFTER_ESTABLISHMENTS:
                    break
                continue
            depth -= 1
            if kind == "clear":
                if name == "Etablissement" and depth == 2:
                    numero = elem.get("Numero")
                    if numero:
                        establishments.append(numero)
                elif name == "Etablissements" and depth == 1:
                    break
                if depth <= 1:
                    elem.clear()
            elif depth == 1:
                if name == "UAI":
                    uai = (elem.text or "").strip() or None
                    break
                if name == "VERSION":
                    version = (elem.text or "").strip()
                elif name == "LOGICIEL":
                    software = (elem.text or "").strip()
                elem.clear()  # CONTENU can be large: drop it as soon as it is read
    except Exception:  # garbage, truncated or hostile input: detection never raises
        if kind == "unknown" or (kind == "encrypted" and uai is None):
            return unknown
    return Sniff(kind, uai, establishments, is_zip, member, version, software)


def sniff_export(path: Path, *, max_bytes: int = SNIFF_MAX_BYTES) -> Sniff:
    """Cheap, safe detection of an export at deposit time: clear, encrypted or unknown; its UAI(s).

    Detects by content, not by name; reads a zip's single XML member in a stream; stops early (after
    `Etablissements`, or at the first section that follows it, or at the container's `UAI`); never raises."""
    try:
        with open(path, "rb") as fh:
            magic = fh.read(4)
            if magic in _ZIP_MAGIC:
                return _sniff_zip(path, max_bytes)
            if not _looks_like_xml(magic + fh.read(1020)):
                return Sniff("unknown")
            fh.seek(0)
            return _sniff_stream(fh, max_bytes, is_zip=False, member=None)
    except Exception:
        return Sniff("unknown")


def _sniff_zip(path: Path, max_bytes: int) -> Sniff:
    try:
        with zipfile.ZipFile(path) as zf:
            infos = [i for i in zf.infolist() if not i.is_dir()][:SNIFF_MAX_MEMBERS]
            xml_members = []
            for info in infos:
                if info.flag_bits & 0x1:  # encrypted member: not ours to open
                    continue
                ratio = info.file_size / max(info.compress_size, 1)
                if info.file_size > max_bytes or (ratio > SNIFF_MAX_ZIP_RATIO and info.file_size > 1024 * 1024):
                    return Sniff("unknown", is_zip=True)  # a zip bomb is nobody's export
                with zf.open(info) as member:
                    if _looks_like_xml(member.read(1024)):
                        xml_members.append(info)
            if len(xml_members) != 1:
                return Sniff("unknown", is_zip=True)
            info = xml_members[0]
            with zf.open(info) as member:
                return _sniff_stream(member, max_bytes, is_zip=True, member=info.filename)
    except Exception:
        return Sniff("unknown", is_zip=True)


# ------------------------------------------------------------------------- session keys and members
# (added with session generation, issue 4: pure helpers the scheduler and later stages share)


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
