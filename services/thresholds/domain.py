"""Threshold control (design.md §6, §7; seeds 000 and 001), pure: no I/O here.

One rule, one function: `exceeded` (strictly greater), `ratio` (existing = 0), one function per control
figure, `school_year_start` and `automatic_import_refusal` (the automatic-import precondition), `evaluate`
(figures × settings) and `decide` (the stage's outcome).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from shared.messages import ImportStatus, Mode, StageCommand, StepStatus
from shared.stage import StageResult
from shared.timetable import Timetable, count_sessions, derive_closure_weeks, derive_courses, slot_targets

# --- the controls and their defaults (seed 001 "Seuils et Contrôles"; seed 000 for sessions_changed) ----

PERCENT = "percent"
CHECK = "check"


@dataclass(frozen=True)
class ControlSpec:
    name: str
    label: str  # the seed's wording
    label_en: str
    default_value: int | None  # None for the on/off check
    default_blocking: bool
    kind: str = PERCENT


CONTROLS: tuple[ControlSpec, ...] = (
    ControlSpec("subjects_created", "% de matières créées", "% of subjects created", 50, True),
    ControlSpec("courses_created", "% de services d'enseignement créés", "% of courses created", 50, True),
    ControlSpec("courses_modified", "% de services d'enseignement modifiés", "% of courses modified", 30, True),
    ControlSpec("courses_deleted", "% de services d'enseignement supprimés", "% of courses deleted", 50, True),
    ControlSpec("sessions_changed", "% de séances en plus ou en moins par rapport au dernier import",
                "% of sessions more or fewer than the last import", 50, True),
    ControlSpec("sessions_on_incomplete_courses", "% de séances créées sur des services d'enseignement incomplets",
                "% of sessions on incomplete courses", 40, False),
    # Seed 001 describes "% de cours annulés" without a default; 50 % blocking like its neighbours.
    ControlSpec("cancelled_sessions", "% de cours annulés", "% of cancelled sessions", 50, True),
    ControlSpec("closures_added", "% de périodes de fermeture ajoutées", "% of closure periods added", 10, True),
    ControlSpec("closures_removed", "% de périodes de fermeture supprimées", "% of closure periods removed", 10, True),
    ControlSpec("teachers_unreconciled", "% d'enseignants non rapprochés", "% of teachers not reconciled", 5, False),
    ControlSpec("students_unreconciled", "% d'élèves non rapprochés", "% of students not reconciled", 5, False),
    ControlSpec("classes_unreconciled", "% de classes non rapprochées", "% of classes not reconciled", 5, False),
    ControlSpec("groups_unreconciled", "% de groupes non rapprochés", "% of groups not reconciled", 5, False),
    ControlSpec("closure_coherence", "Cohérence avec les périodes de fermeture", "Coherence with closure periods",
                None, True, CHECK),
)
SPECS: dict[str, ControlSpec] = {c.name: c for c in CONTROLS}
UNRECONCILED = ("teachers_unreconciled", "students_unreconciled", "classes_unreconciled", "groups_unreconciled")

CLOSURE_COHERENCE_WARNING = (
    "Très important : ne décochez pas « Bloquant » pour la cohérence avec les périodes de fermeture. "
    "Un fichier dont les dates de début et de fin sont incohérentes risque d'impacter l'archivage légal de vos "
    "cahiers de textes.",
    "Very important: keep 'Blocking' on for the closure-period coherence control. A file whose start and end "
    "dates are incoherent may damage the legal archive of your class logs.")


@dataclass(frozen=True)
class Setting:
    value: int | None
    blocking: bool
    enabled: bool = True

    def as_dict(self) -> dict[str, Any]:
        return {"value": self.value, "blocking": self.blocking, "enabled": self.enabled}


def default_settings() -> dict[str, Setting]:
    return {c.name: Setting(c.default_value, c.default_blocking) for c in CONTROLS}


def settings_from_json(stored: Mapping[str, Any] | None) -> dict[str, Setting]:
    """Stored settings over the defaults (a control added later gets its default)."""
    out = default_settings()
    for name, raw in (stored or {}).items():
        if name in out and isinstance(raw, Mapping):
            d = out[name]
            out[name] = Setting(raw.get("value", d.value), bool(raw.get("blocking", d.blocking)),
                                bool(raw.get("enabled", d.enabled)))
    return out


def setting_changes(old: Mapping[str, Setting], new: Mapping[str, Setting]) -> list[tuple[str, str, Any, Any]]:
    """(control, field, old, new) for every field that changed: one audit row each."""
    out: list[tuple[str, str, Any, Any]] = []
    for name in SPECS:
        a, b = old[name].as_dict(), new[name].as_dict()
        out.extend((name, key, a[key], b[key]) for key in ("value", "blocking", "enabled") if a[key] != b[key])
    return out


def weakens_closure_coherence(old: Mapping[str, Setting], new: Mapping[str, Setting]) -> bool:
    """The UI warns strongly when the closure-coherence control stops blocking (seed 001)."""
    a, b = old["closure_coherence"], new["closure_coherence"]
    return (a.blocking and a.enabled) and not (b.blocking and b.enabled)


# --- the two arithmetic rules --------------------------------------------------------------------


def exceeded(computed: float | None, value: float | None) -> bool:
    """A threshold is exceeded iff the computed figure is STRICTLY greater than the value (seed 001).
    A figure that could not be computed never exceeds anything."""
    return computed is not None and value is not None and computed > value


def ratio(changed: int, existing: int) -> float:
    """changed / existing × 100; with nothing existing, 0 when nothing changed and 100 otherwise (§6)."""
    if existing <= 0:
        return 0.0 if changed <= 0 else 100.0
    return changed * 100.0 / existing


# --- what the controls look at in one canonical model ------------------------------------------------


@dataclass(frozen=True)
class Facts:
    """The parts of a canonical timetable the controls compare (computed once per model)."""

    subjects: frozenset[str]
    courses: dict[str, tuple[Any, ...]]  # course key → signature (teachers, slots and weeks)
    sessions: int
    sessions_on_incomplete: int
    cancellations: frozenset[tuple[Any, ...]]  # (course key, day, first place, week) cancelled
    closures: frozenset[tuple[date, date]]
    year: tuple[date, date]


def facts_of(tt: Timetable) -> Facts:
    courses: dict[str, tuple[Any, ...]] = {}
    cancellations: set[tuple[Any, ...]] = set()
    sessions = incomplete = 0
    members = _members(tt)
    for course in derive_courses(tt):
        slots = []
        for index in course.slots:
            slot = tt.slots[index]
            weeks = 0
            for kind, ref in slot_targets(slot):
                if kind == course.kind and ref.ident == course.target:
                    weeks |= ref.weeks
            slots.append((slot.day, slot.first_place, slot.place_count, weeks))
            cancelled = weeks & slot.cancelled_weeks
            week = 0
            while cancelled:
                if cancelled & 1 and week:
                    cancellations.add((course.key, slot.day, slot.first_place, week))
                cancelled >>= 1
                week += 1
        courses[course.key] = (tuple(sorted(set(course.teachers))), tuple(sorted(slots)))
        n = count_sessions(tt, course)
        sessions += n
        if not course.teachers or not members.get((course.kind, course.target)):
            incomplete += n
    closures = frozenset((p.start, p.end) for p in derive_closure_weeks(tt))
    return Facts(frozenset(tt.subjects), courses, sessions, incomplete, frozenset(cancellations), closures,
                 (tt.school_year.start, tt.school_year.end))


def _members(tt: Timetable) -> dict[tuple[str, str], bool]:
    """Whether each class and group has at least one student (a course without members is incomplete)."""
    by_class: set[str] = set()
    by_part: set[str] = set()
    for s in tt.students.values():
        by_class.update(m.ident for m in s.classes)
        by_part.update(m.ident for m in s.parts)
    out: dict[tuple[str, str], bool] = {("class", c): c in by_class for c in tt.classes}
    for g in tt.groups.values():
        out[("group", g.ident)] = bool(g.students or by_class.intersection(g.classes) or by_part.intersection(g.parts))
    return out


EMPTY = Facts(frozenset(), {}, 0, 0, frozenset(), frozenset(), (date.min, date.min))


# --- one function per control figure -----------------------------------------------------------------


@dataclass(frozen=True)
class Figure:
    """A control's computed % (None = not computed) with the counts it comes from."""

    computed: float | None
    count: int | None = None
    existing: int | None = None
    detail: dict[str, Any] = field(default_factory=dict)


