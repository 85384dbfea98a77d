"""Reconciler rules, pure: reading and checking the ENT directory and IdPN uploads sent as CSV, the rules
a JSON upload (read by services/reconciler/schemas.py) shares with them (one id per entry, one ENT id
per PRONOTE id), each establishment's plan (the matching of `shared.reconcile` with the wizard's decisions
on top) and its group work, the stage's decision, and the unreconciled CSV.

Group creation is `services/reconciler/groups.py`; the manual wizard's rules `services/reconciler/wizard.py`."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from services.reconciler import groups, wizard
from shared.messages import FileIdent, ImportStatus, Mode, StageCommand, StepStatus
from shared.reconcile import (
    KINDS,
    NO_DIRECTORY,
    PERSON_KINDS,
    Directory,
    DirectoryPerson,
    DirectoryUnit,
    KindResult,
)
from shared.stage import StageResult
from shared.timetable import Course, Timetable, derive_courses

MAX_ERRORS = 100
MAX_ID = 128
MAX_NAME = 255

# CSV directory: one file, one row per entry; `type` (alias `kind`) says what the row is.
CSV_COLUMNS = ("type", "id", "last_name", "first_name", "birth_date", "pronote_id", "cas_id", "name")
CSV_ALIASES = {"kind": "type", "nom": "last_name", "prenom": "first_name", "prénom": "first_name",
               "date_naissance": "birth_date", "idpn": "pronote_id", "id_pn": "pronote_id", "idcas": "cas_id",
               "id_cas": "cas_id", "libelle": "name", "ent_id": "id"}
UNIT_TYPES = ("class", "group")


class UploadError(Exception):
    """The upload cannot be read at all (encoding, JSON syntax, missing header): 422 with this detail."""

    def __init__(self, detail: str, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors or []


@dataclass
class DirectoryUpload:
    persons: list[DirectoryPerson] = field(default_factory=list)
    classes: list[DirectoryUnit] = field(default_factory=list)
    groups: list[DirectoryUnit] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        out = {k: 0 for k in PERSON_KINDS}
        for p in self.persons:
            out[p.kind] += 1
        return {"persons": len(self.persons), **out, "classes": len(self.classes), "groups": len(self.groups)}


def add_error(errors: list[dict[str, Any]], loc: list[Any], msg: str, kind: str, line: int | None = None) -> None:
    """One error of an upload (`loc`, `msg`, `type`, and `line` for CSV), at most MAX_ERRORS of them."""
    if len(errors) < MAX_ERRORS:
        errors.append({"loc": loc, "msg": msg, "type": kind, **({"line": line} if line is not None else {})})


def parse_date(value: Any) -> date:
    """ISO (2012-03-04) or French (04/03/2012) dates; ValueError otherwise."""
    text = str(value).strip()
    if "/" in text:
        return datetime.strptime(text, "%d/%m/%Y").date()
    return date.fromisoformat(text)


def clean_text(value: Any) -> str | None:
    """An upload's text field: trimmed, a number taken as its text, blank = None; TypeError otherwise."""
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise TypeError
    value = value.strip()
    return value or None


