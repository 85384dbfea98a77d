"""A school's ENT directory and its IdPN export, as a real ENT holds them beside a timetable export.

`make_directory(tt)` returns the body of `PUT …/directory` (JSON, design.md §5) and the IdPN associations of
`POST …/pronote-ids`: every teacher, staff member and student of the timetable except a share left out
(`missing`, the newcomers the ENT does not know yet), with ENT ids of its own, names spelt as an ENT spells
them (upper-case last names, accents sometimes dropped), plus `unrelated` persons who are not in the file
(other levels, former students, parents' accounts of staff…). Half of the people present (`idpn_share`) get
an IdPN association; the others are found by name. The ENT's classes and groups carry the file's names.
Same timetable and seed ⇒ same directory.
"""

from __future__ import annotations

import random
import unicodedata
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from shared.timetable import Timetable
from tests.factory.names import FIRST_NAMES_F, FIRST_NAMES_M, LAST_NAMES


@dataclass
class GeneratedDirectory:
    body: dict[str, Any]  # PUT …/directory JSON
    associations: list[dict[str, str]]  # POST …/pronote-ids JSON: [{pronote_id, ent_id}]
    missing: dict[str, list[str]] = field(default_factory=dict)  # kind → file idents left out

    @property
    def size(self) -> int:
        return len(self.body["persons"])


def _ascii(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def make_directory(tt: Timetable, *, seed: int = 1, missing: float = 0.02, idpn_share: float = 0.5,
                   unrelated: int = 3000) -> GeneratedDirectory:
    rng = random.Random(f"edt-directory:{tt.uai}:{seed}")
    persons: list[dict[str, Any]] = []
    associations: list[dict[str, str]] = []
    left_out: dict[str, list[str]] = {"teachers": [], "staff": [], "students": []}
    counter = iter(range(100_000, 10_000_000))

    def spell(last: str, first: str) -> tuple[str, str]:
        last = last.upper()
        if rng.random() < 0.3:  # many ENTs store names without accents
            last, first = _ascii(last), _ascii(first)
        return last, first

    people: list[tuple[str, str, Any]] = [("teacher", "teachers", p) for p in tt.teachers.values()]
    people += [("staff", "staff", p) for p in tt.staff.values()]
    people += [("student", "students", s) for s in tt.students.values()]
    for kind, group, person in people:
        if rng.random() < missing:
            left_out[group].append(person.ident)
            continue
        ent_id = f"ENT{next(counter)}"
        last, first = spell(person.last_name, person.first_name)
        entry: dict[str, Any] = {"id": ent_id, "kind": kind, "last_name": last, "first_name": first}
        if kind == "student" and person.birth_date is not None:
            entry["birth_date"] = person.birth_date.isoformat()
        persons.append(entry)
        if person.pronote_id and rng.random() < idpn_share:
            associations.append({"pronote_id": person.pronote_id, "ent_id": ent_id})
    born = date(tt.school_year.start.year - 18, 1, 1)
    for _ in range(unrelated):
        kind = rng.choice(("student", "student", "student", "teacher", "staff"))
        female = rng.random() < 0.5
        last = rng.choice(LAST_NAMES)
        if rng.random() < 0.5:
            last = f"{last}-{rng.choice(LAST_NAMES)}"
        first = rng.choice(FIRST_NAMES_F if female else FIRST_NAMES_M)
        entry = {"id": f"ENT{next(counter)}", "kind": kind, "last_name": last.upper(), "first_name": first}
        if kind == "student":
            entry["birth_date"] = (born + timedelta(days=rng.randrange(3650))).isoformat()
        persons.append(entry)
    rng.shuffle(persons)
    classes = [{"id": f"CLS{c.ident}", "name": c.name} for c in tt.classes.values()]
    groups = [{"id": f"GRP{g.ident}", "name": g.name} for g in tt.groups.values()]
    return GeneratedDirectory({"persons": persons, "classes": classes, "groups": groups}, associations, left_out)