def _fig(changed: int, existing: int, **detail: Any) -> Figure:
    return Figure(round(ratio(changed, existing), 2), changed, existing, detail)


def subjects_created(old: Facts, new: Facts) -> Figure:
    return _fig(len(new.subjects - old.subjects), len(old.subjects))


def courses_created(old: Facts, new: Facts) -> Figure:
    return _fig(len(new.courses.keys() - old.courses.keys()), len(old.courses))


def courses_modified(old: Facts, new: Facts) -> Figure:
    """A course kept (same subject and class/group) whose teachers, slots or weeks changed."""
    changed = sum(1 for key, sig in new.courses.items() if key in old.courses and old.courses[key] != sig)
    return _fig(changed, len(old.courses))


def courses_deleted(old: Facts, new: Facts) -> Figure:
    return _fig(len(old.courses.keys() - new.courses.keys()), len(old.courses))


def sessions_changed(old: Facts, new: Facts) -> Figure:
    """abs(new − old) / old sessions (seed 000: 'séances en plus ou en moins par rapport au dernier import')."""
    return _fig(abs(new.sessions - old.sessions), old.sessions, sessions=new.sessions)


def sessions_on_incomplete_courses(old: Facts, new: Facts) -> Figure:
    """Sessions whose course has no teacher or no member / all sessions of the file (no baseline needed)."""
    return _fig(new.sessions_on_incomplete, new.sessions)


