"""Synthetic Index Education exports (design.md §8, §8a) for tests and benchmarks.

`make_school(size, seed)` builds a realistic school as the canonical model it *means* (`.timetable`),
and writes it in the real format (`.to_xml_bytes()`, `.encrypt(...)`, `.zip(...)`): a parser is right
when it reads back exactly `.timetable`. Sizes: XS 60 students (fast unit tests), S 400, M 800, L 2,000,
XL a 3,500-student cité scolaire with two establishments. Same size + seed ⇒ same school, byte for byte
(except the random AES key of an encrypted copy). `changes=K` makes the follow-up export of the same
school with K % of its courses changed, and lists them in `.changed_courses`.

The shapes real files carry are all there: parts of class, groups across classes, student-list groups,
options, alternating weeks (two classes on one slot), holidays (weeks without bits), cancellations
(SemainesAnnulation), substitute teachers and room changes (per-resource weeks), a slot naming only
parts (no course), a slot naming a group and a class (course for the group only), a slot with a subject
only, empty birth dates, IdPN spelt both ways, homonyms, French names with accents and hyphens,
Responsables, and a section the parser does not know (Etiquettes).
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import random
import zipfile
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from pathlib import Path

from shared.timetable import (
    CLEAR_NAMESPACE,
    CONTAINER_NAMESPACE,
    ClosurePeriod,
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
    derive_courses,
    iter_weeks,
    slot_targets,
    weeks_bitmap,
)
from tests.factory.names import FIRST_NAMES_F, FIRST_NAMES_M, LAST_NAMES

Extras = dict[tuple[str, str], dict[str, object]]

SIZES: dict[str, list[tuple[str, int]]] = {
    # establishment kind, students
    "XS": [("college", 60)],
    "S": [("college", 400)],
    "M": [("college", 800)],
    "L": [("lycee", 2000)],
    "XL": [("college", 1500), ("lycee", 2000)],
    "XS2": [("college", 40), ("lycee", 40)],  # a tiny cité scolaire for fast pipeline tests
}
DEFAULT_SOFTWARE = "PRONOTE Monoposte-PRONOTE 2024 - 2024.0.2.7"
FORMAT_VERSION = "1.1"

SUBJECTS: dict[str, str] = {
    "FRANC": "FRANCAIS",
    "MATHS": "MATHEMATIQUES",
    "HIGEO": "HISTOIRE & GEOGRAPH.",
    "AGL1": "ANGLAIS LV1",
    "ALL2": "ALLEMAND LV2",
    "ESP2": "ESPAGNOL LV2",
    "SVT": "SCIENCES VIE & TERRE",
    "PH-CH": "PHYSIQUE-CHIMIE",
    "TECHN": "TECHNOLOGIE",
    "EPS": "ED.PHYSIQUE & SPORT.",
    "A-PLA": "ARTS PLASTIQUES",
    "EDMUS": "EDUCATION MUSICALE",
    "VICLA": "VIE DE CLASSE",
    "LATIN": "LATIN",
    "AP": "ACCOMPAGNEMT. PERSO.",
    "SES": "SC. ECONO.& SOCIALES",
    "PHILO": "PHILOSOPHIE",
    "NSI": "NUMERIQUE SC.INFORM.",
    "EMC": "ENS. MORAL & CIVIQUE",
    "SNT": "SC. NUMERIQUES TECHNOL.",
    "CHORA": "CHORALE",
    "SPE-M": "SPECIALITE MATHS",
    "SPE-P": "SPECIALITE PHYS-CHIM",
    "ORIEN": "HEURES VIE ORIENTATION",
}

# (subject, shape, slots a week, places a slot). Shapes: class; alt (two classes alternate weeks on one
# slot); halves (two one-part groups "6A G1"/"6A G2"); parts (two slots naming only a part: no course);
# lv2 (ALL2/ESP2 groups over a pair of classes); latin (group over the level); option:<PART> (group of
# one option part over blocks of up to 4 classes); ap (student-list group over a pair of classes).
PLANS: dict[str, list[tuple[str, str, int, int]]] = {
    "6": [
        ("FRANC", "class", 4, 1),
        ("MATHS", "class", 4, 1),
        ("HIGEO", "class", 3, 1),
        ("AGL1", "class", 3, 1),
        ("SVT", "halves", 1, 1),
        ("TECHN", "class", 1, 1),
        ("EPS", "class", 2, 2),
        ("A-PLA", "class", 1, 1),
        ("EDMUS", "class", 1, 1),
        ("VICLA", "alt", 1, 1),
        ("AP", "ap", 1, 1),
    ],
    "5": [
        ("FRANC", "class", 4, 1),
        ("MATHS", "class", 4, 1),
        ("HIGEO", "class", 3, 1),
        ("AGL1", "class", 3, 1),
        ("ALL2", "lv2", 2, 1),
        ("SVT", "halves", 1, 1),
        ("PH-CH", "parts", 1, 1),
        ("TECHN", "class", 1, 1),
        ("EPS", "class", 2, 2),
        ("A-PLA", "alt", 1, 1),
        ("EDMUS", "class", 1, 1),
        ("LATIN", "latin", 1, 2),
        ("VICLA", "alt", 1, 1),
    ],
    "4": [
        ("FRANC", "class", 4, 1),
        ("MATHS", "class", 3, 1),
        ("HIGEO", "class", 3, 1),
        ("AGL1", "class", 3, 1),
        ("ALL2", "lv2", 2, 1),
        ("SVT", "halves", 1, 1),
        ("PH-CH", "parts", 1, 1),
        ("TECHN", "class", 1, 1),
        ("EPS", "class", 2, 2),
        ("A-PLA", "class", 1, 1),
        ("EDMUS", "alt", 1, 1),
        ("LATIN", "latin", 1, 2),
        ("VICLA", "alt", 1, 1),
    ],
    "3": [
        ("FRANC", "class", 4, 1),
        ("MATHS", "class", 4, 1),
        ("HIGEO", "class", 3, 1),
        ("AGL1", "class", 3, 1),
        ("ALL2", "lv2", 2, 1),
        ("SVT", "halves", 1, 1),
        ("PH-CH", "parts", 1, 1),
        ("TECHN", "class", 1, 1),
        ("EPS", "class", 1, 2),
        ("A-PLA", "alt", 1, 1),
        ("EDMUS", "class", 1, 1),
        ("LATIN", "latin", 1, 2),
        ("VICLA", "alt", 1, 1),
    ],
    "2DE": [
        ("FRANC", "class", 4, 1),
        ("MATHS", "class", 4, 1),
        ("HIGEO", "class", 3, 1),
        ("AGL1", "class", 3, 1),
        ("ALL2", "lv2", 2, 1),
        ("PH-CH", "class", 2, 1),
        ("PH-CH", "parts", 1, 1),
        ("SVT", "halves", 1, 1),
        ("SES", "class", 1, 1),
        ("SNT", "halves", 1, 1),
        ("EPS", "class", 1, 2),
        ("EMC", "alt", 1, 1),
        ("ORIEN", "class", 1, 1),
    ],
    "1G": [
        ("FRANC", "class", 4, 1),
        ("HIGEO", "class", 3, 1),
        ("AGL1", "class", 2, 1),
        ("ALL2", "lv2", 2, 1),
        ("EPS", "class", 1, 2),
        ("EMC", "alt", 1, 1),
        ("SPE-M", "option:SPM", 2, 2),
        ("SPE-P", "option:SPP", 2, 2),
        ("SES", "option:SES", 2, 2),
        ("NSI", "option:NSI", 1, 2),
    ],
    "TG": [
        ("PHILO", "class", 4, 1),
        ("HIGEO", "class", 3, 1),
        ("AGL1", "class", 2, 1),
        ("ALL2", "lv2", 2, 1),
        ("EPS", "class", 1, 2),
        ("EMC", "alt", 1, 1),
        ("SPE-M", "option:SPM", 3, 2),
        ("SPE-P", "option:SPP", 3, 2),
        ("SES", "option:SES", 3, 2),
    ],
}
LEVELS = {"college": ["6", "5", "4", "3"], "lycee": ["2DE", "1G", "TG"]}
CLASS_SIZE = {"college": 25, "lycee": 32}
# School weeks (1-based from week 1 = the first week of September) that are holidays; weeks 45–52 are summer.
HOLIDAY_WEEKS = (8, 9, 17, 18, 24, 25, 32, 33)
LAST_TEACHING_WEEK = 44
LUNCH_PLACE = 4  # 12:00 — left free
WEDNESDAY = 3
CHANGE_DATE_WEEK = 19  # students changing class do so at the start of this week
OPTIONS = ("SPM", "SPP", "SES", "NSI")
_XSD_BASE = "http://telechargement.index-education.com/export/"
_IDPN_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
_UAI_KEYS = "ABCDEFGHJKLMNPRSTUVWXYZ"


def uai_for(digits: str) -> str:
    """A well-formed UAI: 7 digits and the check letter."""
    return digits + _UAI_KEYS[int(digits) % 23]


# ------------------------------------------------------------------------------------------ result


@dataclass
class GeneratedSchool:
    size: str
    seed: int
    timetable: Timetable  # what the file means: the parser must read back exactly this
    establishment_name: str
    software: str = DEFAULT_SOFTWARE
    changed_courses: list[str] = field(default_factory=list)  # course keys changed by `changes=K`
    holidays: list[ClosurePeriod] = field(default_factory=list)  # the closure periods the file implies
    newer: bool = False  # written with the constructs newer exports add (see `make_school`)
    # What the file carries about people beyond the model (sex, national id, teachers' birth dates and STS
    # ids): real exports have it, the parser must not keep it.
    extras: Extras = field(default_factory=dict)

    def to_xml_bytes(self) -> bytes:
        return to_xml(self.timetable, newer=self.newer, extras=self.extras)

    def encrypt(self, public_key_pem: bytes, partner: str, **kwargs: object) -> bytes:
        """The encrypted `EXPORT_INDEX_EDUCATION` container of this school (see `encrypt_export`)."""
        kwargs.setdefault("software", self.software)
        kwargs.setdefault("establishment_name", self.establishment_name)
        return encrypt_export(self.to_xml_bytes(), public_key_pem, partner, uai=self.timetable.uai, **kwargs)  # type: ignore[arg-type]

    def zip(self, data: bytes | None = None, name: str | None = None, extra: dict[str, bytes] | None = None) -> bytes:
        """A zip holding the export (clear XML by default), named as EDT names it."""
        payload = self.to_xml_bytes() if data is None else data
        return zip_export(payload, name or f"EDT_To_KOSMOS_{self.timetable.uai}.xml", extra)


# -------------------------------------------------------------------------------------- generation


class _Builder:
    def __init__(self, size: str, seed: int, uai: str | Sequence[str] | None, year: int, newer: bool) -> None:
        if size not in SIZES:
            raise ValueError(f"unknown size {size!r}; expected one of {', '.join(SIZES)}")
        self.size, self.seed, self.newer = size, seed, newer
        self.rng = random.Random(f"edt-factory:{size}:{seed}")
        rng = self.rng
        self.year = year
        start = date(year, 9, 2)
        while start.weekday() > 1:  # rentrée on a Monday or a Tuesday
            start += timedelta(days=1)
        week1 = start - timedelta(days=start.weekday())
        self.school_year = SchoolYear(start, date(year + 1, 8, 31), week1)
        self.open_weeks = [w for w in range(1, LAST_TEACHING_WEEK + 1) if w not in HOLIDAY_WEEKS]
        self.full = weeks_bitmap(self.open_weeks)
        self.week_a = weeks_bitmap(self.open_weeks[0::2])
        self.week_b = weeks_bitmap(self.open_weeks[1::2])
        places = tuple(Place(i, (8 + i) * 60, (8 + i) * 60 + 55) for i in range(10))
        self.grid = TimeGrid(10, 55, (1, 2, 3, 4, 5), places)
        dept = rng.choice(["049", "075", "013", "069", "033", "059", "076", "035"])
        kinds = SIZES[size]
        wanted = [uai] if isinstance(uai, str) else list(uai or [])
        self.uais = [
            wanted[i].upper() if i < len(wanted) else uai_for(dept + f"{rng.randint(0, 9999):04d}")
            for i in range(len(kinds))
        ]
        self.counters: dict[str, int] = {}
        self.subjects: dict[str, Subject] = {}
        self.subject_by_code: dict[str, str] = {}
        self.teachers: dict[str, Person] = {}
        self.staff: dict[str, Person] = {}
        self.establishments: dict[str, Establishment] = {}
        self.classes: dict[str, SchoolClass] = {}
        self.groups: dict[str, Group] = {}
        self.rooms: dict[str, Room] = {}
        self.equipment: dict[str, Room] = {}
        self.students: dict[str, Student] = {}
        self.extras: Extras = {}
        self.slots: list[Slot] = []
        self.busy: dict[str, set[tuple[int, int]]] = {}  # class ident → (day, place) taken
        self.teacher_busy: dict[str, set[tuple[int, int]]] = {}
        self.pools: dict[tuple[int, str], list[str]] = {}
        self.pool_next: dict[tuple[int, str], int] = {}
        self.assigned: dict[tuple[str, str], str] = {}
        self.room_pools: dict[str, list[str]] = {}
        self.names = "COLLEGE" if kinds[0][0] == "college" else "LYCEE"
        self.establishment_name = ""

    # ------------------------------------------------------------ idents and names
    def ident(self, kind: str, start: int = 1) -> str:
        n = self.counters.get(kind, start - 1) + self.rng.choice((1, 1, 1, 2, 3))
        self.counters[kind] = n
        return str(n)

    def person_name(self) -> tuple[str, str, str]:
        rng = self.rng
        sex = rng.choice(("Masculin", "Feminin"))
        first = rng.choice(FIRST_NAMES_M if sex == "Masculin" else FIRST_NAMES_F)
        last = rng.choice(LAST_NAMES)
        if rng.random() < 0.35:  # double names keep accidental homonyms as rare as in real schools
            last = f"{last}-{rng.choice(LAST_NAMES)}"
        return last, first, sex

    def idpn(self) -> str:
        return "".join(self.rng.choice(_IDPN_ALPHABET) for _ in range(16))

    def subject(self, code: str) -> str:
        ident = self.subject_by_code.get(code)
        if ident is None:
            ident = self.ident("subject", 2)
            self.subject_by_code[code] = ident
            self.subjects[ident] = Subject(ident, code, SUBJECTS[code])
        return ident

    def room(self, kind: str, name_fmt: str, count: int) -> str:
        pool = self.room_pools.get(kind)
        if pool is None:
            pool = []
            for i in range(count):
                ident = self.ident("room", 15500)
                self.rooms[ident] = Room(ident, name_fmt.format(i + 1))
                pool.append(ident)
            self.room_pools[kind] = pool
        return self.rng.choice(pool)

    def room_for(self, code: str, n_classes: int) -> str:
        if code == "EPS":
            return self.room("eps", "GYMNASE {}", max(2, n_classes // 10))
        if code in ("SVT", "PH-CH", "SPE-P"):
            return self.room("lab", "LABO {}", max(2, n_classes // 6))
        if code in ("NSI", "SNT", "TECHN"):
            return self.room("info", "SALLE INFO {}", max(1, n_classes // 12))
        if code in ("EDMUS", "CHORA"):
            return self.room("music", "SALLE MUSIQUE {}", 1)
        if code == "A-PLA":
            return self.room("arts", "ARTS PLA. {}", 1)
        return self.room("general", "S{}", max(4, n_classes + n_classes // 3))

    def teacher(self, est: int, code: str, holder: str, pool_size: int) -> str:
        key = (holder, code)
        if key in self.assigned:
            return self.assigned[key]
        pool_key = (est, code)
        pool = self.pools.get(pool_key)
        if pool is None:
            pool = [self.new_teacher() for _ in range(max(1, pool_size))]
            self.pools[pool_key] = pool
        i = self.pool_next.get(pool_key, 0)
        self.pool_next[pool_key] = i + 1
        ident = pool[i % len(pool)]
        self.assigned[key] = ident
        return ident

    def new_teacher(self) -> str:
        rng = self.rng
        ident = self.ident("teacher", 2)
        last, first, _ = self.person_name()
        birth = date(rng.randint(1960, 1998), rng.randint(1, 12), rng.randint(1, 28)) if rng.random() < 0.5 else None
        pronote = self.idpn() if rng.random() < 0.92 else None
        cas = f"cas{rng.randint(10000, 99999)}" if rng.random() < 0.2 else None
        sts = str(rng.randint(1000, 99999)) if rng.random() < 0.3 else None
        self.teachers[ident] = Person(ident, last, first, pronote, cas)
        self.extras[("Professeur", ident)] = {"DateNaissance": birth, "IDSTS": sts}  # in the file, never in the model
        return ident

    # ------------------------------------------------------------ scheduling
    def allowed(self, places: int) -> list[tuple[int, int]]:
        out = []
        for day in self.grid.days:
            last_place = 3 if day == WEDNESDAY else 9
            for p in range(0, last_place - places + 2):
                span = range(p, p + places)
                if LUNCH_PLACE in span:
                    continue
                out.append((day, p))
        return out

    def place(self, classes: Iterable[str], teachers: Iterable[str], places: int) -> tuple[int, int]:
        classes, teachers = list(classes), list(teachers)
        candidates = self.allowed(places)
        self.rng.shuffle(candidates)
        chosen = None
        for day, p in candidates:
            cells = [(day, q) for q in range(p, p + places)]
            if all(c not in self.busy.setdefault(k, set()) for k in classes for c in cells) and all(
                c not in self.teacher_busy.setdefault(t, set()) for t in teachers for c in cells
            ):
                chosen = (day, p)
                break
        if chosen is None:  # a full grid: overlap rather than fail (nothing checks clashes)
            chosen = candidates[0]
        day, p = chosen
        for q in range(p, p + places):
            for k in classes:
                self.busy.setdefault(k, set()).add((day, q))
            for t in teachers:
                self.teacher_busy.setdefault(t, set()).add((day, q))
        return chosen

    def weeks_and_cancel(self, base: int) -> tuple[int, int]:
        rng = self.rng
        cancelled = 0
        if rng.random() < 0.03 and self.newer:  # SemainesAnnulation is not in the 1.1 schema
            for w in rng.sample(list(iter_weeks(base)) or [1], k=min(2, max(1, len(list(iter_weeks(base)))))):
                cancelled |= 1 << w
        return base, cancelled

    def add_slot(
        self,
        code: str,
        places: int,
        *,
        teachers: list[str],
        classes: Sequence[tuple[str, int]] = (),
        parts: Sequence[tuple[str, int]] = (),
        groups: Sequence[tuple[str, int]] = (),
        occupy: list[str],
        weeks: int | None = None,
        room: str | None = None,
        n_classes: int = 10,
        staff: Sequence[tuple[str, int]] = (),
        equipment: Sequence[tuple[str, int]] = (),
    ) -> None:
        rng = self.rng
        base = self.full if weeks is None else weeks
        base, cancelled = self.weeks_and_cancel(base)
        day, first = self.place(occupy, teachers, places)
        teacher_refs = [Ref(t, base) for t in teachers]
        if teachers and rng.random() < 0.02:  # a substitute for three weeks
            sub_weeks = weeks_bitmap(self.open_weeks[rng.randint(5, 25) :][:3]) & base
            substitute = self.new_teacher()
            teacher_refs = [Ref(teachers[0], base & ~sub_weeks), Ref(substitute, sub_weeks)] + teacher_refs[1:]
        room_refs: list[Ref] = []
        if room is None:
            room = self.room_for(code, n_classes)
        if room:
            if rng.random() < 0.02:  # moved to another room for a few weeks
                moved = weeks_bitmap(self.open_weeks[rng.randint(0, 30) :][:4]) & base
                other = self.room_for("", n_classes)
                room_refs = [Ref(room, base & ~moved), Ref(other, moved)]
            else:
                room_refs = [Ref(room, base)]
        self.slots.append(
            Slot(
                day,
                first,
                places,
                self.subject(code),
                cancelled,
                tuple(teacher_refs),
                tuple(Ref(i, w) for i, w in classes),
                tuple(Ref(i, w) for i, w in parts),
                tuple(Ref(i, w) for i, w in groups),
                tuple(room_refs),
                tuple(Ref(i, w) for i, w in equipment),
                (),
                tuple(Ref(i, w) for i, w in staff),
            )
        )

    # ------------------------------------------------------------ school
    def build(self) -> Timetable:
        rng = self.rng
        kinds = SIZES[self.size]
        multi = len(kinds) > 1
        # a cité scolaire shares its name and town between its establishments
        town = rng.choice(["ANGERS", "NANTES", "LYON", "MARSEILLE", "ROUEN", "LILLE", "RENNES", "BORDEAUX"])
        who = rng.choice(
            [
                "JEAN MOULIN",
                "MARIE CURIE",
                "VICTOR HUGO",
                "JULES FERRY",
                "SIMONE VEIL",
                "JOACHIM DU BELLAY",
                "GEORGES-POMPIDOU",
                "ANNE-FRANK",
            ]
        )
        for e in range(len(kinds)):
            kind = kinds[e][0]
            ident = self.ident("establishment")
            name = f"{'COLLEGE' if kind == 'college' else 'LYCEE'} {who} {town}"
            self.establishments[ident] = Establishment(ident, self.uais[e], name)
        self.establishment_name = next(iter(self.establishments.values())).name
        for ident in ("cpe1", "cpe2", "doc", "aed1", "aed2", "aed3") if self.newer else ():  # Personnels: newer
            last, first, _ = self.person_name()
            sid = self.ident("staff")
            self.staff[sid] = Person(sid, last, first, self.idpn() if ident != "aed3" else None)
        est_idents = list(self.establishments)
        for e, (kind, n_students) in enumerate(kinds):
            self.build_establishment(e, est_idents[e] if multi else None, kind, n_students)
        self.oddities()
        return Timetable(
            uai=self.uais[0],
            format_version=FORMAT_VERSION,
            school_year=self.school_year,
            grid=self.grid,
            subjects=self.subjects,
            teachers=self.teachers,
            staff=self.staff,
            establishments=self.establishments if multi else {},
            classes=self.classes,
            groups=self.groups,
            rooms=self.rooms,
            equipment=self.equipment,
            students=self.students,
            slots=tuple(self.slots),
        )

    def build_establishment(self, e: int, est_ident: str | None, kind: str, n_students: int) -> None:
        rng = self.rng
        levels = LEVELS[kind]
        n_classes = max(len(levels), round(n_students / CLASS_SIZE[kind]))
        per_level = [n_classes // len(levels) + (1 if i < n_classes % len(levels) else 0) for i in range(len(levels))]
        level_classes: dict[str, list[str]] = {}
        part_of: dict[tuple[str, str], str] = {}  # (class ident, part label) → part ident
        for level, count in zip(levels, per_level, strict=True):
            for i in range(count):
                name = f"{level}{chr(65 + i)}" if kind == "college" else f"{level}{i + 1}"
                ident = self.ident("class", 2)
                labels = ["G1", "G2"]
                if any(s == "lv2" for _, s, _, _ in PLANS[level]):
                    labels += ["ALL", "ESP"]
                if any(s == "latin" for _, s, _, _ in PLANS[level]):
                    labels += ["LAT"]
                labels += [o for o in OPTIONS if any(s == f"option:{o}" for _, s, _, _ in PLANS[level])]
                parts = []
                for label in labels:
                    pid = self.ident("part", 10)
                    part_of[(ident, label)] = pid
                    parts.append(pid)
                self.classes[ident] = SchoolClass(ident, name, tuple(parts), (est_ident,) if est_ident else ())
                level_classes.setdefault(level, []).append(ident)
        all_classes = [c for cs in level_classes.values() for c in cs]
        # students, spread over the classes
        student_parts: dict[str, list[str]] = {}  # student → part labels
        class_students: dict[str, list[str]] = {c: [] for c in all_classes}
        y = self.school_year
        for k in range(n_students):
            cls = all_classes[k % len(all_classes)]
            level = next(lv for lv, cs in level_classes.items() if cls in cs)
            sid = self.ident("student")
            last, first, sex = self.person_name()
            age = {"6": 11, "5": 12, "4": 13, "3": 14, "2DE": 15, "1G": 16, "TG": 17}[level]
            birth: date | None = date(self.year - age, rng.randint(1, 12), rng.randint(1, 28))
            if rng.random() < 0.01 and self.newer:
                birth = None  # real files carry DateNaissance="" (an invalid xs:date: not in the 1.1 profile)
            labels = [("G1", "G2")[len(class_students[cls]) % 2]]
            if any(s == "lv2" for _, s, _, _ in PLANS[level]):
                labels.append(rng.choice(("ALL", "ESP")))
            if any(s == "latin" for _, s, _, _ in PLANS[level]) and rng.random() < 0.2:
                labels.append("LAT")
            opts = [o for o in OPTIONS if (cls, o) in part_of]
            if opts:
                labels += rng.sample(opts, k=min(len(opts), 3 if level == "1G" else 2))
            student_parts[sid] = labels
            class_students[cls].append(sid)
            memberships: tuple[Membership, ...] = (Membership(cls, y.start, y.end),)
            part_ms = tuple(Membership(part_of[(cls, lb)], y.start, y.end) for lb in labels)
            if rng.random() < 0.01 and len(level_classes[level]) > 1:  # changes class during the year
                other = rng.choice([c for c in level_classes[level] if c != cls])
                switch = y.week1 + timedelta(weeks=CHANGE_DATE_WEEK - 1)
                memberships = (Membership(cls, y.start, switch - timedelta(days=1)), Membership(other, switch, y.end))
                part_ms = tuple(
                    m
                    for lb in labels
                    for m in (
                        Membership(part_of[(cls, lb)], y.start, switch - timedelta(days=1)),
                        Membership(part_of[(other, lb)], switch, y.end),
                    )
                    if (other, lb) in part_of
                )
            pronote = self.idpn() if rng.random() < 0.97 else None
            cas = f"cas-{sid}" if rng.random() < 0.1 else None
            national = (f"{rng.randint(0, 99999999):08d}{rng.choice('ABCDEFGHJK')}{rng.randint(10, 99)}"
                        if rng.random() < 0.8 else None)
            self.students[sid] = Student(sid, last, first, birth, pronote, cas, memberships, part_ms)
            # what real files carry and no rule reads: written in the file, never in the model
            self.extras[("Eleve", sid)] = {"Sexe": sex, "NumeroNational": national}
        # homonyms: a few students share another's name
        ids = list(self.students)
        for a, b in zip(rng.sample(ids, k=3), rng.sample(ids, k=3), strict=True):
            if a != b:
                sa = self.students[a]
                self.students[b] = replace(self.students[b], last_name=sa.last_name, first_name=sa.first_name)
        # the week
        nc = len(all_classes)
        for level, classes in level_classes.items():
            for code, shape, count, places in PLANS[level]:
                pool_size = max(1, round(nc * count * places / 18))
                self.plan(e, code, shape, count, places, level, classes, part_of, class_students, pool_size, nc)

    def group(
        self, name: str, classes: Iterable[str] = (), parts: Iterable[str] = (), students: Iterable[str] = ()
    ) -> str:
        for g in self.groups.values():
            if g.name == name:
                return g.ident
        ident = self.ident("group", 2)
        self.groups[ident] = Group(ident, name, tuple(classes), tuple(parts), tuple(students))
        return ident

    def plan(
        self,
        e: int,
        code: str,
        shape: str,
        count: int,
        places: int,
        level: str,
        classes: list[str],
        part_of: dict[tuple[str, str], str],
        class_students: dict[str, list[str]],
        pool_size: int,
        nc: int,
    ) -> None:
        name = {c: self.classes[c].name for c in classes}
        if shape == "class":
            for c in classes:
                t = self.teacher(e, code, c, pool_size)
                for _ in range(count):
                    self.add_slot(code, places, teachers=[t], classes=[(c, self.full)], occupy=[c], n_classes=nc)
        elif shape == "alt":  # two classes, one slot, alternate weeks: two courses
            for a, b in _pairs(classes):
                t = self.teacher(e, code, a, pool_size)
                if b is None:
                    self.add_slot(
                        code,
                        places,
                        teachers=[t],
                        classes=[(a, self.week_a)],
                        occupy=[a],
                        weeks=self.week_a,
                        n_classes=nc,
                    )
                    continue
                self.assigned[(b, code)] = t
                staff = ([(next(iter(self.staff)), self.week_a)]
                         if code == "VICLA" and self.rng.random() < 0.3 and self.staff else [])
                self.add_slot(
                    code,
                    places,
                    teachers=[t],
                    classes=[(a, self.week_a), (b, self.week_b)],
                    occupy=[a, b],
                    n_classes=nc,
                    staff=staff,
                )
        elif shape == "halves":  # one-part groups: a course per half
            for c in classes:
                t = self.teacher(e, code, c, pool_size)
                for label in ("G1", "G2"):
                    g = self.group(f"{name[c]} {label}", parts=[part_of[(c, label)]])
                    for _ in range(count):
                        self.add_slot(code, places, teachers=[t], groups=[(g, self.full)], occupy=[c], n_classes=nc)
        elif shape == "parts":  # parts only: no course (design.md §7)
            for c in classes:
                t = self.teacher(e, code, c, pool_size)
                for label in ("G1", "G2"):
                    for _ in range(count):
                        self.add_slot(
                            code,
                            places,
                            teachers=[t],
                            parts=[(part_of[(c, label)], self.full)],
                            occupy=[c],
                            n_classes=nc,
                        )
        elif shape == "lv2":  # ALL2 and ESP2 groups over a pair of classes, at the same time
            for a, b in _pairs(classes):
                pair = [a] if b is None else [a, b]
                label = name[a] + ("" if b is None else name[b][-1])
                g_all = self.group(f"{label} ALL2", parts=[part_of[(c, "ALL")] for c in pair])
                g_esp = self.group(f"{label} ESP2", parts=[part_of[(c, "ESP")] for c in pair])
                t_all = self.teacher(e, "ALL2", g_all, pool_size)
                t_esp = self.teacher(e, "ESP2", g_esp, pool_size)
                for _ in range(count):
                    self.add_slot(
                        "ALL2", places, teachers=[t_all], groups=[(g_all, self.full)], occupy=pair, n_classes=nc
                    )
                    self.add_slot(
                        "ESP2", places, teachers=[t_esp], groups=[(g_esp, self.full)], occupy=pair, n_classes=nc
                    )
        elif shape == "latin":
            g = self.group(f"{level} LATIN", parts=[part_of[(c, "LAT")] for c in classes])
            t = self.teacher(e, code, g, 1)
            for _ in range(count):
                self.add_slot(code, places, teachers=[t], groups=[(g, self.full)], occupy=[], n_classes=nc)
        elif shape.startswith("option:"):
            option = shape.split(":", 1)[1]
            for block in range(0, len(classes), 4):
                members = classes[block : block + 4]
                g = self.group(f"{level} {option} {block // 4 + 1}", parts=[part_of[(c, option)] for c in members])
                t = self.teacher(e, code, g, pool_size)
                for _ in range(count):
                    self.add_slot(code, places, teachers=[t], groups=[(g, self.full)], occupy=[], n_classes=nc)
        elif shape == "ap":  # a student-list group over a pair of classes, first half of the year
            for a, b in _pairs(classes):
                pair = [a] if b is None else [a, b]
                chosen = [s for c in pair for s in class_students[c][: max(2, len(class_students[c]) // 3)]]
                label = name[a] + ("" if b is None else name[b][-1])
                # a student list is a newer construct (Groupe/Eleve); the 1.1 schema groups whole classes
                g = (self.group(f"{label} AP", classes=(), students=chosen) if self.newer
                     else self.group(f"{label} AP", classes=pair))
                t = self.teacher(e, code, g, pool_size)
                first_half = weeks_bitmap(self.open_weeks[: len(self.open_weeks) // 2])
                self.add_slot(
                    code, places, teachers=[t], groups=[(g, first_half)], occupy=pair, weeks=first_half, n_classes=nc
                )
        else:
            raise ValueError(shape)

    def oddities(self) -> None:
        rng = self.rng
        first_class = next(iter(self.classes))
        # a slot naming a group and a class: the course is the group's only
        choir = [s for s in list(self.students)[:: max(1, len(self.students) // 15)]][:15]
        g = (self.group("CHORALE", students=choir) if self.newer
             else self.group("CHORALE", parts=self.classes[first_class].parts[:1]))
        t = self.new_teacher()
        self.add_slot(
            "CHORA",
            2,
            teachers=[t],
            groups=[(g, self.full)],
            classes=[(first_class, self.full)],
            occupy=[],
            n_classes=10,
        )
        if self.newer:  # equipment booked on a slot (Materiels: newer exports)
            ident = self.ident("equipment")
            self.equipment[ident] = Room(ident, "VIDÉOPROJECTEUR MOBILE")
            index = rng.randrange(len(self.slots))
            s = self.slots[index]
            self.slots[index] = replace(
                s, equipment=(Ref(ident, self.week_a & s.classes[0].weeks if s.classes else self.week_a),)
            )
        # a slot with a subject only (real files carry them): no course, a warning
        self.slots.append(Slot(1, 0, 1, self.subject("ORIEN" if "ORIEN" in self.subject_by_code else "AP")))


def _pairs(items: list[str]) -> list[tuple[str, str | None]]:
    return [(items[i], items[i + 1] if i + 1 < len(items) else None) for i in range(0, len(items), 2)]


def expected_holidays(tt: Timetable) -> list[ClosurePeriod]:
    """The closure periods the generator means: each holiday run, then the summer, clipped to the year."""
    y = tt.school_year
    runs: list[list[int]] = []
    for w in list(HOLIDAY_WEEKS) + list(range(LAST_TEACHING_WEEK + 1, 54)):
        if y.week1 + timedelta(weeks=w - 1) > y.end:
            break
        if runs and runs[-1][-1] == w - 1:
            runs[-1].append(w)
        else:
            runs.append([w])
    out = []
    for run in runs:
        start = y.week1 + timedelta(weeks=run[0] - 1)
        end = min(y.week1 + timedelta(weeks=run[-1] - 1, days=6), y.end)
        out.append(ClosurePeriod(max(start, y.start), end))
    return out


def current_school_year(today: date | None = None) -> int:
    """The year the current school year started in (a school year starts in August, seed 001)."""
    today = today or date.today()
    return today.year if today.month >= 8 else today.year - 1


def make_school(
    size: str, seed: int, *, uai: str | Sequence[str] | None = None, changes: float = 0, year: int | None = None,
    newer: bool | None = None,
) -> GeneratedSchool:
    """A synthetic school export; with `changes=K` the follow-up export of the same school with K % of its
    courses changed (teacher or time), listed in `.changed_courses`. `year`: the school year's first year
    (default the current school year, so that its sessions lie ahead).

    Two profiles. By default a one-establishment school is written as Index Education's published schema
    (ExportEmploiDuTemps.xsd, format 1.1) allows, like the public real exports. `newer=True` (implied for a
    cité scolaire, which needs `Etablissements`) adds what newer exports carry according to the public
    importers: Personnels, Materiels, Etablissements, SemainesAnnulation, a student-list group (Groupe/Eleve),
    an unknown section (Etiquettes), the `IdPN` spelling and empty birth dates."""
    multi = len(SIZES.get(size, ())) > 1
    newer = multi if newer is None else newer or multi
    builder = _Builder(size, seed, uai, current_school_year() if year is None else year, newer)
    tt = builder.build()
    school = GeneratedSchool(size, seed, tt, builder.establishment_name, holidays=expected_holidays(tt), newer=newer,
                             extras=builder.extras)
    if changes:
        school.timetable, school.changed_courses = apply_changes(builder, tt, changes)
    return school


def apply_changes(builder: _Builder, tt: Timetable, percent: float) -> tuple[Timetable, list[str]]:
    """Change exactly round(percent % of courses) courses: each one's slots get another teacher (even draws)
    or its first slot moves to another day/place (odd draws). Only courses owning their slots alone are
    picked, so no other course changes."""
    rng = random.Random(f"edt-factory-changes:{builder.size}:{builder.seed}:{float(percent):g}")
    courses = derive_courses(tt)
    owners: dict[int, int] = {}
    for c in courses:
        for i in c.slots:
            owners[i] = owners.get(i, 0) + 1
    candidates = [c for c in courses if all(owners[i] == 1 and len(slot_targets(tt.slots[i])) == 1 for i in c.slots)]
    target = round(len(courses) * percent / 100)
    if target > len(candidates):
        raise ValueError(f"cannot change {target} courses: only {len(candidates)} can change alone")
    chosen = rng.sample(candidates, k=target)
    slots = list(tt.slots)
    teacher_ids = list(tt.teachers)
    for n, course in enumerate(chosen):
        if n % 2 == 0:
            current = set(course.teachers)
            new = rng.choice([t for t in teacher_ids if t not in current])
            for i in course.slots:
                s = slots[i]
                refs = tuple(Ref(new, r.weeks) for r in s.teachers) or (Ref(new, builder.full),)
                slots[i] = replace(s, teachers=refs)
        else:
            i = course.slots[0]
            s = slots[i]
            options = [(d, p) for d, p in builder.allowed(s.place_count) if (d, p) != (s.day, s.first_place)]
            day, first = rng.choice(options)
            slots[i] = replace(s, day=day, first_place=first)
    return replace(tt, slots=tuple(slots)), sorted(c.key for c in chosen)


# ----------------------------------------------------------------------------------------- writing


def _esc(value: str) -> str:
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def _domain(weeks: int) -> str:
    """Index Education's comment on a bitmap: 'Domaine : [2..8,10..16,19]'."""
    ws = list(iter_weeks(weeks))
    runs: list[str] = []
    i = 0
    while i < len(ws):
        j = i
        while j + 1 < len(ws) and ws[j + 1] == ws[j] + 1:
            j += 1
        runs.append(str(ws[i]) if i == j else f"{ws[i]}..{ws[j]}")
        i = j + 1
    return "Domaine : [" + ",".join(runs) + "]"


