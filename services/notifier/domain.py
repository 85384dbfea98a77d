"""Notifier rules: admission (one import in flight per establishment, fair across sites), queue
positions, status transitions and the seed's labels. Pure functions, no I/O."""

from __future__ import annotations

import heapq
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from shared.messages import TERMINAL_STATUSES, ImportStatus, Mode, Stage, StepStatus

# --- labels (seed 001, "Consultation du tableau de bord") ----------------------------------------

LABELS: dict[ImportStatus, tuple[str, str]] = {
    # status: (short label, long label)
    ImportStatus.WAITING: ("En attente", "En attente dans la file d'import"),
    ImportStatus.RECEIVED: ("En cours", "Fichier reçu"),
    ImportStatus.VALIDATING: ("En cours", "Validation du fichier à importer"),
    ImportStatus.CHECKING_THRESHOLDS: ("En cours", "Vérification des seuils"),
    ImportStatus.CREATING_GROUPS: ("En cours", "Création des groupes"),
    ImportStatus.GENERATING_SESSIONS: ("En cours", "Génération des séances"),
    ImportStatus.AWAITING_SELECTION: ("En attente", "En attente de la validation de l'import manuel"),
    ImportStatus.DONE: ("Fait", "Import réalisé avec succès"),
    ImportStatus.PREVIEWED: ("Fait", "Simulation réalisée, rien n'a été importé"),
    ImportStatus.REJECTED: ("Interrompu", "Import refusé (fichier invalide ou import automatique non autorisé)"),
    ImportStatus.BLOCKED: ("Interrompu", "Import bloqué par un seuil"),
    ImportStatus.FAILED: ("Interrompu", "Import interrompu par une erreur interne"),
    ImportStatus.SUPERSEDED: ("Remplacé", "Remplacé par un dépôt plus récent"),
    ImportStatus.CANCELLED: ("Interrompu", "Import manuel abandonné"),
}

# The five steps as seed 001 names them ("Fonctionnement courant").
STEP_LABELS: dict[Stage, str] = {
    Stage.DEPOSIT: "Dépôt du fichier",
    Stage.VALIDATION: "Validation du fichier à importer",
    Stage.THRESHOLDS: "Vérification des seuils",
    Stage.GROUPS: "Création des groupes",
    Stage.SESSIONS: "Génération des séances",
}

# The bilan's actions in the wording of seed 003 ("Nombre de création de groupe"…).
ACTION_LABELS: dict[str, str] = {
    "courses_created": "Nombre de création de cours",
    "courses_updated": "Nombre de modification de cours",
    "courses_deleted": "Nombre de suppression de cours",
    "groups_created": "Nombre de création de groupe",
    "groups_deleted": "Nombre de suppression de groupe",
    "memberships_created": "Nombre de création d'appartenance",
    "memberships_deleted": "Nombre de suppression d'appartenance",
    "sessions_created": "Nombre de création de séance",
    "sessions_updated": "Nombre de modification de séance",
    "sessions_deleted": "Nombre de suppression de séance",
}


def action_label(action: str) -> str:
    """An action of the bilan in French; one no stage announced yet is shown by its code."""
    return ACTION_LABELS.get(action, action)


NO_CHANGE_MESSAGE = ("Aucun changement : fichier identique au dernier import intégré.",
                     "No change: file identical to the last integrated import.")
CANCELLED_MESSAGE = ("Import interrompu à la demande.", "Import cancelled on request.")


# --- abort and undo (extensions: POST /imports/{id}/abort, POST /imports/{id}/undo) --------------------

def abort_refusal(status: ImportStatus) -> tuple[str, str] | None:
    """Why an import cannot be aborted (it has ended), or None."""
    if not is_terminal(status):
        return None
    short, _ = label_for(status)
    return (f"L'import est terminé (« {short} », {status.value}) : il ne peut plus être interrompu. Un import "
            "intégré peut être annulé (undo).",
            f"The import has ended ({status.value}): it can no longer be aborted. An integrated import can be "
            "undone.")


ABORT_TOO_LATE = ("L'import a été intégré avant l'interruption : utilisez l'annulation (undo) pour revenir à "
                  "l'état précédent.",
                  "The import was integrated before the abort reached it: undo it to return to the previous state.")


@dataclass(frozen=True)
class Integrated:
    """An import as the undo rule sees it."""

    id: str
    site: str
    establishment: str | None
    status: ImportStatus
    dry_run: bool
    no_change: bool