def cancelled_sessions(old: Facts, new: Facts) -> Figure:
    """Newly cancelled sessions / cancellations already present (seed 001 '% de cours annulés')."""
    return _fig(len(new.cancellations - old.cancellations), len(old.cancellations))


def closures_added(old: Facts, new: Facts) -> Figure:
    return _fig(len(new.closures - old.closures), len(old.closures))


def closures_removed(old: Facts, new: Facts) -> Figure:
    return _fig(len(old.closures - new.closures), len(old.closures))


def unreconciled(kind: str, matched: tuple[int, int] | None) -> Figure:
    """unmatched / total in the file. Needs the reconciler's matching (`matched` = (unmatched, total));
    without it the figure is not computed: never a fake 0 or 100 %."""
    if matched is None:
        return Figure(None, detail={"reason": "no_directory"})
    unmatched, total = matched
    return _fig(unmatched, total)


def closure_incoherences(old: Facts | None, new: Facts, today: date) -> list[str]:
    """Why the file's start/end dates are incoherent with the closure periods (empty = coherent):
    start after end; start or end moved from the last integrated import's (the year's bounds, and the
    closure periods computed from them, shift); a closure period that already began (before `today`)
    added or removed — the file would rewrite the past, i.e. archived class logs (seed 001)."""
    start, end = new.year
    out = []
    if start > end:
        out.append("dates_inverted")
    if old is not None and old.year != new.year:
        out.append("year_bounds_changed")
    if old is not None and any(p[0] < today for p in old.closures ^ new.closures):
        out.append("past_closures_changed")
    return out


def closure_coherence(old: Facts | None, new: Facts, today: date) -> Figure:
    """Figure = number of incoherences; the check 'value' is 0, so any incoherence exceeds it."""
    found = closure_incoherences(old, new, today)
    return Figure(float(len(found)), len(found), None, {"incoherences": found})