def _entry(raw: Mapping[str, Any], section: str, loc: list[Any], errors: list[dict[str, Any]],
           line: int | None) -> dict[str, Any] | None:
    """One entry's fields checked; None (and errors) when it is invalid."""
    out: dict[str, Any] = {}
    ok = True
    required = ("id", "kind", "last_name", "first_name") if section == "persons" else ("id", "name")
    optional = ("birth_date", "pronote_id", "cas_id") if section == "persons" else ()
    for name in required + optional:
        try:
            value = clean_text(raw.get(name))
        except TypeError:
            add_error(errors, [*loc, name], "must be a string", "string_type", line)
            ok = False
            continue
        if value is None:
            if name in required and not (name == "first_name" and name in raw):
                add_error(errors, [*loc, name], "field required", "missing", line)
                ok = False
            out[name] = "" if name == "first_name" else None
            continue
        limit = MAX_NAME if name in ("last_name", "first_name", "name") else MAX_ID
        if len(value) > limit:
            add_error(errors, [*loc, name], f"at most {limit} characters", "string_too_long", line)
            ok = False
        out[name] = value
    if section == "persons":
        if out.get("kind") is not None and out["kind"] not in PERSON_KINDS:
            add_error(errors, [*loc, "kind"], "must be one of teacher, staff, student", "enum", line)
            ok = False
        if out.get("birth_date"):
            try:
                out["birth_date"] = parse_date(out["birth_date"])
            except ValueError:
                add_error(errors, [*loc, "birth_date"], "not a date (YYYY-MM-DD or DD/MM/YYYY)", "date_parsing", line)
                ok = False
    return out if ok else None


def duplicate_id(errors: list[dict[str, Any]], seen: dict[str, set[str]], section: str, raw_id: Any,
                 loc: list[Any], line: int | None = None) -> bool:
    """An id is given once per section: True (and an error) for a second entry with the same id, even when
    one of the two entries is otherwise invalid; else the id is remembered."""
    ids = seen.setdefault(section, set())
    try:
        key = clean_text(raw_id)  # the id as it is stored: 7, "7" and " 7 " are one id
    except TypeError:
        key = None
    if key:
        if key in ids:
            add_error(errors, [*loc, "id"], f"duplicate id {key!r} in {section}", "duplicate", line)
            return True
        ids.add(key)
    return False


def directory_person(ent_id: str, kind: str, last_name: str, first_name: str, birth_date: date | None,
                     pronote_id: str | None, cas_id: str | None) -> DirectoryPerson:
    """A directory entry as it is kept: the birth date only for a student, the one kind whose matching reads
    it (seed 003 « date de naissance pour les apprenants »); a teacher's or a staff member's is dropped."""
    return DirectoryPerson(ent_id, kind, last_name, first_name, birth_date if kind == "student" else None,
                           pronote_id, cas_id)


def _collect(upload: DirectoryUpload, section: str, entry: dict[str, Any] | None, raw_id: Any,
             seen: dict[str, set[str]], loc: list[Any], line: int | None) -> None:
    """Keep a valid entry that is not a duplicate."""
    if duplicate_id(upload.errors, seen, section, raw_id, loc, line) or entry is None:
        return
    if section == "persons":
        upload.persons.append(directory_person(entry["id"], entry["kind"], entry["last_name"], entry["first_name"],
                                               entry.get("birth_date"), entry.get("pronote_id"), entry.get("cas_id")))
    else:
        getattr(upload, section).append(DirectoryUnit(entry["id"], entry["name"]))


