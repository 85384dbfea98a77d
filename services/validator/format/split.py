"""A cité scolaire's file split into one self-contained timetable per establishment."""

from __future__ import annotations

from dataclasses import replace

from shared.timetable import Slot, Timetable

# ------------------------------------------------------------------------------------------- split


def split_by_establishment(tt: Timetable) -> dict[str, Timetable]:
    """Split a multi-establishment (cité scolaire) timetable by UAI.

    Classes go to the establishments they name (unnamed ones to the file's own UAI, else the first);
    a group to the establishment holding most of its classes, parts and students; a slot to those of its
    groups if it names any (§7: its courses are its groups'), else to those of its classes and parts, each
    copy keeping only that establishment's classes, parts and groups (teachers, rooms… are kept); a slot
    naming none of them goes to the file's own establishment. Students follow their classes; teachers,
    staff, rooms, equipment and subjects follow the slots that use them. Group members and student
    memberships outside an establishment are dropped from its part, so that each part is self-contained
    (no dangling reference). A single-establishment file maps to itself."""
    if len(tt.establishments) <= 1:
        uai = next(iter(tt.establishments.values())).uai if tt.establishments else tt.uai
        return {uai: tt}
    ests = list(tt.establishments.values())
    default = next((e.ident for e in ests if e.uai == tt.uai), ests[0].ident)
    class_est: dict[str, set[str]] = {}
    part_est: dict[str, set[str]] = {}
    for klass in tt.classes.values():
        owners = {e for e in klass.establishments if e in tt.establishments} or {default}
        class_est[klass.ident] = owners
        for p in klass.parts:
            part_est.setdefault(p, set()).update(owners)
    student_est: dict[str, set[str]] = {}
    for student in tt.students.values():
        owners = set()
        for m in student.classes:
            owners |= class_est.get(m.ident, set())
        for m in student.parts:
            owners |= part_est.get(m.ident, set())
        student_est[student.ident] = owners
    # a group goes to the one establishment holding most of its members (ties: the file's own, else the
    # first listed), so that each of its courses is imported once
    order = {e.ident: i for i, e in enumerate(ests)}
    group_est: dict[str, set[str]] = {}
    for g in tt.groups.values():
        votes: dict[str, int] = {}
        for owners in (
            *(class_est.get(c, set()) for c in g.classes),
            *(part_est.get(p, set()) for p in g.parts),
            *(student_est.get(e, set()) for e in g.students),
        ):
            for owner in owners:
                votes[owner] = votes.get(owner, 0) + 1
        if not votes:
            group_est[g.ident] = {default}
            continue
        best = max(votes.values())
        winners = [o for o, n in votes.items() if n == best]
        group_est[g.ident] = {default if default in winners else min(winners, key=order.__getitem__)}

    out: dict[str, Timetable] = {}
    for est in ests:
        eid = est.ident
        classes = {k: c for k, c in tt.classes.items() if eid in class_est[k]}
        parts = {p for p, owners in part_est.items() if eid in owners}
        groups = {k: g for k, g in tt.groups.items() if eid in group_est[k]}
        slots: list[Slot] = []
        for slot in tt.slots:
            mine_c = tuple(r for r in slot.classes if r.ident in classes)
            mine_p = tuple(r for r in slot.parts if r.ident in parts)
            mine_g = tuple(r for r in slot.groups if r.ident in groups)
            # a slot naming groups makes courses for its groups only (§7): it follows its groups
            if mine_g if slot.groups else (mine_c or mine_p):
                slots.append(replace(slot, classes=mine_c, parts=mine_p, groups=mine_g))
            elif not (slot.classes or slot.parts or slot.groups) and eid == default:
                slots.append(slot)
        used_teachers = {r.ident for x in slots for r in x.teachers}
        used_staff = {r.ident for x in slots for r in x.staff}
        used_rooms = {r.ident for x in slots for r in x.rooms}
        used_equipment = {r.ident for x in slots for r in x.equipment}
        used_subjects = {x.subject for x in slots}
        students = {k: v for k, v in tt.students.items() if eid in student_est[k]}
        # members and memberships outside this establishment are dropped: each part stands alone
        groups = {
            k: replace(
                g,
                classes=tuple(c for c in g.classes if c in classes),
                parts=tuple(p for p in g.parts if p in parts),
                students=tuple(e for e in g.students if e in students),
            )
            for k, g in groups.items()
        }
        students = {
            k: replace(
                v,
                classes=tuple(m for m in v.classes if m.ident in classes),
                parts=tuple(m for m in v.parts if m.ident in parts),
            )
            for k, v in students.items()
        }
        out[est.uai] = replace(
            tt,
            uai=est.uai,
            establishments={eid: est},
            subjects={k: v for k, v in tt.subjects.items() if k in used_subjects},
            teachers={k: v for k, v in tt.teachers.items() if k in used_teachers},
            staff={k: v for k, v in tt.staff.items() if k in used_staff},
            rooms={k: v for k, v in tt.rooms.items() if k in used_rooms},
            equipment={k: v for k, v in tt.equipment.items() if k in used_equipment},
            classes=classes,
            groups=groups,
            students=students,
            slots=tuple(slots),
        )
    return out