def figures(old: Facts | None, new: Facts, today: date,
            matching: Mapping[str, tuple[int, int]] | None = None) -> dict[str, Figure]:
    """Every control's figure for one establishment; `old` None = no integrated import yet (existing = 0).
    `matching` = shared.reconcile.matching_figures: {"teachers": (unmatched, total), …} (the control's
    full name is accepted too); None or a kind missing = no ENT directory → "not computed"."""
    base = old if old is not None else EMPTY
    out = {
        "subjects_created": subjects_created(base, new),
        "courses_created": courses_created(base, new),
        "courses_modified": courses_modified(base, new),
        "courses_deleted": courses_deleted(base, new),
        "sessions_changed": sessions_changed(base, new),
        "sessions_on_incomplete_courses": sessions_on_incomplete_courses(base, new),
        "cancelled_sessions": cancelled_sessions(base, new),
        "closures_added": closures_added(base, new),
        "closures_removed": closures_removed(base, new),
        "closure_coherence": closure_coherence(old, new, today),
    }
    for kind in UNRECONCILED:
        given = matching or {}
        out[kind] = unreconciled(kind, given.get(kind, given.get(kind.removesuffix("_unreconciled"))))
    return {c.name: out[c.name] for c in CONTROLS}


# --- evaluation ------------------------------------------------------------------------------------


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{x:.1f}".replace(".", ",") + " %"


WHAT_TO_DO = ("Si ce changement est voulu, faites un import manuel (assistant d'initialisation) ou décochez "
              "« Bloquant » pour ce contrôle dans les seuils, puis redéposez le fichier ; sinon corrigez "
              "l'emploi du temps et relancez l'export.",
              "If this change is intended, run a manual import or untick 'Blocking' for this control in the "
              "thresholds, then deposit the file again; otherwise fix the timetable and export again.")
COHERENCE_TO_DO = ("Vérifiez les dates de début et de fin de l'année dans le logiciel d'emploi du temps "
                   "et relancez l'export, ou faites un import manuel.",
                   "Check the year's start and end dates in the timetable software and export again, or run a "
                   "manual import.")


@dataclass(frozen=True)
class ControlResult:
    control: str
    setting: Setting
    figure: Figure
    exceeded: bool

    @property
    def status(self) -> str:
        if not self.setting.enabled:
            return "disabled"
        if self.figure.computed is None:
            return "not_computed"
        return "exceeded" if self.exceeded else "ok"

    @property
    def blocks(self) -> bool:
        return self.exceeded and self.setting.blocking

    def row(self) -> dict[str, Any]:
        spec = SPECS[self.control]
        return {"label": spec.label, "value": self.setting.value, "blocking": self.setting.blocking,
                "enabled": self.setting.enabled, "computed": self.figure.computed, "count": self.figure.count,
                "existing": self.figure.existing, "exceeded": self.exceeded, "status": self.status,
                **({"detail": self.figure.detail} if self.figure.detail else {})}

    def messages(self) -> tuple[str, str]:
        spec = SPECS[self.control]
        if spec.kind == CHECK:
            why = ", ".join(self.figure.detail.get("incoherences", []))
            fr = (f"Contrôle « {spec.label} » non respecté ({why}). " + COHERENCE_TO_DO[0])
            en = (f"Control '{spec.label_en}' failed ({why}). " + COHERENCE_TO_DO[1])
            return fr, en
        how = f"{self.figure.count} sur {self.figure.existing}"
        fr = (f"Contrôle « {spec.label} » : {_pct(self.figure.computed)} calculés ({how}) pour un seuil de "
              f"{self.setting.value} %" + (" (bloquant). " + WHAT_TO_DO[0] if self.setting.blocking else "."))
        en = (f"Control '{spec.label_en}': {self.figure.computed} % computed ({self.figure.count} of "
              f"{self.figure.existing}) for a threshold of {self.setting.value} %"
              + (" (blocking). " + WHAT_TO_DO[1] if self.setting.blocking else "."))
        return fr, en

    def alert(self, establishment: str | None) -> dict[str, Any]:
        fr, en = self.messages()
        return {"control": self.control, "label": SPECS[self.control].label, "establishment": establishment,
                "value": self.setting.value, "computed": self.figure.computed, "blocking": self.setting.blocking,
                "exceeded": True, "severity": "error" if self.setting.blocking else "warning",
                "message": fr, "message_en": en}