def decode_text(data: bytes) -> str:
    """UTF-8 (with or without BOM), else Windows-1252 (spreadsheets saved as CSV in French Windows)."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="strict")


def load_json(data: bytes) -> Any:
    """An uploaded JSON body (UTF-8 or Windows-1252), or UploadError saying why not."""
    try:
        return json.loads(decode_text(data))
    except (ValueError, UnicodeDecodeError) as exc:
        raise UploadError(f"Body is not valid JSON: {exc}") from exc


def _csv_rows(data: bytes) -> tuple[list[str], list[tuple[int, list[str]]]]:
    text = decode_text(data)
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        raise UploadError("Empty CSV: a header line is required")
    delimiter = ";" if lines[0].count(";") >= lines[0].count(",") else ","
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    rows = [(reader.line_num, row) for row in reader]
    header = [h.strip().lower() for h in rows[0][1]]
    return header, [(n, r) for n, r in rows[1:] if any(c.strip() for c in r)]


def parse_directory_csv(data: bytes) -> DirectoryUpload:
    """CSV (`;` or `,`, UTF-8 or Windows-1252), a header line, columns by name in any order
    (case-insensitive; French aliases nom, prenom, date_naissance, idpn, idcas, libelle): `type` (alias
    `kind`: teacher | staff | student | class | group — a persons-only file simply has no class/group
    rows), `id`, `last_name`, `first_name`, `birth_date` (YYYY-MM-DD or DD/MM/YYYY), `pronote_id`, `cas_id`
    for persons; `id`, `name` for classes and groups. Errors name the line (1 = header) and the column."""
    header, rows = _csv_rows(data)
    columns = [CSV_ALIASES.get(h, h) for h in header]
    upload = DirectoryUpload()
    unknown = [h for h, c in zip(header, columns, strict=True) if c not in CSV_COLUMNS]
    for h in unknown:
        add_error(upload.errors, ["header", h], "unknown column", "unknown_column", 1)
    if "type" not in columns:
        add_error(upload.errors, ["header", "type"], "a type (or kind) column is required", "missing", 1)
    if "id" not in columns:
        add_error(upload.errors, ["header", "id"], "an id column is required", "missing", 1)
    if upload.errors:
        return upload
    seen: dict[str, set[str]] = {}
    for line, row in rows:
        raw = {c: (row[i] if i < len(row) else "") for i, c in enumerate(columns)}
        kind = (raw.get("type") or "").strip().lower()
        if kind in UNIT_TYPES:
            section = "classes" if kind == "class" else "groups"
            entry = _entry(raw, section, ["line", line], upload.errors, line)
        elif kind in PERSON_KINDS:
            section = "persons"
            entry = _entry({**raw, "kind": kind}, section, ["line", line], upload.errors, line)
        else:
            add_error(upload.errors, ["line", line, "type"], "must be teacher, staff, student, class or group", "enum",
                   line)
            continue
        _collect(upload, section, entry, raw.get("id"), seen, ["line", line], line)
    return upload


# --- IdPN (PRONOTE ids ↔ ENT persons) ---------------------------------------------------------------


@dataclass
class PronoteIdsUpload:
    associations: dict[str, str] = field(default_factory=dict)
    errors: list[dict[str, Any]] = field(default_factory=list)


def add_association(upload: PronoteIdsUpload, pronote: Any, ent: Any, loc: list[Any], line: int | None) -> None:
    """One PRONOTE id → ENT id line; a PRONOTE id given twice with different ENT ids is an error."""
    ok = True
    values = {}
    for name, value in (("pronote_id", pronote), ("ent_id", ent)):
        try:
            text = clean_text(value)
        except TypeError:
            text = None
        if text is None or len(text) > MAX_ID:
            add_error(upload.errors, [*loc, name], "required, at most 128 characters", "missing", line)
            ok = False
        values[name] = text
    if not ok:
        return
    p, e = str(values["pronote_id"]), str(values["ent_id"])
    if upload.associations.get(p, e) != e:
        add_error(upload.errors, [*loc, "pronote_id"], f"{p!r} given twice with different ENT ids", "duplicate", line)
        return
    upload.associations[p] = e


def parse_pronote_ids_csv(data: bytes) -> PronoteIdsUpload:
    """`pronote_id;ent_id` per line (`;` or `,`); a first line naming those columns is a header."""
    text = decode_text(data)
    first = text.splitlines()[0] if text.strip() else ""
    delimiter = ";" if first.count(";") >= first.count(",") else ","
    upload = PronoteIdsUpload()
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    order = (0, 1)
    for row in reader:
        line = reader.line_num
        if not any(c.strip() for c in row):
            continue
        cells = [c.strip() for c in row]
        if line == 1 and {c.lower() for c in cells} >= {"pronote_id", "ent_id"}:
            lowered = [c.lower() for c in cells]
            order = (lowered.index("pronote_id"), lowered.index("ent_id"))
            continue
        if len(cells) <= max(order):
            add_error(upload.errors, ["line", line], "expected pronote_id;ent_id", "columns", line)
            continue
        add_association(upload, cells[order[0]], cells[order[1]], ["line", line], line)
    return upload


# --- the stage ------------------------------------------------------------------------------------

KIND_LABELS = {"teachers": ("enseignant(s)", "teacher(s)"), "students": ("élève(s)", "student(s)"),
               "classes": ("classe(s)", "class(es)"), "groups": ("groupe(s)", "group(s)")}
AWAITING = ("Import manuel en attente de votre sélection (matières, classes, groupes, cours, rapprochements) : "
            "validez-la ou abandonnez l'import.",
            "Manual import awaiting your selection (subjects, classes, groups, courses, matches): confirm it or "
            "cancel the import.")


def unmatched_entries(tt: Timetable, kind: str, result: KindResult | None) -> list[list[str]]:
    """The unmatched entries of one kind as they are stored: `[ident, reason]` only — the names and birth
    dates are the canonical model's (sealed in the blob store), joined in when the list is read
    (`unmatched_rows`), so the database keeps no copy of them. `result` None = no directory: every entry
    of the file, reason no_directory."""
    if result is None:
        return [[ident, NO_DIRECTORY] for ident in _idents(tt, kind)]
    return [[u.ident, u.reason] for u in result.unmatched]


def unmatched_rows(tt: Timetable, kind: str, entries: list[list[str]]) -> list[dict[str, Any]]:
    """The rows of the unreconciled list (`unreconciled_csv`): stored entries joined with the file's data."""
    rows = []
    for ident, reason in entries:
        if kind == "teachers" and ident in tt.teachers:
            t = tt.teachers[ident]
            rows.append({"ident": ident, "last_name": t.last_name, "first_name": t.first_name, "birth_date": "",
                         "class": "", "reason": reason})
        elif kind == "students" and ident in tt.students:
            s = tt.students[ident]
            classes = ",".join(sorted({tt.classes[m.ident].name for m in s.classes if m.ident in tt.classes}))
            rows.append({"ident": ident, "last_name": s.last_name, "first_name": s.first_name,
                         "birth_date": s.birth_date.isoformat() if s.birth_date else "", "class": classes,
                         "reason": reason})
        elif kind in ("classes", "groups"):
            unit = (tt.classes if kind == "classes" else tt.groups).get(ident)
            rows.append({"ident": ident, "name": unit.name if unit else "", "reason": reason})
    return sorted(rows, key=lambda r: (r.get("last_name", r.get("name", "")), r.get("first_name", ""), r["ident"]))


