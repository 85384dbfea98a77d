"""What the results routes show beside the timetable's idents (pure, no I/O): the display names of an
establishment's integrated timetable, a session's `names`, and the check that turns a filter value no
timetable knows into a clear answer (which ident a name belongs to, which values exist).

An `EstablishmentView` is built once per integrated import (its `import_id` is the cache key of the routes:
the next import of the establishment makes a new one)."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

# Which names dictionary each filter's idents live in (scheduler_establishments.names).
FILTER_KINDS: dict[str, tuple[str, ...]] = {
    "class": ("classes",), "group": ("groups",), "teacher": ("teachers",), "staff": ("staff",),
    "student": ("students",), "person": ("teachers", "staff", "students"),
}
PERSON_PREFIX = {"teachers": "teacher", "staff": "staff", "students": "student"}
HINT_LIMIT = 20  # known values listed in a 422


def fold(text: str) -> str:
    """Case, accents and spacing do not matter when a name is looked up."""
    decomposed = unicodedata.normalize("NFKD", text)
    return " ".join("".join(c for c in decomposed if not unicodedata.combining(c)).casefold().split())


@dataclass(frozen=True)
class EstablishmentView:
    import_id: str
    updated_at: datetime
    names: Mapping[str, Mapping[str, str]]  # {"teachers": {ident: name}, "rooms": …, "subjects": …}
    courses: Mapping[str, tuple[str, str]]  # course key → (label, subject ident)
    _by_name: dict[str, dict[str, list[str]]] = field(default_factory=dict, compare=False, repr=False)

    @property
    def version(self) -> str:
        """What every cached view of the establishment depends on: its last import, and any later change to
        what it holds (an erasure of a person)."""
        return f"{self.import_id}.{int(self.updated_at.timestamp() * 1000)}"

    def name(self, kind: str, ident: str) -> str:
        """The display name of an ident (the ident itself when the timetable names it nowhere)."""
        return self.names.get(kind, {}).get(ident) or ident

    def course_label(self, key: str) -> str:
        return self.courses.get(key, (key, ""))[0]

    def session_names(self, row: Any) -> dict[str, Any]:
        """`names` of a session (design.md §5): display names, in the same order as the ids."""
        label, subject = self.courses.get(row.course, (row.course, ""))
        n = self.names
        rooms, teachers, classes, groups = (n.get(k, {}) for k in ("rooms", "teachers", "classes", "groups"))
        return {"course": label, "subject": n.get("subjects", {}).get(subject, subject),
                "rooms": [rooms.get(i, i) for i in row.rooms], "teachers": [teachers.get(i, i) for i in row.teachers],
                "classes": [classes.get(i, i) for i in row.classes], "groups": [groups.get(i, i) for i in row.groups]}

    def knows(self, kind: str, ident: str) -> bool:
        return ident in self.names.get(kind, {})

    def idents_named(self, kind: str, text: str) -> list[str]:
        """The idents of `kind` whose display name is `text` (folded)."""
        index = self._by_name.get(kind)
        if index is None:
            index = {}
            for ident, name in self.names.get(kind, {}).items():
                index.setdefault(fold(name), []).append(ident)
            self._by_name[kind] = index
        return sorted(index.get(fold(text), []))


def view_of(import_id: str, updated_at: datetime, names: Mapping[str, Mapping[str, str]],
            courses: Iterable[tuple[str, str, str]]) -> EstablishmentView:
    """`courses`: (key, label, subject ident) of every stored course."""
    return EstablishmentView(import_id, updated_at, names, {k: (label, subject) for k, label, subject in courses})


@dataclass
class UnknownValue:
    """A filter value the establishment's timetable does not know: what to tell the client."""

    parameter: str
    value: str
    detail: str
    matches: list[dict[str, str]]  # the idents whose name is the value given
    known: list[dict[str, str]]  # some values that exist, by name
    known_total: int


def _entry(view: EstablishmentView, kind: str, ident: str, *, prefixed: bool) -> dict[str, str]:
    value = f"{PERSON_PREFIX[kind]}:{ident}" if prefixed else ident
    return {"id": value, "name": view.name(kind, ident)}


