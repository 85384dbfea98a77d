"""The blob form of a `Timetable`: `dumps` / `loads` (compact JSON rows, versioned by `MODEL_VERSION`).

`loads` also reads the previous version's blobs (version 1 rows carried a student's sex and national id,
a teacher's birth date and STS id): it drops those fields, so a stored baseline stays usable and what it
decodes to holds no more than a version 2 model (docs/privacy.md)."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

from shared.timetable.model import (
    MODEL_VERSION,
    Establishment,
    Group,
    Membership,
    Person,
    Place,
    Ref,
    Room,
    SchoolClass,
    SchoolYear,
    Slot,
    Student,
    Subject,
    TimeGrid,
    Timetable,
)

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
                s.pronote_id,
                s.cas_id,
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
    return [p.ident, p.last_name, p.first_name, p.pronote_id, p.cas_id]


def _person_in(r: list[Any]) -> Person:
    return Person(r[0], r[1], r[2], r[3], r[4])


def _person_in_v1(r: list[Any]) -> Person:
    return Person(r[0], r[1], r[2], r[4], r[5])  # r[3] birth date, r[6] STS id: dropped


def _memberships_in(rows: list[list[Any]]) -> tuple[Membership, ...]:
    return tuple([Membership(m[0], _pd(m[1]), _pd(m[2])) for m in rows])


def _student_in(r: list[Any]) -> Student:
    return Student(r[0], r[1], r[2], _pd(r[3]), r[4], r[5], _memberships_in(r[6]), _memberships_in(r[7]))


def _student_in_v1(r: list[Any]) -> Student:
    # r[4] sex and r[7] national id: dropped
    return Student(r[0], r[1], r[2], _pd(r[3]), r[5], r[6], _memberships_in(r[8]), _memberships_in(r[9]))


READABLE_VERSIONS = (1, MODEL_VERSION)


class ModelVersionError(ValueError):
    """The blob was written by another MODEL_VERSION."""


def from_jsonable(obj: dict[str, Any]) -> Timetable:
    version = obj.get("model_version")
    if version not in READABLE_VERSIONS:
        raise ModelVersionError(f"timetable model version {version!r}, expected one of {READABLE_VERSIONS}")
    person_in, student_in = (_person_in, _student_in) if version == MODEL_VERSION else (_person_in_v1, _student_in_v1)
    y, g = obj["school_year"], obj["grid"]
    year = SchoolYear(date.fromisoformat(y[0]), date.fromisoformat(y[1]), date.fromisoformat(y[2]))
    grid = TimeGrid(g[0], g[1], tuple(g[2]), tuple([Place(*p) for p in g[3]]))
    return Timetable(
        uai=obj["uai"],
        format_version=obj["format_version"],
        school_year=year,
        grid=grid,
        subjects={r[0]: Subject(r[0], r[1], r[2]) for r in obj["subjects"]},
        teachers={r[0]: person_in(r) for r in obj["teachers"]},
        staff={r[0]: person_in(r) for r in obj["staff"]},
        establishments={r[0]: Establishment(r[0], r[1], r[2]) for r in obj["establishments"]},
        classes={r[0]: SchoolClass(r[0], r[1], tuple(r[2]), tuple(r[3])) for r in obj["classes"]},
        groups={r[0]: Group(r[0], r[1], tuple(r[2]), tuple(r[3]), tuple(r[4])) for r in obj["groups"]},
        rooms={r[0]: Room(r[0], r[1]) for r in obj["rooms"]},
        equipment={r[0]: Room(r[0], r[1]) for r in obj["equipment"]},
        students={r[0]: student_in(r) for r in obj["students"]},
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
    """Inverse of `dumps` (and reads version 1 blobs); raises ModelVersionError for any other version."""
    return from_jsonable(json.loads(data))


def person_row_prefix(ident: str, last_name: str, first_name: str) -> bytes:
    """How a teacher's or student's row starts in a blob (`dumps`, versions 1 and 2): a cheap test of
    whether a stored model holds a person, without decoding it."""
    return json.dumps([ident, last_name, first_name], ensure_ascii=False, separators=(",", ":"))[:-1].encode("utf-8")