def undo_refusal(target: Integrated, later: Sequence[Integrated],
                 active: Sequence[Integrated]) -> tuple[str, str] | None:
    """Why `target` cannot be undone, or None. Only the establishment's last integrated import can (what it
    changed is still what is stored), and only while no other import of the establishment waits or runs.
    `later`: integrated imports that ended after it; `active`: imports waiting or in flight (both of the site)."""
    if target.status is not ImportStatus.DONE or target.dry_run:
        what = "une simulation" if target.dry_run else f"« {label_for(target.status)[0]} » ({target.status.value})"
        what_en = "a dry run" if target.dry_run else target.status.value
        return (f"Seul un import intégré peut être annulé : cet import est {what}.",
                f"Only an integrated import can be undone: this one is {what_en}.")
    if target.no_change:
        return ("Cet import n'a rien changé (fichier identique au précédent) : il n'y a rien à annuler.",
                "This import changed nothing (the same file as before): there is nothing to undo.")
    slot = Slot(target.id, target.site, target.establishment, datetime.min)
    newer = [i for i in later if conflicts(slot, Slot(i.id, i.site, i.establishment, datetime.min))]
    if newer:
        return (f"Seul le dernier import intégré de l'établissement peut être annulé : l'import {newer[0].id} est "
                "plus récent.",
                f"Only the establishment's last integrated import can be undone: import {newer[0].id} is newer.")
    busy = [i for i in active if conflicts(slot, Slot(i.id, i.site, i.establishment, datetime.min))]
    if busy:
        return (f"Un import de l'établissement est en attente ou en cours ({busy[0].id}) : annulez-le ou attendez "
                "sa fin avant d'annuler le dernier import intégré.",
                f"An import of the establishment is waiting or running ({busy[0].id}): wait for it (or abort it) "
                "before undoing the last integrated one.")
    return None


def undo_message(undone_file: str, undone_at: datetime | None) -> tuple[str, str]:
    when = undone_at.strftime("%d/%m/%Y %H:%M") if undone_at else "?"
    return (f"Annulation de l'import « {undone_file} » du {when} (UTC) : retour à l'état précédent.",
            f"Undo of the import '{undone_file}' of {when} (UTC): back to the previous state.")


def superseded_message(file_name: str) -> tuple[str, str]:
    return (f"Remplacé par le dépôt plus récent « {file_name} ».", f"Superseded by the newer deposit '{file_name}'.")


def label_for(status: ImportStatus) -> tuple[str, str]:
    return LABELS[status]


# --- status transitions ---------------------------------------------------------------------------

RUNNING_STATUS: dict[Stage, ImportStatus] = {
    Stage.VALIDATION: ImportStatus.VALIDATING,
    Stage.THRESHOLDS: ImportStatus.CHECKING_THRESHOLDS,
    Stage.GROUPS: ImportStatus.CREATING_GROUPS,
    Stage.SESSIONS: ImportStatus.GENERATING_SESSIONS,
}
# A manual import with the wizard pauses at awaiting_selection between group creation and session
# generation: its confirm (a groups step that ends without pausing) sends it on to generating_sessions.
_ORDER = [ImportStatus.WAITING, ImportStatus.RECEIVED, ImportStatus.VALIDATING, ImportStatus.CHECKING_THRESHOLDS,
          ImportStatus.CREATING_GROUPS, ImportStatus.AWAITING_SELECTION, ImportStatus.GENERATING_SESSIONS]
# `skipped`: no stage produces it, but a stored step recorded by an earlier version may hold it (ended).
STEP_RANK = {StepStatus.PENDING: 0, StepStatus.RUNNING: 1, StepStatus.OK: 2, StepStatus.WARNING: 2,
             StepStatus.ERROR: 2, StepStatus.SKIPPED: 2}
_ENDED = (StepStatus.OK, StepStatus.WARNING)


def is_terminal(status: ImportStatus) -> bool:
    return status in TERMINAL_STATUSES


def _forward(current: ImportStatus, candidate: ImportStatus) -> ImportStatus:
    if current not in _ORDER or candidate not in _ORDER:
        return current
    return candidate if _ORDER.index(candidate) > _ORDER.index(current) else current


def next_import_status(current: ImportStatus, stage: Stage, step: StepStatus,
                       outcome: ImportStatus | None) -> ImportStatus:
    """Status after a stage event. Terminal statuses are final; otherwise statuses only move forward, so
    a late or duplicated event never takes an import back. A manual import awaiting its selection moves on
    to generating_sessions when its selection is confirmed (the reconciler's groups step then ends without
    pausing) or when session generation reports."""
    if is_terminal(current):
        return current
    if outcome is not None:
        # A pause is not an ending: like any other status it only moves forward.
        return _forward(current, outcome) if outcome is ImportStatus.AWAITING_SELECTION else outcome
    if step is StepStatus.ERROR:
        # A stage that ends in error without saying how is an internal failure.
        return ImportStatus.FAILED
    if current is ImportStatus.AWAITING_SELECTION and stage is Stage.GROUPS and step in _ENDED:
        return ImportStatus.GENERATING_SESSIONS  # the selection was confirmed
    candidate = RUNNING_STATUS.get(stage)
    if candidate is None:
        return current
    return _forward(current, candidate)