def unknown_value(view: EstablishmentView | None, parameter: str, kind: str, ident: str,
                  given: str) -> UnknownValue | None:
    """None when `ident` is a known value of the filter (`kind` as in FILTER_KINDS; `given` the raw value).

    Filters take idents, not names: a value that is the name of something says which ident it is
    (`?class=6A` → « 6A is the name of class 12 »); otherwise the answer lists known values."""
    if view is None:
        return UnknownValue(parameter, given, f"{parameter}={given!r}: this establishment has no integrated "
                            "timetable yet, so no value is known", [], [], 0)
    kinds = FILTER_KINDS[kind]
    if any(view.knows(k, ident) for k in kinds):
        return None
    prefixed = parameter == "person"
    matches = [_entry(view, k, i, prefixed=prefixed) for k in kinds for i in view.idents_named(k, ident)]
    pool = [(view.name(k, i), k, i) for k in kinds for i in view.names.get(k, {})]
    pool.sort(key=lambda t: (fold(t[0]), t[2]))
    known = [_entry(view, k, i, prefixed=prefixed) for _, k, i in pool[:HINT_LIMIT]]
    what = {"class": "class", "group": "group", "person": "person"}.get(parameter, kind)
    if matches:
        idents = ", ".join(repr(m["id"]) for m in matches)
        detail = (f"{parameter} takes an ident, not a name: {given!r} is the name of {what} {idents}; "
                  f"ask for {parameter}={matches[0]['id']}")
    else:
        detail = (f"{parameter}={given!r}: no {what} of this establishment has that ident "
                  f"({len(pool)} known, see `known`)")
    return UnknownValue(parameter, given, detail, matches, known, len(pool))


def unknown_course(view: EstablishmentView | None, key: str) -> UnknownValue | None:
    """`course` takes a course key (`GET …/courses`); a course label says which key it is."""
    if view is None:
        return UnknownValue("course", key, f"course={key!r}: this establishment has no integrated timetable "
                            "yet, so no course is known", [], [], 0)
    if key in view.courses:
        return None
    wanted = fold(key)
    matches = [{"id": k, "name": label} for k, (label, _) in sorted(view.courses.items()) if fold(label) == wanted]
    pool = sorted(view.courses.items(), key=lambda kv: (fold(kv[1][0]), kv[0]))
    known = [{"id": k, "name": label} for k, (label, _) in pool[:HINT_LIMIT]]
    if matches:
        detail = (f"course takes a course key, not a label: {key!r} is the label of "
                  f"{', '.join(repr(m['id']) for m in matches)}; ask for course={matches[0]['id']}")
    else:
        detail = f"course={key!r}: no course of this establishment has that key ({len(pool)} known, see `known`)"
    return UnknownValue("course", key, detail, matches, known, len(pool))


class FeedCache:
    """The last feeds built, by what they show (site, establishment, kind, ident, bounds) and the import
    they were built from: an entry of an older import is never served (the next import of the
    establishment invalidates its feeds). Least recently used first out, within `max_bytes`."""

    def __init__(self, max_bytes: int = 32 * 1024 * 1024) -> None:
        self.max_bytes = max_bytes
        self._entries: dict[tuple[Any, ...], tuple[str, bytes]] = {}
        self._bytes = 0

    def get(self, key: tuple[Any, ...], version: str) -> bytes | None:
        entry = self._entries.pop(key, None)
        if entry is None:
            return None
        if entry[0] != version:
            self._bytes -= len(entry[1])
            return None
        self._entries[key] = entry  # most recently used last
        return entry[1]

    def put(self, key: tuple[Any, ...], version: str, body: bytes) -> None:
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= len(old[1])
        if len(body) > self.max_bytes:
            return
        self._entries[key] = (version, body)
        self._bytes += len(body)
        while self._bytes > self.max_bytes:
            oldest = next(iter(self._entries))
            self._bytes -= len(self._entries.pop(oldest)[1])

    def __len__(self) -> int:
        return len(self._entries)