def _opt(name: str, value: object) -> str:
    return "" if value is None else f' {name}="{_esc(str(value))}"'


def to_xml(tt: Timetable, *, newer: bool = True, extras: Extras | None = None) -> bytes:
    """Write a model as a clear `ExportEmploiDuTemps` file, laid out like the real ones (tabs, week comments).
    `newer=False`: only what the 1.1 schema allows (the model must hold nothing else). `extras`: attributes
    of people the model does not hold ((element, ident) → {attribute: value}), written as real files do."""
    extra = extras or {}

    def more(element: str, ident: str, *names: str) -> str:
        values = extra.get((element, ident), {})
        return "".join(_opt(n, values.get(n)) for n in names)

    if not newer and (tt.staff or tt.equipment or tt.establishments or any(g.students for g in tt.groups.values())
                      or any(s.cancelled_weeks or s.students or s.staff for s in tt.slots)):
        raise ValueError("this timetable holds constructs of newer exports: write it with newer=True")
    out: list[str] = []
    w = out.append
    w('<?xml version="1.0" encoding="UTF-8"?>\n')
    w(
        f'<ExportEmploiDuTemps xmlns="{CLEAR_NAMESPACE}" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        f'xsi:schemaLocation="{CLEAR_NAMESPACE} {_XSD_BASE}ExportEmploiDuTemps.xsd" '
        f'Version="{_esc(tt.format_version)}" UAI="{_esc(tt.uai)}">\n'
    )
    y, g = tt.school_year, tt.grid
    w(f'  <AnneeScolaire DateDebut="{y.start}" DateFin="{y.end}" DatePremierJourSemaine1="{y.week1}"/>\n')
    w(f'  <GrilleHoraire NombrePlacesParJour="{g.places_per_day}" DureePlace="{g.place_minutes}">\n\t<JoursOuvres>\n')
    for d in g.days:
        w(f"\t  <Jour>{d}</Jour>\n")
    w("\t</JoursOuvres>\n\t<PlacesParJour>\n")
    for p in g.places:
        w(
            f'\t  <Place Numero="{p.number}" LibelleHeureDebut="{p.start // 60:02d}:{p.start % 60:02d}:00" '
            f'LibelleHeureFin="{p.end // 60:02d}:{p.end % 60:02d}:00"/>\n'
        )
    w("\t</PlacesParJour>\n  </GrilleHoraire>\n  <Matieres>\n")
    for s in tt.subjects.values():
        w(f'\t<Matiere Ident="{s.ident}" Code="{_esc(s.code)}" Libelle="{_esc(s.label)}"/>\n')
    w("  </Matieres>\n  <Professeurs>\n")
    for n, t in enumerate(tt.teachers.values()):
        idpn = "IdPN" if n % 2 and newer else "IDPN"  # real files spell it both ways
        w(
            f'\t<Professeur Ident="{t.ident}" Nom="{_esc(t.last_name)}" Prenom="{_esc(t.first_name)}"'
            f"{more('Professeur', t.ident, 'DateNaissance', 'IDSTS')}{_opt(idpn, t.pronote_id)}"
            f"{_opt('IDCAS', t.cas_id)}/>\n"
        )
    w("  </Professeurs>\n")
    if newer:
        w("  <Personnels>\n")
        for t in tt.staff.values():
            w(
                f'\t<Personnel Ident="{t.ident}" Nom="{_esc(t.last_name)}" Prenom="{_esc(t.first_name)}"'
                f"{_opt('IDPN', t.pronote_id)}{_opt('IDCAS', t.cas_id)}/>\n"
            )
        w("  </Personnels>\n")
    if tt.establishments:
        w("  <Etablissements>\n")
        for est in tt.establishments.values():
            w(f'\t<Etablissement Ident="{est.ident}" Numero="{_esc(est.uai)}" Nom="{_esc(est.name)}"/>\n')
        w("  </Etablissements>\n")
    w("  <Classes>\n")
    for klass in tt.classes.values():
        w(f'\t<Classe Ident="{klass.ident}" Nom="{_esc(klass.name)}">\n')
        for ident in klass.parts:
            w(f'\t  <PartieDeClasse Ident="{ident}"/>\n')
        for ident in klass.establishments:
            w(f'\t  <Etablissement Ident="{ident}"/>\n')
        w("\t</Classe>\n")
    w("  </Classes>\n  <Groupes>\n")
    for gr in tt.groups.values():
        w(f'\t<Groupe Ident="{gr.ident}" Nom="{_esc(gr.name)}">\n')
        for ident in gr.classes:
            w(f'\t  <Classe Ident="{ident}"/>\n')
        for ident in gr.parts:
            w(f'\t  <PartieDeClasse Ident="{ident}"/>\n')
        for ident in gr.students:
            w(f'\t  <Eleve Ident="{ident}"/>\n')
        w("\t</Groupe>\n")
    w("  </Groupes>\n  <Salles>\n")
    for r in tt.rooms.values():
        w(f'\t<Salle Ident="{r.ident}" Nom="{_esc(r.name)}"/>\n')
    w("  </Salles>\n")
    if newer:
        w("  <Materiels>\n")
        for r in tt.equipment.values():
            w(f'\t<Materiel Ident="{r.ident}" Nom="{_esc(r.name)}"/>\n')
        w("  </Materiels>\n")
    w("  <Eleves>\n")
    for n, st in enumerate(tt.students.values()):
        idpn = "IdPN" if n % 3 == 0 and newer else "IDPN"
        birth = "" if st.birth_date is None else str(st.birth_date)
        w(
            f'\t<Eleve Ident="{st.ident}" Nom="{_esc(st.last_name)}" Prenom="{_esc(st.first_name)}" '
            f'DateNaissance="{birth}"{more("Eleve", st.ident, "Sexe", "NumeroNational")}'
            f"{_opt(idpn, st.pronote_id)}{_opt('IDCAS', st.cas_id)}>\n"
        )
        if n % 3 == 1:  # parents: ignored by the parser, as the ENT gets them elsewhere
            w(
                f'\t  <Responsable Ident="{90000 + n}" RespLegal="1" Nom="{_esc(st.last_name)}" Prenom="Dominique" '
                f'Civilite="M,Mme" Adresse1="12 rue des Écoles" CodePostal="49000" Ville="ANGERS"/>\n'
            )
        for m in st.classes:
            w(f'\t  <Classe Ident="{m.ident}"{_opt("DateEntree", m.start)}{_opt("DateSortie", m.end)}/>\n')
        for m in st.parts:
            w(f'\t  <PartieDeClasse Ident="{m.ident}"{_opt("DateEntree", m.start)}{_opt("DateSortie", m.end)}/>\n')
        w("\t</Eleve>\n")
    w("  </Eleves>\n")
    if newer:  # a section this parser does not know
        w('  <Etiquettes>\n\t<Etiquette Ident="1" Libelle="Sortie pédagogique"/>\n  </Etiquettes>\n')
    w("  <Cours>\n")
    kinds = (
        ("Professeur", "teachers"),
        ("Classe", "classes"),
        ("PartieDeClasse", "parts"),
        ("Groupe", "groups"),
        ("Salle", "rooms"),
        ("Materiel", "equipment"),
        ("Eleve", "students"),
        ("Personnel", "staff"),
    )
    for sl in tt.slots:
        cancel = f' SemainesAnnulation="{sl.cancelled_weeks}"' if sl.cancelled_weeks else ""
        w(f'\t<Cours Jour="{sl.day}" NumeroPlaceDebut="{sl.first_place}" NombrePlaces="{sl.place_count}"{cancel}>\n')
        w(f'\t  <Matiere Ident="{sl.subject}"/>\n')
        for tag, attr in kinds:
            for r in getattr(sl, attr):
                w(f'\t  <{tag} Ident="{r.ident}" Semaines="{r.weeks}">\n\t\t<!--{_domain(r.weeks)}-->\n\t  </{tag}>\n')
        w("\t</Cours>\n")
    w("  </Cours>\n</ExportEmploiDuTemps>\n")
    return "".join(out).encode("utf-8")


