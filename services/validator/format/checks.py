"""Checks of a parsed timetable: references, slots, people, establishments."""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from services.validator.format.context import AcceptedSoftware, Ctx, Limits
from services.validator.format.problems import Problem
from shared.timetable import MAX_WEEK, Timetable, school_weeks_bitmap


def _dangling(ctx: Ctx, source: str, target: str, idents: list[str]) -> None:
    if idents:
        ctx.error(
            "dangling_reference", source=source, target=target, count=len(idents), samples=sorted(set(idents))[:5]
        )


def reference_problems(tt: Timetable) -> list[Problem]:
    """The dangling references of a model (e.g. to check a split part stands alone)."""
    ctx = Ctx(Limits(), AcceptedSoftware())
    check_references(tt, ctx)
    return ctx.errors


def check_references(tt: Timetable, ctx: Ctx) -> None:
    """Every Ident named somewhere must exist: reported per (source, target) with counts, never a crash."""
    part_ids = {p for c in tt.classes.values() for p in c.parts}
    kinds: list[tuple[str, str, dict[str, Any] | set[str], int]] = [
        ("Professeur", "professeurs", tt.teachers, 0),
        ("Classe", "classes", tt.classes, 1),
        ("PartieDeClasse", "parties de classe", part_ids, 2),
        ("Groupe", "groupes", tt.groups, 3),
        ("Salle", "salles", tt.rooms, 4),
        ("Materiel", "matériels", tt.equipment, 5),
        ("Eleve", "élèves", tt.students, 6),
        ("Personnel", "personnels", tt.staff, 7),
    ]
    bad_subjects = [s.subject for s in tt.slots if s.subject not in tt.subjects]
    _dangling(ctx, "Cours", "matières", bad_subjects)
    for name, label, known, _ in kinds:
        attr = _SLOT_ATTRS[name]
        bad = [r.ident for s in tt.slots for r in getattr(s, attr) if r.ident not in known]
        _dangling(ctx, "Cours", label, bad)
    _dangling(ctx, "Groupe", "classes", [c for g in tt.groups.values() for c in g.classes if c not in tt.classes])
    _dangling(ctx, "Groupe", "parties de classe", [p for g in tt.groups.values() for p in g.parts if p not in part_ids])
    _dangling(ctx, "Groupe", "élèves", [e for g in tt.groups.values() for e in g.students if e not in tt.students])
    _dangling(
        ctx, "Eleve", "classes", [m.ident for s in tt.students.values() for m in s.classes if m.ident not in tt.classes]
    )
    _dangling(
        ctx,
        "Eleve",
        "parties de classe",
        [m.ident for s in tt.students.values() for m in s.parts if m.ident not in part_ids],
    )
    if tt.establishments:
        _dangling(
            ctx,
            "Classe",
            "établissements",
            [e for c in tt.classes.values() for e in c.establishments if e not in tt.establishments],
        )
        orphans = [c.name for c in tt.classes.values() if not c.establishments]
        if orphans:
            ctx.warn("class_without_establishment", count=len(orphans), samples=orphans[:5])


_SLOT_ATTRS = {
    "Professeur": "teachers",
    "Classe": "classes",
    "PartieDeClasse": "parts",
    "Groupe": "groups",
    "Salle": "rooms",
    "Materiel": "equipment",
    "Eleve": "students",
    "Personnel": "staff",
}


def check_slots(tt: Timetable, lines: list[int], ctx: Ctx) -> None:
    places = {p.number for p in tt.grid.places}
    working = set(tt.grid.days)
    school = school_weeks_bitmap(tt) | 1  # bit 0 is unused by the format: never flag it
    out_of_grid: list[tuple[int, int, int]] = []
    non_working: list[int] = []
    no_resource = parts_only = both = outside = 0
    for index, s in enumerate(tt.slots):
        last = s.first_place + s.place_count - 1
        if not 1 <= s.day <= 7 or s.place_count < 1 or s.first_place not in places or last not in places:
            out_of_grid.append((s.day, s.first_place, lines[index] if index < len(lines) else 0))
        elif working and s.day not in working:
            non_working.append(s.day)
        if not (s.teachers or s.classes or s.parts or s.groups or s.rooms or s.equipment or s.students or s.staff):
            no_resource += 1
        elif not s.classes and not s.groups and s.parts:
            parts_only += 1
        if s.groups and s.classes:
            both += 1
        for refs in (s.teachers, s.classes, s.parts, s.groups, s.rooms, s.equipment, s.students, s.staff):
            for r in refs:
                if r.weeks & ~school & ((1 << (MAX_WEEK + 1)) - 1):
                    outside += 1
    if out_of_grid:
        day, place, line = out_of_grid[0]
        ctx.error("slot_out_of_grid", count=len(out_of_grid), day=day, place=place, line=line)
    if non_working:
        ctx.warn("slot_on_non_working_day", count=len(non_working), day=non_working[0])
    if no_resource:
        ctx.warn("slot_without_resources", count=no_resource)
    if parts_only:
        ctx.warn("slot_parts_only", count=parts_only)
    if both:
        ctx.warn("slot_groups_and_classes", count=both)
    if outside:
        ctx.warn("weeks_outside_school_year", count=outside)


def normalise_name(last: str, first: str) -> str:
    """Accent-, case- and hyphen-insensitive name key (design.md §7 reconciliation)."""
    text = unicodedata.normalize("NFKD", f"{last} {first}")
    text = "".join(c for c in text if not unicodedata.combining(c)).lower()
    return " ".join(re.sub(r"[-'’\s]+", " ", text).split())


def check_people(tt: Timetable, ctx: Ctx) -> None:
    without_class = sum(1 for s in tt.students.values() if not s.classes)
    if without_class:
        ctx.warn("student_without_class", count=without_class)
    for kind, people in (("professeurs", tt.teachers.values()), ("élèves", tt.students.values())):
        seen: dict[str, int] = {}
        for p in people:
            key = normalise_name(p.last_name, p.first_name)
            seen[key] = seen.get(key, 0) + 1
        dupes = [k for k, n in seen.items() if n > 1]
        if dupes:
            ctx.warn("homonyms", kind=kind, count=sum(seen[k] for k in dupes), samples=dupes[:3])


def check_uais(tt: Timetable, expected: set[str], ctx: Ctx) -> None:
    listed = [e.uai for e in tt.establishments.values()]
    if listed:
        foreign = [u for u in listed if u not in expected]
        if foreign:
            ctx.error("establishment_not_in_site", uais=foreign, expected=sorted(expected))
        if tt.uai and tt.uai not in expected and tt.uai not in listed:
            ctx.error("uai_mismatch", found=tt.uai, expected=sorted(expected))
    elif tt.uai not in expected:
        ctx.error("uai_mismatch", found=tt.uai, expected=sorted(expected))
