"""The canonical timetable model (design.md §8a): what the validator makes of an export and every later
stage reads. Frozen dataclasses and named tuples, no behaviour beyond small lookups.

Minimal by design (docs/privacy.md): a person holds only what a rule of the seeds reads — names for
reconciliation, the birth date of students (reconciliation « date de naissance pour les apprenants »),
the PRONOTE and CAS ids (reconciliation rules 1–3), memberships and their dates. What an export also
carries — sex, national student number (no rule reads it), teachers' birth dates and STS ids, postcodes,
parents (`Responsable`) — is never kept."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import NamedTuple

MODEL_VERSION = 2  # 2: no sex, national id, teacher birth date or STS id (version 1 blobs still read)

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
    """A teacher (`Professeur`) or staff member (`Personnel`): matched by ids, else by name alone."""

    ident: str
    last_name: str
    first_name: str
    pronote_id: str | None = None  # IDPN
    cas_id: str | None = None  # IDCAS


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
    birth_date: date | None = None  # tells homonyms apart in reconciliation
    pronote_id: str | None = None
    cas_id: str | None = None
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