def evaluate(settings: Mapping[str, Setting], found: Mapping[str, Figure]) -> list[ControlResult]:
    out = []
    for spec in CONTROLS:
        s, f = settings[spec.name], found[spec.name]
        limit = 0 if spec.kind == CHECK else s.value
        out.append(ControlResult(spec.name, s, f, s.enabled and exceeded(f.computed, limit)))
    return out


# --- the automatic-import precondition (design.md §7, seed 001 §4 and FAQ) ---------------------------


def school_year_start(at: datetime, mmdd: str, tz: str) -> date:
    """First day of the school year `at` falls in (EDT_SCHOOL_YEAR_START "MM-DD", local time)."""
    local = at.astimezone(ZoneInfo(tz)).date()
    month, day = (int(x) for x in mmdd.split("-"))
    start = date(local.year, month, day)
    return start if local >= start else date(local.year - 1, month, day)


NEVER_MANUAL = (
    "Import automatique refusé : aucun import manuel de l'emploi du temps n'a encore été réalisé pour cet "
    "établissement. Effectuez d'abord le premier import manuel (assistant d'initialisation des données de vie "
    "scolaire) ; les imports automatiques seront ensuite acceptés.",
    "Automatic import refused: no manual timetable import has been done for this establishment yet. Run the "
    "first manual import (school-life data set-up wizard); automatic imports are accepted after it.")
NEW_YEAR = (
    "Import automatique refusé : changement d'année scolaire. Au changement d'année, il est obligatoire de "
    "refaire un premier import manuel de l'emploi du temps (assistant d'initialisation des données de vie "
    "scolaire) avant de reprendre l'import automatisé.",
    "Automatic import refused: the school year has changed. A first manual import is required again at the "
    "start of each school year before automatic imports resume.")


def automatic_import_refusal(mode: Mode, manual_done: Iterable[date], year_start: date) -> tuple[str, str] | None:
    """None when allowed. An automatic import needs a manual import of the establishment integrated in the
    current school year; `manual_done` = local dates of its integrated manual imports."""
    if mode is not Mode.AUTO:
        return None
    dates = list(manual_done)
    if any(d >= year_start for d in dates):
        return None
    return NEW_YEAR if dates else NEVER_MANUAL


# --- the stage's decision ---------------------------------------------------------------------------


@dataclass(frozen=True)
class EstablishmentCheck:
    establishment: str
    baseline_import: str | None
    results: list[ControlResult]
    refusal: tuple[str, str] | None = None