def merge_step(current: StepStatus | None, incoming: StepStatus) -> StepStatus:
    """A step never goes back from an end state to running (events may arrive twice or late)."""
    if current is None or STEP_RANK[incoming] >= STEP_RANK[current]:
        return incoming
    return current


# --- admission -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Slot:
    """An import as admission sees it."""

    id: str
    site: str
    establishment: str | None  # None: site-wide import of a cité scolaire sharing one timetable
    at: datetime  # deposit time (waiting) or start time (in flight)
    mode: Mode = Mode.AUTO
    counts_for_capacity: bool = True  # an import paused for a human (awaiting_selection) holds no worker


def conflicts(a: Slot, b: Slot) -> bool:
    """One import in flight per establishment; a site-wide import excludes every import of its site."""
    if a.site != b.site:
        return False
    return a.establishment is None or b.establishment is None or a.establishment == b.establishment


def plan_dispatch(in_flight: Sequence[Slot], waiting: Sequence[Slot], capacity: int) -> list[Slot]:
    """Which waiting imports start now.

    An import can start when nothing in flight (or starting now) conflicts with it and a worker slot is
    free. Among those that can start, the site with the fewest imports running goes first, then the
    oldest deposit: during the 08:00 herd a site never waits behind many imports of another site.
    """
    running = list(in_flight)
    busy = sum(1 for s in running if s.counts_for_capacity)
    per_site = Counter(s.site for s in running)
    started: list[Slot] = []
    pending = sorted(waiting, key=lambda s: (s.at, s.id))
    while busy < capacity:
        eligible = [s for s in pending if not any(conflicts(s, r) for r in running)]
        if not eligible:
            break
        choice = min(eligible, key=lambda s: (per_site[s.site], s.at, s.id))
        pending.remove(choice)
        running.append(choice)
        started.append(choice)
        busy += 1
        per_site[choice.site] += 1
    return started


def queue_positions(in_flight: Sequence[Slot], waiting: Sequence[Slot], capacity: int) -> dict[str, int]:
    """For each waiting import: how many imports must finish before it starts.

    Exact for the admission rules above (`plan_dispatch`), assuming imports finish in the order they
    started (the best available guess; it is recomputed on every read, so it stays right as imports end).
    The replay keeps, per site, what runs there and each site's first import that could start: one step
    costs a site's own imports, not the whole queue's, so the 08:00 herd's 300 waiting imports are placed
    in a few milliseconds."""
    running = deque(sorted(in_flight, key=lambda s: (s.at, s.id)))  # the order they are assumed to finish in
    busy = sum(1 for s in running if s.counts_for_capacity)
    per_site: Counter[str] = Counter()  # imports running in the site (fairness, and site-wide exclusion)
    per_target: Counter[tuple[str, str | None]] = Counter()  # imports running per establishment (None: site-wide)
    for r in running:
        per_site[r.site] += 1
        per_target[(r.site, r.establishment)] += 1
    pending: dict[str, list[Slot]] = {}
    for w in sorted(waiting, key=lambda s: (s.at, s.id)):
        pending.setdefault(w.site, []).append(w)
    versions: Counter[str] = Counter()
    heap: list[tuple[int, datetime, str, int, str]] = []  # (running in site, at, id, version, site)

    def free(s: Slot) -> bool:
        """Nothing running conflicts with `s` (`conflicts`, indexed by site)."""
        if per_target[(s.site, None)]:
            return False
        return not per_site[s.site] if s.establishment is None else not per_target[(s.site, s.establishment)]

    def offer(site: str) -> None:
        """(Re)compute the site's first import that could start; older offers of the site become stale."""
        versions[site] += 1
        first = next((s for s in pending.get(site, ()) if free(s)), None)
        if first is not None:
            heapq.heappush(heap, (per_site[site], first.at, first.id, versions[site], site))

    for site in pending:
        offer(site)
    positions: dict[str, int] = {}
    finished = 0
    left = len(waiting)
    while left:
        while busy < capacity and heap:
            _, _, ident, version, site = heapq.heappop(heap)
            if version != versions[site]:
                continue
            chosen = next(s for s in pending[site] if s.id == ident)
            pending[site].remove(chosen)
            positions[ident] = finished
            left -= 1
            running.append(chosen)
            busy += 1
            per_site[site] += 1
            per_target[(site, chosen.establishment)] += 1
            offer(site)
        if not left:
            break
        if not running:  # cannot happen with capacity ≥ 1; guards an endless loop on bad input
            positions.update({s.id: finished for ss in pending.values() for s in ss if s.id not in positions})
            break
        # The oldest running import finishes next.
        done = running.popleft()
        finished += 1
        busy -= done.counts_for_capacity
        per_site[done.site] -= 1
        per_target[(done.site, done.establishment)] -= 1
        offer(done.site)
    return positions