def _idents(tt: Timetable, kind: str) -> list[str]:
    tables: dict[str, Mapping[str, object]] = {"teachers": tt.teachers, "students": tt.students,
                                                "classes": tt.classes, "groups": tt.groups}
    return list(tables[kind])


@dataclass
class EstablishmentMatching:
    establishment: str
    snapshot: str | None  # sha256 of the directory snapshot used; None = no directory
    counts: dict[str, dict[str, int]]
    unmatched: dict[str, list[list[str]]]  # kind → [[ident, reason], …] (`unmatched_entries`)
    model: str | None = None  # sha256 of the canonical model the idents are of


def establishment_matching(est: str, tt: Timetable, snapshot: str | None,
                           results: Mapping[str, KindResult] | None, model: str | None = None) -> EstablishmentMatching:
    counts = {}
    unmatched = {}
    for kind in KINDS:
        r = results[kind] if results is not None else None
        entries = unmatched_entries(tt, kind, r)
        unmatched[kind] = entries
        counts[kind] = r.counts() if r is not None else {"matched": 0, "unmatched": len(entries)}
    return EstablishmentMatching(est, snapshot, counts, unmatched, model)


def directory_counts(d: Directory) -> dict[str, int]:
    kinds = {k: sum(1 for p in d.persons if p.kind == k) for k in ("teacher", "staff", "student")}
    return {"persons": len(d.persons), **kinds, "classes": len(d.classes), "groups": len(d.groups),
            "pronote_ids": len(d.associations)}