# -------------------------------------------------------------------------------------- encryption


def make_keypair(bits: int = 2048) -> tuple[bytes, bytes]:
    """A fresh RSA key pair for tests, (private PKCS#8 PEM, public PEM). Generated at test time: never commit keys."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, public


def _b64_76(data: bytes) -> str:
    text = base64.b64encode(data).decode("ascii")
    return "\n".join(text[i : i + 76] for i in range(0, len(text), 76))


def wrap_key(public_key_pem: bytes, key: bytes, iv: bytes, *, check: bytes | None = None) -> bytes:
    """RSA PKCS#1 v1.5 of the 48-byte blob key ‖ IV ‖ MD5(key ‖ IV) (or a given `check`)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    public = serialization.load_pem_public_key(public_key_pem)
    assert isinstance(public, rsa.RSAPublicKey)
    blob = key + iv + (check if check is not None else hashlib.md5(key + iv).digest())  # noqa: S324
    return public.encrypt(blob, padding.PKCS1v15())


def aes_encrypt(key: bytes, iv: bytes, data: bytes) -> bytes:
    from cryptography.hazmat.primitives import padding as sym_padding
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    padder = sym_padding.PKCS7(128).padder()
    padded = padder.update(data) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return encryptor.update(padded) + encryptor.finalize()