def decide(mode: Mode, dry_run: bool, checks: list[EstablishmentCheck]) -> StageResult:
    """Blocking excess on an automatic import → blocked; precondition unmet → rejected; other excess →
    alerts, the import goes on; a manual import never blocks (its preview shows the figures), nor does an
    undo (it restores what was integrated before); a dry run
    ends `previewed` with every figure."""
    multi = len(checks) > 1
    alerts: list[dict[str, Any]] = []
    blocking: list[ControlResult] = []
    counts: dict[str, Any] = {"establishments": {}}
    refusals = [c.refusal for c in checks if c.refusal]
    for c in checks:
        counts["establishments"][c.establishment] = {
            "baseline_import": c.baseline_import,
            "controls": {r.control: r.row() for r in c.results}}
        for r in c.results:
            if r.exceeded:
                alert = r.alert(c.establishment)
                if mode is not Mode.AUTO:
                    alert["severity"] = "warning"  # a manual import (or an undo) never blocks: the user decides
                alerts.append(alert)
                if r.blocks:
                    blocking.append(r)
    counts["exceeded"] = len(alerts)
    counts["blocking_exceeded"] = len(blocking) if mode is Mode.AUTO else 0
    if not multi and checks:
        counts["controls"] = counts["establishments"][checks[0].establishment]["controls"]
    would_block = mode is Mode.AUTO and bool(blocking)
    fr = en = None
    if refusals:
        fr, en = refusals[0]
    elif would_block:
        names = ", ".join(f"« {SPECS[r.control].label} » ({_pct(r.figure.computed)} > {r.setting.value} %)"
                          if SPECS[r.control].kind == PERCENT else f"« {SPECS[r.control].label} »" for r in blocking)
        names_en = ", ".join(SPECS[r.control].label_en for r in blocking)
        fr = f"Import bloqué par {len(blocking)} seuil(s) : {names}. " + WHAT_TO_DO[0]
        en = f"Import blocked by {len(blocking)} threshold(s): {names_en}. " + WHAT_TO_DO[1]
    elif alerts:
        fr = f"{len(alerts)} seuil(s) dépassé(s) : " + ", ".join(f"« {a['label']} »" for a in alerts) + "."
        en = f"{len(alerts)} threshold(s) exceeded: " + ", ".join(a["control"] for a in alerts) + "."
        if mode is Mode.MANUAL:
            fr += " Import manuel : vérifiez l'aperçu avant de confirmer."
            en += " Manual import: check the preview before confirming."
    if dry_run:
        if fr:
            fr, en = "Simulation : " + fr, "Dry run: " + (en or "")
        return StageResult(StepStatus.WARNING if (alerts or refusals) else StepStatus.OK,
                           outcome=ImportStatus.PREVIEWED, message=fr, message_en=en, counts=counts, alerts=alerts)
    if refusals:
        return StageResult(StepStatus.ERROR, outcome=ImportStatus.REJECTED, message=fr, message_en=en,
                           counts=counts, alerts=alerts)
    if would_block:
        return StageResult(StepStatus.ERROR, outcome=ImportStatus.BLOCKED, message=fr, message_en=en,
                           counts=counts, alerts=alerts)
    return StageResult(StepStatus.WARNING if alerts else StepStatus.OK, message=fr, message_en=en,
                       counts=counts, alerts=alerts,
                       artifacts={"thresholds": counts})  # for the manual import's preview


# --- notification contents (seed 001: « Etre notifié lorsque l'import automatique rencontre un problème ») ---


def notification_body(cmd: StageCommand, result: StageResult, kind: str, at: datetime) -> dict[str, Any]:
    """The outbound message of a blocked or refused import: who (site, establishment), which import and
    file, and each control named with its value, the computed figure and what to do."""
    return {
        "type": f"threshold.{kind}", "v": 1, "import_id": cmd.import_id, "site": cmd.site,
        "establishment": cmd.establishment, "establishments": cmd.establishments, "mode": cmd.mode.value,
        "file": cmd.file.model_dump(), "at": at.isoformat(), "recipients": "deposit_accounts_with_notify",
        "message": result.message, "message_en": result.message_en,
        "controls": [{k: a.get(k) for k in ("control", "label", "establishment", "value", "computed", "blocking",
                                            "message", "message_en")}
                     for a in (result.alerts or []) if a.get("blocking") or kind == "refused"],
    }


def mail_text(body: dict[str, Any]) -> tuple[str, str]:
    """Subject and text of the e-mail to the site's notification addresses."""
    where = body["establishment"] or "Tous"
    verb = "bloqué" if body["type"] == "threshold.blocked" else "refusé"
    subject = f"[EDT] Import automatique {verb} — site {body['site']}, établissement {where}"
    lines = ["Bonjour,", "",
             f"L'import automatique du fichier « {body['file']['name']} » (site {body['site']}, établissement "
             f"{where}, import {body['import_id']}) a été {verb}.", "", body["message"] or "", ""]
    for c in body["controls"]:
        lines.append(f"- {c['label']} : seuil {c['value']} %, calculé {c['computed']} %"
                     + (f" (établissement {c['establishment']})" if c.get("establishment") else ""))
        lines.append(f"  {c['message']}")
    lines += ["", "Consultez l'historique des imports pour le détail."]
    return subject, "\n".join(lines)