def timetable_parts(cmd: StageCommand) -> dict[str, str]:
    """Establishment → sha256 of its canonical timetable, from the command's artifacts."""
    parts: dict[str, str] = dict(cmd.artifacts.get("timetables") or {})
    if not parts and cmd.establishment and cmd.artifacts.get("timetable_sha256"):
        parts = {cmd.establishment: cmd.artifacts["timetable_sha256"]}
    if not parts:
        raise RuntimeError("no canonical timetable in the command's artifacts")
    return parts


@dataclass
class EstPlan:
    """One establishment of an import: its timetable, directory, matching (with the stored decisions)."""

    est: str
    tt: Timetable
    courses: list[Course]
    snapshot: str | None
    directory: Directory | None
    raw: dict[str, KindResult] | None  # the rules' matching; None = no directory
    results: dict[str, KindResult]  # with the decisions applied (empty results without a directory)
    matching: EstablishmentMatching
    stored: wizard.StoredSelection | None  # the selection of the last manual import
    decisions: wizard.Decisions


def plan_establishment(est: str, tt: Timetable, snapshot: str | None, directory: Directory | None,
                       raw: dict[str, KindResult] | None, stored: wizard.StoredSelection | None,
                       decisions: wizard.Decisions, model: str | None = None) -> EstPlan:
    """One establishment: `raw` is the rules' matching of `tt` (blob `model`) against `directory` (None
    without a directory), the stored decisions go on top."""
    results = wizard.apply_decisions(raw, directory, decisions) if raw is not None and directory is not None \
        else wizard.empty_results()
    matching = establishment_matching(est, tt, snapshot, results if raw is not None else None, model)
    return EstPlan(est, tt, derive_courses(tt), snapshot, directory, raw, results, matching, stored, decisions)


@dataclass
class GroupWork:
    """What group creation will write for one establishment, computed before the transaction: the selection
    that applies, the courses kept and those waiting, the groups and memberships wanted."""

    plan: EstPlan
    selection: wizard.Selection
    kept: list[Course]
    late: list[Course]
    want_groups: dict[str, groups.GroupRow]
    want_members: dict[str, groups.MemberRow]


def group_work(plan: EstPlan, mode: Mode) -> GroupWork:
    """A manual import without the wizard is confirmed with the default selection (everything on); an
    automatic one re-syncs only what the last manual import selected, and the courses that appeared since
    wait for a manual import (seed 001)."""
    if mode is Mode.MANUAL:
        return selected_work(plan, wizard.default_selection(plan.tt, plan.courses, plan.stored, keep_previous=False))
    return selected_work(plan, dict(plan.stored or {}), unknown_wait=plan.stored is not None)


def selected_work(plan: EstPlan, selection: wizard.Selection, *, unknown_wait: bool = False) -> GroupWork:
    """The groups and memberships of a given selection (the wizard's confirm, or `group_work`'s)."""
    kept, late = wizard.kept_courses(plan.courses, selection, unknown_wait=unknown_wait)
    want_g, want_m = groups.desired(plan.tt, plan.results, selection, kept)
    return GroupWork(plan, selection, kept, late, want_g, want_m)


@dataclass
class Waiting:
    """A course of an automatic import that no manual import selected: it waits for one."""

    establishment: str
    key: str
    label: str