def encrypt_export(
    xml: bytes,
    public_key_pem: bytes,
    partner: str,
    *,
    uai: str,
    software: str = DEFAULT_SOFTWARE,
    version: str = "1.0",
    establishment_name: str = "ETABLISSEMENT",
    compress: bool = True,
    compressed_attr: str | None = None,
    other_partners: tuple[str, ...] = ("INDEXEDUCATION",),
    bad_md5: bool = False,
    claim_compressed_but_raw: bool = False,
    tamper: bool = False,
    add_bom: bool = True,
    hash_of_inflated: bool = False,
) -> bytes:
    """The `EXPORT_INDEX_EDUCATION` container as PRONOTE writes it (design.md §8a), with knobs to break it.

    `compressed_attr`: the CompresseAvantChiffrement attribute to write (None: omitted, meaning true).
    `claim_compressed_but_raw`: say compressed, do not compress (zlib fails). `tamper`: flip a ciphertext
    byte (hash fails). `bad_md5`: a wrong key check in the RSA blob. `hash_of_inflated`: VERIFICATION over
    the inflated bytes (the other reading of "contenu non chiffré")."""
    plain = (b"\xef\xbb\xbf" + xml) if add_bom else xml
    body = zlib.compress(plain, 6) if compress and not claim_compressed_but_raw else plain
    key, iv = os.urandom(16), os.urandom(16)
    cipher = bytearray(aes_encrypt(key, iv, body))
    if tamper:
        cipher[len(cipher) // 2] ^= 0x55
    verification = hashlib.sha256(plain if hash_of_inflated else body).digest()
    ours = wrap_key(public_key_pem, key, iv, check=os.urandom(16) if bad_md5 else None)
    partners = [(p, os.urandom(256)) for p in other_partners] + [(partner, ours)]
    attr = "" if compressed_attr is None else f' CompresseAvantChiffrement="{compressed_attr}"'
    if compressed_attr is None and not compress:
        attr = ' CompresseAvantChiffrement="false"'
    keys = "".join(f'<PARTENAIRE NOM="{_esc(n)}">{_b64_76(b)}</PARTENAIRE>' for n, b in partners)
    doc = (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<EXPORT_INDEX_EDUCATION xmlns="{CONTAINER_NAMESPACE}" '
        f'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:schemaLocation="{CONTAINER_NAMESPACE} '
        f'http://telechargement.index-education.com/export/ConteneurExportChiffre.xsd">'
        f"<VERSION>{_esc(version)}</VERSION><LOGICIEL>{_esc(software)}</LOGICIEL><CLES>{keys}</CLES>"
        f"<CONTENU{attr}>{_b64_76(bytes(cipher))}</CONTENU><VERIFICATION>{_b64_76(verification)}</VERIFICATION>"
        f"<DATEHEURE>2024-11-05T08:00:12.486+01:00</DATEHEURE><UAI>{_esc(uai)}</UAI>"
        f"<NOMETABLISSEMENT>{_esc(establishment_name)}</NOMETABLISSEMENT><CODEPOSTALVILLE>49000 ANGERS"
        f"</CODEPOSTALVILLE></EXPORT_INDEX_EDUCATION>"
    )
    return doc.encode("utf-8")


def zip_export(payload: bytes, name: str, extra: dict[str, bytes] | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(name, payload)
        for member, data in (extra or {}).items():
            zf.writestr(member, data)
    return buf.getvalue()


def write_school(
    school: GeneratedSchool, out: Path, *, public_key_pem: bytes | None = None, partner: str = "", zipped: bool = False
) -> Path:
    data = school.encrypt(public_key_pem, partner) if public_key_pem is not None else school.to_xml_bytes()
    if zipped:
        data = school.zip(data)
    out.write_bytes(data)
    return out
