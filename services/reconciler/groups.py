"""Group creation (seed 003), pure: no I/O here. Automatic and manual imports both run it.

`desired`: the file's classes, parts of class and groups (linked to the ENT class/group when matched) and
one group per kept course; memberships of matched people only — students in their classes, parts and
groups with the file's entry/exit dates, teachers in the courses they teach. `diff` compares them with what
is stored for the establishment, so a re-import creates and deletes only what changed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any, NamedTuple

from shared.reconcile import KindResult
from shared.timetable import Course, Membership, Timetable, member_index


@dataclass(frozen=True, slots=True)
class GroupRow:
    key: str
    kind: str  # class | part | group | course
    ident: str
    name: str
    parent: str | None = None
    ent_id: str | None = None
    members_fp: str | None = None  # digest of its membership keys (`with_fingerprints`)


class MemberRow(NamedTuple):
    """A membership (a NamedTuple: an L school has ~16k of them, built on every import)."""

    key: str
    group_key: str
    person_kind: str  # teacher | student
    person_id: str  # ENT id
    file_ident: str
    start: date | None = None
    end: date | None = None


def group_key(kind: str, ident: str) -> str:
    return f"{kind}:{ident}"


def member_key(group: str, kind: str, ent_id: str, start: str, end: str) -> str:
    """A membership's key: group, person and the ISO dates of entry and exit ('' when open)."""
    return f"{group}#{kind}:{ent_id}#{start}#{end}"


def desired(tt: Timetable, results: Mapping[str, KindResult], selection: Mapping[str, Mapping[str, bool]],
            kept: Iterable[Course]) -> tuple[dict[str, GroupRow], dict[str, MemberRow]]:
    """The groups and memberships the establishment should have after this import."""
    classes_on, groups_on = selection.get("classes") or {}, selection.get("groups") or {}
    students = results["students"].matched
    teachers = results["teachers"].matched
    out_g: dict[str, GroupRow] = {}
    out_m: dict[str, MemberRow] = {}
    index = member_index(tt)

    iso: dict[date | None, str] = {None: ""}  # a school has a handful of distinct entry and exit dates

    def add(gk: str, kind: str, ident: str, start: date | None = None, end: date | None = None) -> None:
        ent = (students if kind == "student" else teachers).get(ident)
        if ent is None:  # unmatched people: their timetable is not imported
            return
        s, e = iso.get(start), iso.get(end)
        if s is None:
            s = iso[start] = start.isoformat()  # type: ignore[union-attr]
        if e is None:
            e = iso[end] = end.isoformat()  # type: ignore[union-attr]
        key = member_key(gk, kind, ent, s, e)
        if key not in out_m:
            out_m[key] = MemberRow(key, gk, kind, ent, ident, start, end)

    def add_all(gk: str, members: Iterable[Membership]) -> None:
        for m in members:
            add(gk, "student", m.ident, m.start, m.end)

    for c in tt.classes.values():
        if not classes_on.get(c.ident, True):
            continue
        ck = group_key("class", c.ident)
        out_g[ck] = GroupRow(ck, "class", c.ident, c.name, None, results["classes"].matched.get(c.ident))
        add_all(ck, index["class"].get(c.ident, ()))
        for p in c.parts:
            pk = group_key("part", p)
            if pk not in out_g:
                out_g[pk] = GroupRow(pk, "part", p, f"{c.name} ({p})", ck)
                add_all(pk, index["part"].get(p, ()))
    for g in tt.groups.values():
        if not groups_on.get(g.ident, True):
            continue
        gk = group_key("group", g.ident)
        out_g[gk] = GroupRow(gk, "group", g.ident, g.name, None, results["groups"].matched.get(g.ident))
        for s in g.students:
            add(gk, "student", s)
        for c_ident in g.classes:
            add_all(gk, index["class"].get(c_ident, ()))
        for p in g.parts:
            add_all(gk, index["part"].get(p, ()))
    for course in kept:
        k = group_key("course", course.key)
        parent = group_key(course.kind, course.target)
        out_g[k] = GroupRow(k, "course", course.key, course.label[:255], parent if parent in out_g else None)
        for t in course.teachers:
            add(k, "teacher", t)
    return with_fingerprints(out_g, out_m), out_m


def with_fingerprints(want_groups: Mapping[str, GroupRow], want_members: Mapping[str, MemberRow]) -> dict[
        str, GroupRow]:
    """Each group with the digest of its membership keys: equal digests, equal memberships."""
    keys: dict[str, list[str]] = {}
    for m in want_members.values():
        keys.setdefault(m.group_key, []).append(m.key)
    return {k: replace(g, members_fp=hashlib.blake2b("\n".join(sorted(keys.get(k, ()))).encode(),
                                                     digest_size=16).hexdigest())
            for k, g in want_groups.items()}