def sum_actions(per_est: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for actions in per_est:
        for a in actions:
            row = out.setdefault(a["action"], {"action": a["action"], "success": 0, "error": 0})
            row["success"] += a["success"]
            row["error"] += a["error"]
    return list(out.values())


def decide(found: list[EstablishmentMatching], *, actions: list[dict[str, Any]] | None = None,
           kept: int | None = None, waiting: list[Waiting] | None = None, paused: bool = False) -> StageResult:
    """ok when everything matched, else warning; counts per kind {matched, unmatched} (summed over the
    establishments of a cité scolaire file, each also under `establishments`), the bilan's `actions`
    (groups and memberships created / deleted), `courses_kept` and `courses_waiting`. `paused`: a manual
    import with the wizard, now awaiting its selection (nothing written yet)."""
    totals = {kind: {"matched": 0, "unmatched": 0} for kind in KINDS}
    for m in found:
        for kind in KINDS:
            for k in ("matched", "unmatched"):
                totals[kind][k] += m.counts[kind][k]
    missing = [m.establishment for m in found if m.snapshot is None]
    waiting = waiting or []
    actions = actions if actions is not None else []
    by_action = {a["action"]: a["success"] for a in actions}
    counts: dict[str, Any] = {**totals, "actions": actions, "groups_created": by_action.get("groups_created", 0),
                              "establishments": {m.establishment: {**m.counts, "directory": m.snapshot}
                                                 for m in found}}
    if kept is not None:
        counts["courses_kept"] = kept
    counts["courses_waiting"] = len(waiting)
    unmatched = {kind: totals[kind]["unmatched"] for kind in KINDS}
    fr_parts = [f"{n} {KIND_LABELS[k][0]}" for k, n in unmatched.items() if n]
    en_parts = [f"{n} {KIND_LABELS[k][1]}" for k, n in unmatched.items() if n]
    if paused:
        tail_fr, tail_en = AWAITING
    else:
        g = {k: by_action.get(k, 0) for k in ("groups_created", "groups_deleted", "memberships_created",
                                               "memberships_deleted")}
        tail_fr = (f"Groupes : {g['groups_created']} créé(s), {g['groups_deleted']} supprimé(s) ; rattachements : "
                   f"{g['memberships_created']} créé(s), {g['memberships_deleted']} supprimé(s).")
        tail_en = (f"Groups: {g['groups_created']} created, {g['groups_deleted']} deleted; memberships: "
                   f"{g['memberships_created']} created, {g['memberships_deleted']} deleted.")
    if missing:
        fr = f"Aucun annuaire ENT déposé pour l'établissement {', '.join(missing)} : rapprochement impossible. "
        en = f"No ENT directory uploaded for establishment {', '.join(missing)}: nothing reconciled. "
    elif fr_parts:
        fr = "Non rapprochés : " + ", ".join(fr_parts) + ". "
        en = "Not reconciled: " + ", ".join(en_parts) + ". "
    else:
        fr, en = "Tout a été rapproché. ", "Everything reconciled. "
    alerts: list[dict[str, Any]] = []
    if waiting:
        labels = [w.label for w in waiting]
        fr += f"{len(waiting)} cours en attente d'un import manuel. "
        en += f"{len(waiting)} course(s) waiting for a manual import. "
        alerts.append({"code": "courses_waiting", "severity": "warning", "count": len(waiting),
                       "message": f"{len(waiting)} cours nouveaux ne sont pas importés : ils attendent leur "
                                  "sélection lors d'un import manuel.",
                       "message_en": f"{len(waiting)} new course(s) not imported: they wait to be selected in a "
                                     "manual import.",
                       "courses": [{"establishment": w.establishment, "key": w.key, "label": w.label}
                                   for w in waiting[:100]],
                       "labels": labels[:20]})
    status = StepStatus.WARNING if (missing or fr_parts or waiting) else StepStatus.OK
    return StageResult(status, outcome=ImportStatus.AWAITING_SELECTION if paused else None,
                       message=fr + tail_fr, message_en=en + tail_en, counts=counts, alerts=alerts or None,
                       artifacts={"reconciliation": {"counts": totals}})


def decide_restore(actions: list[dict[str, Any]], kept: int, restored: dict[str, str]) -> StageResult:
    """An undo import's groups step: the groups and memberships as they were before the undone import
    (`restored`: per establishment, "exact" when its inverse was applied, "resynchronised" when only the
    restored model could be re-applied — its history predates what an exact restore needs)."""
    g = {a["action"]: a["success"] for a in actions}
    fr = (f"Restauration des groupes : {g.get('groups_created', 0)} créé(s), {g.get('groups_deleted', 0)} "
          f"supprimé(s) ; rattachements : {g.get('memberships_created', 0)} créé(s), "
          f"{g.get('memberships_deleted', 0)} supprimé(s).")
    en = (f"Groups restored: {g.get('groups_created', 0)} created, {g.get('groups_deleted', 0)} deleted; "
          f"memberships: {g.get('memberships_created', 0)} created, {g.get('memberships_deleted', 0)} deleted.")
    resynced = sorted(est for est, how in restored.items() if how != "exact")
    if resynced:
        fr += f" Établissement(s) {', '.join(resynced)} : groupes recalculés depuis l'emploi du temps restauré."
        en += f" Establishment(s) {', '.join(resynced)}: groups recomputed from the restored timetable."
    counts = {"actions": actions, "groups_created": g.get("groups_created", 0), "courses_kept": kept,
              "restored": restored}
    return StageResult(StepStatus.WARNING if resynced else StepStatus.OK, message=fr, message_en=en, counts=counts)


LIST_GONE = ("Cette liste n'est plus conservée : les listes des non rapprochés sont supprimées {days} jours après "
             "leur import (données personnelles, durée de conservation). Les totaux restent dans l'historique.",
             "This list is no longer kept: unreconciled lists are deleted {days} days after their import (personal "
             "data retention). The counts stay in the history.")
PREVIEW_GONE = ("Cet aperçu n'est plus conservé : l'aperçu d'un import manuel validé ou abandonné est supprimé {days} "
                "jours après (données personnelles, durée de conservation). Le bilan reste dans l'historique.",
                "This preview is no longer kept: the preview of a confirmed or cancelled manual import is deleted "
                "{days} days later (personal data retention). The bilan stays in the history.")
PERSON_CSV = ("ident", "last_name", "first_name", "birth_date", "class", "reason")
UNIT_CSV = ("ident", "name", "reason")


def unreconciled_csv(kind: str, rows: list[dict[str, Any]]) -> str:
    """Semicolon-separated, header line; persons: ident;last_name;first_name;birth_date;class;reason,
    classes/groups: ident;name;reason. Cells starting with = + - @ are quoted with a leading ' (spreadsheet
    formula injection)."""
    columns = PERSON_CSV if kind in ("teachers", "students") else UNIT_CSV
    out = io.StringIO()
    writer = csv.writer(out, delimiter=";", lineterminator="\r\n")
    writer.writerow(columns)
    seen = set()
    for row in rows:
        cells = tuple(_safe_cell(str(row.get(c, "") or "")) for c in columns)
        if cells not in seen:
            seen.add(cells)
            writer.writerow(cells)
    return out.getvalue()


def _safe_cell(value: str) -> str:
    return "'" + value if value[:1] in ("=", "+", "-", "@") else value


# -------------------------------------------------------------------------------- a person (privacy)


def person_file_idents(memberships: list[Any], decisions: list[Any]) -> list[FileIdent]:
    """An ENT person's idents in the timetable files, per establishment: those of their memberships (the
    last import matched them) and of the wizard's decisions naming them."""
    found = {(m.establishment, "teachers" if m.person_kind == "teacher" else "students", m.file_ident)
             for m in memberships}
    found |= {(d.establishment, d.kind, d.ident) for d in decisions}
    return [FileIdent(establishment=e, kind=k, ident=i) for e, k, i in sorted(found)]  # type: ignore[arg-type]


def row_view(row: Any) -> dict[str, Any]:
    """A stored row as the person export shows it (dates and instants as ISO 8601)."""
    out = {}
    for key, value in row._mapping.items():
        out[key] = value.isoformat() if hasattr(value, "isoformat") else value
    return out
