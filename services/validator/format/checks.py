"""Checks of a parsed timetable: references, slots, people, establishments.

Each check reports its problems with a code of the policy (`problems.POLICY`) and returns the timetable as
the import will use it: a dangling reference dropped, a slot whose subject is unknown or whose place is off
the grid ignored. Nothing here decides whether a problem rejects the file.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import replace

from services.validator.format.context import AcceptedSoftware, Ctx, Limits
from services.validator.format.problems import Problem
from shared.reconcile import name_key
from shared.timetable import MAX_WEEK, Ref, Slot, Timetable, derive_courses, school_weeks_bitmap

# Slot field → (element in the file, label of its kind in messages)
SLOT_REFS: dict[str, tuple[str, str]] = {
    "teachers": ("Professeur", "professeurs"),
    "classes": ("Classe", "classes"),
    "parts": ("PartieDeClasse", "parties de classe"),
    "groups": ("Groupe", "groupes"),
    "rooms": ("Salle", "salles"),
    "equipment": ("Materiel", "matériels"),
    "students": ("Eleve", "élèves"),
    "staff": ("Personnel", "personnels"),
}


class _Dangling:
    """Dangling references gathered per (source, target), reported once each with a count and samples."""

    def __init__(self) -> None:
        self.found: dict[tuple[str, str], list[str]] = {}

    def keep(self, source: str, target: str, idents: Collection[str], known: Collection[str]) -> tuple[str, ...]:
        kept = tuple(i for i in idents if i in known)
        if len(kept) != len(idents):
            self.found.setdefault((source, target), []).extend(i for i in idents if i not in known)
        return kept

    def report(self, ctx: Ctx) -> None:
        for (source, target), idents in self.found.items():
            ctx.report("dangling_reference", source=source, target=target, count=len(idents),
                       samples=sorted(set(idents))[:5])


def resolve_references(tt: Timetable, lines: list[int], ctx: Ctx) -> tuple[Timetable, list[int]]:
    """Every Ident named somewhere must exist. A reference to an unknown one is dropped (what the public
    importers do), a slot naming an unknown subject is ignored; each reported with counts and samples."""
    part_ids = {p for c in tt.classes.values() for p in c.parts}
    known: dict[str, Collection[str]] = {
        "teachers": tt.teachers.keys(), "classes": tt.classes.keys(), "parts": part_ids, "groups": tt.groups.keys(),
        "rooms": tt.rooms.keys(), "equipment": tt.equipment.keys(), "students": tt.students.keys(),
        "staff": tt.staff.keys(),
    }
    dangling = _Dangling()
    slots: list[Slot] = []
    kept_lines: list[int] = []
    unknown_subjects: list[str] = []
    for slot, line in zip(tt.slots, lines, strict=True):
        if slot.subject not in tt.subjects:
            unknown_subjects.append(slot.subject)
            continue
        changes: dict[str, tuple[Ref, ...]] = {}
        for field, (_, label) in SLOT_REFS.items():
            refs: tuple[Ref, ...] = getattr(slot, field)
            if refs and any(r.ident not in known[field] for r in refs):
                kept = {r.ident for r in refs if r.ident in known[field]}
                dangling.found.setdefault(("Cours", label), []).extend(r.ident for r in refs if r.ident not in kept)
                changes[field] = tuple(r for r in refs if r.ident in kept)
        slots.append(replace(slot, **changes) if changes else slot)  # type: ignore[arg-type]
        kept_lines.append(line)
    if unknown_subjects:
        ctx.report("slot_subject_unknown", count=len(unknown_subjects), samples=sorted(set(unknown_subjects))[:5])
    groups = {
        k: replace(g, classes=dangling.keep("Groupe", "classes", g.classes, tt.classes),
                   parts=dangling.keep("Groupe", "parties de classe", g.parts, part_ids),
                   students=dangling.keep("Groupe", "élèves", g.students, tt.students))
        if _any_unknown((g.classes, tt.classes), (g.parts, part_ids), (g.students, tt.students)) else g
        for k, g in tt.groups.items()
    }
    students = {}
    for k, s in tt.students.items():
        if any(m.ident not in tt.classes for m in s.classes) or any(m.ident not in part_ids for m in s.parts):
            kept_c = dangling.keep("Eleve", "classes", [m.ident for m in s.classes], tt.classes)
            kept_p = dangling.keep("Eleve", "parties de classe", [m.ident for m in s.parts], part_ids)
            s = replace(s, classes=tuple(m for m in s.classes if m.ident in kept_c),
                        parts=tuple(m for m in s.parts if m.ident in kept_p))
        students[k] = s
    classes = dict(tt.classes)
    if tt.establishments:
        for k, c in tt.classes.items():
            if any(e not in tt.establishments for e in c.establishments):
                classes[k] = replace(c, establishments=dangling.keep("Classe", "établissements", c.establishments,
                                                                     tt.establishments))
        orphans = [c.name for c in classes.values() if not c.establishments]
        if orphans:
            ctx.report("class_without_establishment", count=len(orphans), samples=orphans[:5])
    dangling.report(ctx)
    return replace(tt, slots=tuple(slots), groups=groups, students=students, classes=classes), kept_lines


def _any_unknown(*pairs: tuple[Collection[str], Collection[str]]) -> bool:
    return any(i not in known for idents, known in pairs for i in idents)


def dangling_references(tt: Timetable) -> list[Problem]:
    """The dangling references of a model (e.g. to check a split part stands alone)."""
    ctx = Ctx(Limits(), AcceptedSoftware())
    resolve_references(tt, [0] * len(tt.slots), ctx)
    return [p for p in ctx.warnings if p.code in ("dangling_reference", "slot_subject_unknown")]


def check_slots(tt: Timetable, lines: list[int], ctx: Ctx) -> Timetable:
    """Slots off the time grid are ignored (no session can be placed); the others are kept with what is odd
    about them reported: a non-working day, no resource at all, parts of classes only, groups and classes
    together, week bits outside the school year."""
    places = {p.number for p in tt.grid.places}
    working = set(tt.grid.days)
    school = school_weeks_bitmap(tt) | 1  # bit 0 is unused by the format: never flag it
    year_bits = (1 << (MAX_WEEK + 1)) - 1
    kept: list[Slot] = []
    out_of_grid: list[tuple[int, int, int]] = []
    non_working: list[int] = []
    no_resource = parts_only = both = outside = 0
    for s, line in zip(tt.slots, lines, strict=True):
        last = s.first_place + s.place_count - 1
        if not 1 <= s.day <= 7 or s.place_count < 1 or s.first_place not in places or last not in places:
            out_of_grid.append((s.day, s.first_place, line))
            continue
        kept.append(s)
        if working and s.day not in working:
            non_working.append(s.day)
        if not (s.teachers or s.classes or s.parts or s.groups or s.rooms or s.equipment or s.students or s.staff):
            no_resource += 1
        elif not s.classes and not s.groups and s.parts:
            parts_only += 1
        if s.groups and s.classes:
            both += 1
        for refs in (s.teachers, s.classes, s.parts, s.groups, s.rooms, s.equipment, s.students, s.staff):
            for r in refs:
                if r.weeks & ~school & year_bits:
                    outside += 1
    if out_of_grid:
        day, place, line = out_of_grid[0]
        ctx.report("slot_out_of_grid", count=len(out_of_grid), day=day, place=place, line=line)
    if non_working:
        ctx.report("slot_on_non_working_day", count=len(non_working), day=non_working[0])
    if no_resource:
        ctx.report("slot_without_resources", count=no_resource)
    if parts_only:
        ctx.report("slot_parts_only", count=parts_only)
    if both:
        ctx.report("slot_groups_and_classes", count=both)
    if outside:
        ctx.report("weeks_outside_school_year", count=outside)
    return replace(tt, slots=tuple(kept)) if out_of_grid else tt


def check_people(tt: Timetable, ctx: Ctx) -> None:
    """Students without a class, and homonyms — by the reconciler's own name key, so that the warning counts
    exactly the people reconciliation will call ambiguous. The warning names them by Ident, never by name:
    it stays in the history for good, the names are in the unreconciled lists, which expire."""
    without_class = sum(1 for s in tt.students.values() if not s.classes)
    if without_class:
        ctx.report("student_without_class", count=without_class)
    for kind, people in (("professeurs", tt.teachers.values()), ("élèves", tt.students.values())):
        seen: dict[tuple[str, str], list[str]] = {}
        for p in people:
            seen.setdefault(name_key(p.last_name, p.first_name), []).append(p.ident)
        dupes = [idents for idents in seen.values() if len(idents) > 1]
        if dupes:
            ctx.report("homonyms", kind=kind, count=sum(len(n) for n in dupes),
                       samples=["/".join(n) for n in dupes[:3]])


def check_usable(tt: Timetable, ctx: Ctx) -> None:
    """At least one course (subject + class, or subject + group) must remain, else there is nothing to import."""
    if not derive_courses(tt):
        ctx.report("no_usable_course")


def check_uais(tt: Timetable, expected: set[str], ctx: Ctx) -> None:
    listed = [e.uai for e in tt.establishments.values()]
    if listed:
        foreign = [u for u in listed if u not in expected]
        if foreign:
            ctx.report("establishment_not_in_site", uais=foreign, expected=sorted(expected))
        if tt.uai and tt.uai not in expected and tt.uai not in listed:
            ctx.report("uai_mismatch", found=tt.uai, expected=sorted(expected))
    elif tt.uai not in expected:
        ctx.report("uai_mismatch", found=tt.uai, expected=sorted(expected))


def unknown_summary(unknown: Mapping[str, int], limit: int = 8) -> list[str]:
    """'Etiquettes (1)', 'Cours@Annuel (704)': the most frequent unknown names first."""
    return [f"{name} ({n})" for name, n in sorted(unknown.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]]