def supersedes(new: Slot, older: Slot) -> bool:
    """A newer deposit for the same target replaces a still-waiting older one (design.md §2).

    Manual and automatic deposits do not replace each other: a person's manual import is never thrown
    away by the timetable software's periodic push, nor the reverse."""
    return (new.site == older.site and new.establishment == older.establishment and new.mode == older.mode
            and (older.at, older.id) < (new.at, new.id))


def average_duration(durations: Iterable[float], default: float = 30.0) -> float:
    values = [d for d in durations if d >= 0]
    return sum(values) / len(values) if values else default


def eta_seconds(position: int | None, elapsed_running: float | None, avg_import_s: float) -> int | None:
    """Seconds until done: the remaining part of a running import, or the imports ahead plus itself."""
    if elapsed_running is not None:
        return max(0, round(avg_import_s - elapsed_running))
    if position is None:
        return None
    return round((position + 1) * avg_import_s)


# --- personal data (docs/privacy.md) ------------------------------------------------------------------

SOURCE_GONE = ("Le fichier déposé n'est plus conservé : les fichiers déposés sont supprimés {days} jours après la "
               "fin de leur import (durée de conservation des données personnelles). L'historique, le bilan et "
               "les totaux restent consultables.",
               "The deposited file is no longer kept: deposited files are deleted {days} days after their import "
               "ended (personal data retention). The history, the bilan and the counts remain.")


def source_expired(ended_at: datetime | None, now: datetime, days: float) -> bool:
    """A deposited file is kept EDT_RETENTION_SOURCE_DAYS after the end of its import, then leaves."""
    return ended_at is not None and ended_at + timedelta(days=days) < now


def holds_anything(held: dict[str, dict[str, object]]) -> bool:
    """Whether any service's answer about a person lists something (a non-empty list anywhere)."""
    def listed(value: object) -> bool:
        if isinstance(value, list):
            return bool(value)
        if isinstance(value, dict):
            return any(listed(v) for v in value.values())
        return False

    return any(listed(data) for data in held.values())


def erased_anything(held: dict[str, dict[str, Any]]) -> bool:
    """Whether an erasure found anything: a row deleted by some service, or sealed copies naming the person
    (the validator's `models`)."""
    def deleted(value: object) -> bool:
        if isinstance(value, bool):
            return False
        if isinstance(value, int):
            return value > 0
        if isinstance(value, dict):
            return any(deleted(v) for v in value.values())
        if isinstance(value, list):
            return any(deleted(v) for v in value)
        return False

    return bool(held.get("validator", {}).get("models")) or any(
        deleted(data) for name, data in held.items() if name != "validator")


# --- leases: an import in flight always has an owner (docs/reliability.md) ---------------------------

# Past this many leases without a sign of life, an import is failed even while its stage's queue holds
# messages (they may be other imports'): a stage that stays away this long is not coming back for it.
LEASE_GRACE_LEASES = 5


def stage_in_hand(status: ImportStatus, queued_stage: str | None) -> Stage | None:
    """The stage an import in flight waits for: the one its command is queued for, else the one running."""
    if queued_stage:
        return Stage(queued_stage)
    for stage, running in RUNNING_STATUS.items():
        if running is status:
            return stage
    return Stage.VALIDATION if status is ImportStatus.RECEIVED else None


def lease_expired(idle_s: float, lease_s: float, queue_busy: bool | None) -> bool:
    """No sign of life (event, heartbeat) for `idle_s`: the import has no owner once the lease has run out
    and its stage's queue holds nothing that could be its command (`queue_busy` False), or, whatever the
    queue holds (or when it cannot be read: None), after LEASE_GRACE_LEASES leases."""
    if idle_s <= lease_s:
        return False
    return queue_busy is False or idle_s > LEASE_GRACE_LEASES * lease_s


def lease_expired_message(stage: Stage, idle_s: float) -> tuple[str, str]:
    seconds = int(round(idle_s))
    return (f"Import interrompu : l'étape « {STEP_LABELS[stage]} » n'a plus donné signe de vie depuis {seconds} s "
            "(service arrêté ou message perdu). Rien de cette étape n'a été intégré ; déposez le fichier à nouveau.",
            f"Import failed: the {stage.value} stage gave no sign of life for {seconds} s (service down or message "
            "lost). Nothing of this step was integrated; deposit the file again.")
