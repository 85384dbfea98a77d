"""The manual import wizard's rules (seeds 002–003), pure: no I/O here. Group creation itself, which
automatic imports run too, is `services/reconciler/groups.py`.

- **Decisions** (`apply_decisions`): person matches accepted, refused or overridden in the wizard, stored per
  establishment and applied on top of the matching rules of `shared.reconcile` on every later import
  (an accepted/overridden match wins over the rules; a refused person stays unmatched, reason `refused`).
- **Selection**: subjects, classes, groups and courses on or off. A manual import persists it; automatic
  imports re-sync only the courses active in it, and courses never selected wait for a manual import
  (`kept_courses`).
- **Preview** (`establishment_preview`, `initial_selection`) and the checked edits of a selection
  (`merge_selection`).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from shared.reconcile import (
    ALLOWED_KINDS,
    AMBIGUOUS,
    NOT_FOUND,
    Directory,
    KindResult,
    Unmatched,
    normalise,
)
from shared.timetable import Course, Student, Timetable

SELECT_KINDS = ("subjects", "classes", "groups", "courses")
PERSON_KINDS = ("teachers", "students")
DECISIONS = ("accept", "refuse", "override", "auto")  # auto: forget the stored decision, the rules decide
REFUSED = "refused"
MAX_CANDIDATES = 10

# selection: {"subjects"|"classes"|"groups"|"courses": {ident: bool}, "persons": {kind: {ident: decision}}}
Selection = dict[str, Any]
StoredSelection = dict[str, dict[str, bool]]  # kind → ident → active


@dataclass(frozen=True, slots=True)
class Decision:
    decision: str  # accept | refuse | override
    ent_id: str | None = None


Decisions = dict[str, dict[str, Decision]]  # kind (teachers|students) → file ident → decision


def empty_results() -> dict[str, KindResult]:
    return {k: KindResult() for k in ("teachers", "students", "classes", "groups")}


# --------------------------------------------------------------------------------------- decisions


def apply_decisions(results: Mapping[str, KindResult], directory: Directory,
                    decisions: Mapping[str, Mapping[str, Decision]]) -> dict[str, KindResult]:
    """The matching with the user's decisions on top: accepted/overridden matches win over the rules (when
    the ENT entry is still in the directory, else the rules decide), refused people are unmatched. Never
    two file people on one ENT entry: two forced on the same entry are both ambiguous, and a rule match
    on an entry a decision claims is dropped (ambiguous)."""
    out = dict(results)
    for kind in PERSON_KINDS:
        chosen = decisions.get(kind) or {}
        if not chosen or kind not in results:
            continue
        base = results[kind]
        pool = {p.id for p in directory.persons if p.kind in ALLOWED_KINDS[kind]}
        matched, rules = dict(base.matched), dict(base.rules)
        unmatched = {u.ident: u for u in base.unmatched}
        forced: dict[str, str] = {}
        for ident, d in chosen.items():
            if ident not in matched and ident not in unmatched:
                continue  # not in this file
            if d.decision == "refuse":
                matched.pop(ident, None)
                rules.pop(ident, None)
                unmatched[ident] = Unmatched(ident, REFUSED)
            elif d.decision in ("accept", "override") and d.ent_id in pool:
                forced[ident] = d.ent_id  # type: ignore[assignment]
        claims: dict[str, list[str]] = {}
        for ident, ent in forced.items():
            claims.setdefault(ent, []).append(ident)
        for ident, ent in forced.items():
            matched.pop(ident, None)
            rules.pop(ident, None)
            if len(claims[ent]) > 1:
                unmatched[ident] = Unmatched(ident, AMBIGUOUS, (ent,))
            else:
                unmatched.pop(ident, None)
                matched[ident] = ent
                rules[ident] = "manual"
        for ident, ent in list(matched.items()):
            if ent in claims and rules.get(ident) != "manual":
                del matched[ident]
                rules.pop(ident, None)
                unmatched[ident] = Unmatched(ident, AMBIGUOUS, (ent,))
        out[kind] = KindResult(matched, rules, sorted(unmatched.values(), key=lambda u: u.ident))
    return out


def decisions_from_selection(selection: Selection) -> Decisions:
    out: Decisions = {}
    for kind in PERSON_KINDS:
        for ident, d in ((selection.get("persons") or {}).get(kind) or {}).items():
            if d.get("decision") in ("accept", "refuse", "override"):
                out.setdefault(kind, {})[ident] = Decision(d["decision"], d.get("ent_id"))
    return out


# --------------------------------------------------------------------------------------- selection


def item_state(stored: StoredSelection | None, kind: str, ident: str) -> str:
    """known (active at the last manual import), deactivated (off there), new (never selected)."""
    prev = (stored or {}).get(kind) or {}
    if ident not in prev:
        return "new"
    return "known" if prev[ident] else "deactivated"


def selectable(tt: Timetable, courses: Iterable[Course]) -> dict[str, list[str]]:
    return {"subjects": list(tt.subjects), "classes": list(tt.classes), "groups": list(tt.groups),
            "courses": [c.key for c in courses]}


def default_selection(tt: Timetable, courses: Iterable[Course], stored: StoredSelection | None, *,
                      keep_previous: bool) -> Selection:
    """Everything on; with `keep_previous` (the wizard's starting point) what the last manual import turned
    off stays off."""
    sel: Selection = {}
    for kind, idents in selectable(tt, courses).items():
        prev = (stored or {}).get(kind) or {}
        sel[kind] = {i: (bool(prev.get(i, True)) if keep_previous else True) for i in idents}
    return sel


def kept_courses(courses: Iterable[Course], selection: Mapping[str, Mapping[str, bool]], *,
                 unknown_wait: bool) -> tuple[list[Course], list[Course]]:
    """(kept, waiting). A course is kept when it is on and so are its subject and its class or group.
    `unknown_wait` (automatic imports): a course the last manual import never saw waits for a manual
    import instead of being imported."""
    subjects, classes, groups = (selection.get(k) or {} for k in ("subjects", "classes", "groups"))
    chosen = selection.get("courses") or {}
    kept: list[Course] = []
    waiting: list[Course] = []
    for c in courses:
        on = chosen.get(c.key)
        if on is None:
            if unknown_wait:
                waiting.append(c)
                continue
            on = True
        target_on = (classes if c.kind == "class" else groups).get(c.target, True)
        if on and subjects.get(c.subject, True) and target_on:
            kept.append(c)
    return kept, waiting


# ----------------------------------------------------------------------------------------- preview


def _person_view(p: Any) -> dict[str, Any]:
    return {"id": p.id, "kind": p.kind, "last_name": p.last_name, "first_name": p.first_name,
            "birth_date": p.birth_date.isoformat() if p.birth_date else None}


def person_rows(tt: Timetable, kind: str, result: KindResult, directory: Directory | None,
                decisions: Mapping[str, Decision]) -> list[dict[str, Any]]:
    """Each teacher or student of the file with its match, or its reason and candidates: the directory
    persons of the allowed kinds with the same normalised last name (plus those in competition)."""
    people = tt.teachers if kind == "teachers" else tt.students
    by_id = {p.id: p for p in (directory.persons if directory else ()) if p.kind in ALLOWED_KINDS[kind]}
    by_last: dict[str, list[Any]] = {}
    for p in by_id.values():
        by_last.setdefault(normalise(p.last_name), []).append(p)
    reasons = {u.ident: u for u in result.unmatched}
    rows = []
    for ident, person in people.items():
        born = person.birth_date if isinstance(person, Student) else None  # the model keeps students' only
        row: dict[str, Any] = {"ident": ident, "last_name": person.last_name, "first_name": person.first_name,
                               "birth_date": born.isoformat() if born else None}
        ent = result.matched.get(ident)
        if ent is not None:
            row.update(status="matched", ent_id=ent, rule=result.rules.get(ident),
                       ent=_person_view(by_id[ent]) if ent in by_id else None, candidates=[])
        else:
            u = reasons.get(ident)
            ids = list(u.candidates) if u else []
            ids += [p.id for p in sorted(by_last.get(normalise(person.last_name), []), key=lambda p: p.id)]
            seen: list[str] = []
            for i in ids:
                if i in by_id and i not in seen:
                    seen.append(i)
            row.update(status="unmatched", ent_id=None, reason=u.reason if u else "no_directory",
                       candidates=[_person_view(by_id[i]) for i in seen[:MAX_CANDIDATES]])
        d = decisions.get(ident)
        row["decision"] = {"decision": d.decision, "ent_id": d.ent_id} if d else None
        rows.append(row)
    return sorted(rows, key=lambda r: (r["status"] != "unmatched", r["last_name"], r["first_name"], r["ident"]))


def establishment_preview(est: str, tt: Timetable, courses: list[Course], directory: Directory | None,
                          snapshot: str | None, results: Mapping[str, KindResult],
                          stored: StoredSelection | None, decisions: Decisions,
                          counts: Mapping[str, Any]) -> dict[str, Any]:
    reasons = {k: {u.ident: u.reason for u in results[k].unmatched} for k in ("classes", "groups")}
    subjects = [{"ident": s.ident, "code": s.code, "label": s.label, "state": item_state(stored, "subjects", s.ident)}
                for s in tt.subjects.values()]
    units = {k: [{"ident": u.ident, "name": u.name, "ent_id": results[k].matched.get(u.ident),
                  "reason": reasons[k].get(u.ident), "state": item_state(stored, k, u.ident)}
                 for u in table.values()]
             for k, table in (("classes", tt.classes), ("groups", tt.groups))}
    course_rows = [{"key": c.key, "label": c.label, "subject": c.subject, "kind": c.kind, "target": c.target,
                    "teachers": list(c.teachers), "state": item_state(stored, "courses", c.key)} for c in courses]
    return {"establishment": est, "directory": snapshot, "counts": dict(counts), "subjects": subjects,
            "classes": units["classes"], "groups": units["groups"], "courses": course_rows,
            "persons": {k: person_rows(tt, k, results[k], directory, decisions.get(k) or {})
                        for k in PERSON_KINDS}}


def initial_selection(tt: Timetable, courses: list[Course], stored: StoredSelection | None,
                      decisions: Decisions) -> Selection:
    sel = default_selection(tt, courses, stored, keep_previous=True)
    people: dict[str, Mapping[str, Any]] = {"teachers": tt.teachers, "students": tt.students}
    sel["persons"] = {k: {i: {"decision": d.decision, "ent_id": d.ent_id}
                          for i, d in (decisions.get(k) or {}).items() if i in people[k]} for k in PERSON_KINDS}
    return sel


class WizardError(Exception):
    """A wizard request the import's state refuses: `status` is the HTTP answer (409, 422)."""

    def __init__(self, status: int, code: str, detail: str, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.errors = errors


class SelectionError(ValueError):
    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(f"{len(errors)} error(s)")
        self.errors = errors


def merge_selection(current: Selection, patch: Any, preview: Mapping[str, Any],
                    directory_ids: Mapping[str, set[str]]) -> Selection:
    """`patch` (PUT …/selection, partial) on top of `current`, checked against the establishment's preview:
    unknown idents, non-boolean switches, unknown decisions, an override naming no ENT person of the
    right kind, an acceptance of a person with no match → SelectionError (422). `directory_ids`: per
    person kind, the ENT ids eligible."""
    errors: list[dict[str, Any]] = []
    if not isinstance(patch, dict):
        raise SelectionError([{"loc": ["body"], "msg": "must be an object", "type": "object_type"}])
    out: Selection = {k: dict(current.get(k) or {}) for k in SELECT_KINDS}
    out["persons"] = {k: dict((current.get("persons") or {}).get(k) or {}) for k in PERSON_KINDS}
    for key in patch:
        if key not in (*SELECT_KINDS, "persons"):
            errors.append({"loc": ["body", key], "msg": "unknown field", "type": "extra_forbidden"})
    for kind in SELECT_KINDS:
        items = patch.get(kind)
        if items is None:
            continue
        if not isinstance(items, dict):
            errors.append({"loc": ["body", kind], "msg": "must be an object {ident: true|false}", "type": "dict_type"})
            continue
        for ident, on in items.items():
            if ident not in out[kind]:
                errors.append({"loc": ["body", kind, ident], "msg": "not in this import", "type": "unknown"})
            elif not isinstance(on, bool):
                errors.append({"loc": ["body", kind, ident], "msg": "must be true or false", "type": "bool_type"})
            else:
                out[kind][ident] = on
    persons = patch.get("persons")
    if persons is not None:
        if not isinstance(persons, dict):
            errors.append({"loc": ["body", "persons"], "msg": "must be an object", "type": "dict_type"})
            persons = {}
        rows = {k: {r["ident"]: r for r in (preview.get("persons") or {}).get(k, [])} for k in PERSON_KINDS}
        for kind, items in persons.items():
            if kind not in PERSON_KINDS or not isinstance(items, dict):
                errors.append({"loc": ["body", "persons", kind], "msg": "teachers or students: {ident: decision}",
                               "type": "unknown"})
                continue
            for ident, d in items.items():
                loc = ["body", "persons", kind, ident]
                row = rows[kind].get(ident)
                if row is None:
                    errors.append({"loc": loc, "msg": "not in this import", "type": "unknown"})
                    continue
                if isinstance(d, str):
                    d = {"decision": d}
                if not isinstance(d, dict) or d.get("decision") not in DECISIONS:
                    errors.append({"loc": loc, "msg": "decision is accept, refuse, override or auto", "type": "enum"})
                    continue
                decision, ent_id = d["decision"], d.get("ent_id")
                if decision == "accept":
                    ent_id = ent_id or row.get("ent_id")
                    if not ent_id:
                        errors.append({"loc": loc, "msg": "no match to accept: override with an ent_id",
                                       "type": "no_match"})
                        continue
                if decision in ("accept", "override") and ent_id not in directory_ids.get(kind, set()):
                    errors.append({"loc": [*loc, "ent_id"], "msg": "not a person of the ENT directory of this kind",
                                   "type": "unknown"})
                    continue
                if decision == "auto":
                    out["persons"][kind][ident] = {"decision": "auto", "ent_id": None}
                else:
                    out["persons"][kind][ident] = {"decision": decision,
                                                   "ent_id": None if decision == "refuse" else ent_id}
    if errors:
        raise SelectionError(errors)
    return out


def forget_person(preview: Mapping[str, Any], selection: Mapping[str, Any], ent_id: str,
                  snapshots: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, Any], bool]:
    """An awaiting preview and its selection without an erased ENT person: no longer anyone's match or
    candidate, no decision naming them, and each establishment pointed at its new directory snapshot
    (`snapshots`), so that the confirm cannot match them again. Returns (preview, selection, changed)."""
    out = copy.deepcopy(dict(preview))
    changed = False
    for est in out.get("establishments", []):
        if est.get("establishment") in snapshots and est.get("directory") != snapshots[est["establishment"]]:
            est["directory"] = snapshots[est["establishment"]]
            changed = True
        for rows in (est.get("persons") or {}).values():
            for row in rows:
                kept = [c for c in row.get("candidates") or [] if c.get("id") != ent_id]
                if len(kept) != len(row.get("candidates") or []):
                    row["candidates"], changed = kept, True
                if row.get("ent_id") == ent_id:
                    row.update(status="unmatched", ent_id=None, ent=None, rule=None, reason=NOT_FOUND)
                    changed = True
    chosen = copy.deepcopy(dict(selection))
    for est_selection in chosen.values():
        for decisions in ((est_selection or {}).get("persons") or {}).values():
            for ident in [i for i, d in decisions.items() if (d or {}).get("ent_id") == ent_id]:
                del decisions[ident]
                changed = True
    return out, chosen, changed