def changed_groups(stored_groups: Mapping[str, GroupRow], want_groups: Mapping[str, GroupRow]) -> set[str]:
    """Groups whose memberships may differ from what is stored: new, removed, or another digest (a group
    stored before digests existed has none: it is diffed in full once)."""
    out = {k for k, g in want_groups.items() if (old := stored_groups.get(k)) is None or old.members_fp is None
           or old.members_fp != g.members_fp}
    return out | {k for k in stored_groups if k not in want_groups}


@dataclass
class Diff:
    create_groups: list[GroupRow] = field(default_factory=list)
    update_groups: list[GroupRow] = field(default_factory=list)
    delete_groups: list[str] = field(default_factory=list)
    create_members: list[MemberRow] = field(default_factory=list)
    delete_members: list[str] = field(default_factory=list)

    def actions(self) -> list[dict[str, Any]]:
        """The bilan's lines (seed 003: « création de groupe », « création / suppression de hiérarchie »)."""
        return [{"action": "groups_created", "success": len(self.create_groups), "error": 0},
                {"action": "groups_deleted", "success": len(self.delete_groups), "error": 0},
                {"action": "memberships_created", "success": len(self.create_members), "error": 0},
                {"action": "memberships_deleted", "success": len(self.delete_members), "error": 0}]


def diff(stored_groups: Mapping[str, GroupRow], stored_members: Iterable[str], want_groups: Mapping[str, GroupRow],
         want_members: Mapping[str, MemberRow]) -> Diff:
    """What to write so the stored groups and memberships become the wanted ones (a membership's key holds
    everything that identifies it: group, person, dates). The memberships may be those of some groups only
    (`changed_groups`) on both sides."""
    have_m = set(stored_members)
    out = Diff()
    for key, g in want_groups.items():
        old = stored_groups.get(key)
        if old is None:
            out.create_groups.append(g)
        elif old != g:
            out.update_groups.append(g)
    out.delete_groups = sorted(k for k in stored_groups if k not in want_groups)
    out.create_members = [m for k, m in want_members.items() if k not in have_m]
    out.delete_members = sorted(k for k in have_m if k not in want_members)
    return out


# --- the inverse of a write (abort compensation, undo) ---------------------------------------------


def _group_cells(g: GroupRow, import_id: str | None) -> list[Any]:
    return [g.key, g.kind, g.ident, g.name, g.parent, g.ent_id, g.members_fp, import_id]


def _member_cells(m: MemberRow, import_id: str | None) -> list[Any]:
    return [m.key, m.group_key, m.person_kind, m.person_id, m.file_ident,
            m.start.isoformat() if m.start else None, m.end.isoformat() if m.end else None, import_id]


def inverse(d: Diff, before: Mapping[str, GroupRow], deleted_members: Iterable[tuple[MemberRow, str | None]],
            origins: Mapping[str, str | None]) -> dict[str, Any]:
    """What undoes `d` exactly (JSON-able): the groups it deleted or changed as they were, the memberships
    it deleted, the keys it created. `before`: the stored groups `d` was computed against; `origins`: the
    import that last wrote each of those groups (kept through a restore)."""
    return {
        "groups_create": [_group_cells(before[k], origins.get(k)) for k in d.delete_groups],
        "groups_update": [_group_cells(before[g.key], origins.get(g.key)) for g in d.update_groups],
        "groups_delete": sorted(g.key for g in d.create_groups),
        "members_create": [_member_cells(m, origin) for m, origin in deleted_members],
        "members_delete": sorted(m.key for m in d.create_members),
    }


def diff_of(payload: Mapping[str, Any]) -> tuple[Diff, dict[str, str | None]]:
    """An inverse (`inverse`) as a Diff to write, and the import each restored row came from."""
    def group(cells: list[Any]) -> GroupRow:
        return GroupRow(*cells[:7])

    def member(cells: list[Any]) -> MemberRow:
        key, gk, kind, person, ident, start, end = cells[:7]
        return MemberRow(key, gk, kind, person, ident, date.fromisoformat(start) if start else None,
                         date.fromisoformat(end) if end else None)

    origins = {c[0]: c[7] for c in [*payload["groups_create"], *payload["groups_update"], *payload["members_create"]]}
    return Diff(create_groups=[group(c) for c in payload["groups_create"]],
                update_groups=[group(c) for c in payload["groups_update"]],
                delete_groups=list(payload["groups_delete"]),
                create_members=[member(c) for c in payload["members_create"]],
                delete_members=list(payload["members_delete"])), origins
