"""reconciler handlers.

- Directory and IdPN uploads: ONE transaction writes the rows, the new snapshot's hash and the
  `DirectoryUpdated` event (outbox, exchange edt.status, routing key directory.updated.<site>); the outbox
  is flushed before the API answers, so the event is on the broker before the client's next request.
- The stage (queue edt.groups): the canonical model of each establishment of the import × the latest
  directory snapshot → shared.reconcile (+ the stored wizard decisions) → one transaction (StageWorker)
  recording the matching and writing the groups and memberships as a diff against what is stored
  (a redelivered command is dropped by StageWorker; a crash mid-apply rolls everything back). A manual
  import with the wizard (`review`) stores its preview instead and pauses (`awaiting_selection`).
- The wizard (`Wizard`): selection edits, and the confirm that applies the selection in ONE transaction with
  the groups status event and the sessions command in the outbox."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from services.reconciler import domain, wizard
from services.reconciler.store import (
    groups,
    memberships,
    person_decisions,
    persons,
    previews,
    pronote_ids,
    results,
    selections,
    snapshots,
    units,
)
from shared.blobs import BlobStore
from shared.bus import Delivery, Outbox, StageResult
from shared.db import Database, upsert
from shared.messages import (
    STAGE_QUEUES,
    STATUS_EXCHANGE,
    DirectoryUpdated,
    ImportLifecycle,
    ImportStatus,
    Mode,
    Stage,
    StageCommand,
    StatusEvent,
    utcnow,
)
from shared.reconcile import (
    ALLOWED_KINDS,
    Directory,
    DirectoryPerson,
    DirectoryUnit,
    KindResult,
    reconcile_snapshot,
)
from shared.timetable import Course, Timetable, derive_courses, loads
from shared.web import Runtime

log = logging.getLogger("edt.reconciler")


def lock_key(site: str, est: str) -> int:
    """Advisory-lock key of one establishment's directory (PostgreSQL; SQLite serialises writers)."""
    return int.from_bytes(hashlib.sha256(f"directory:{site}:{est}".encode()).digest()[:8], "big", signed=True)


async def load_directory(conn: AsyncConnection, site: str, est: str) -> Directory:
    where_p = (persons.c.site == site, persons.c.establishment == est)
    where_u = (units.c.site == site, units.c.establishment == est)
    people = tuple(DirectoryPerson(r.id, r.kind, r.last_name, r.first_name, r.birth_date, r.pronote_id, r.cas_id)
                   for r in (await conn.execute(sa.select(persons).where(*where_p))).all())
    unit_rows = (await conn.execute(sa.select(units).where(*where_u))).all()
    assoc = {r.pronote_id: r.ent_id for r in (await conn.execute(sa.select(pronote_ids).where(
        pronote_ids.c.site == site, pronote_ids.c.establishment == est))).all()}
    return Directory(people, tuple(DirectoryUnit(r.id, r.name) for r in unit_rows if r.kind == "class"),
                     tuple(DirectoryUnit(r.id, r.name) for r in unit_rows if r.kind == "group"), assoc)


def directory_counts(d: Directory) -> dict[str, int]:
    kinds = {k: sum(1 for p in d.persons if p.kind == k) for k in ("teacher", "staff", "student")}
    return {"persons": len(d.persons), **kinds, "classes": len(d.classes), "groups": len(d.groups),
            "pronote_ids": len(d.associations)}


class Directories:
    def __init__(self, rt: Runtime, outbox: Outbox) -> None:
        self.rt = rt
        self.db: Database = rt.db
        self.outbox = outbox

    async def has_directory(self, conn: AsyncConnection, site: str, est: str) -> bool:
        return (await conn.execute(sa.select(snapshots.c.sha256).where(
            snapshots.c.site == site, snapshots.c.establishment == est))).first() is not None

    async def _publish_snapshot(self, conn: AsyncConnection, site: str, est: str) -> dict[str, Any]:
        """Snapshot of the establishment's directory and associations as they are in this transaction:
        blob, row, event. Called with the establishment's lock held."""
        directory = await load_directory(conn, site, est)
        sha, _ = await asyncio.to_thread(self.rt.blobs.put_bytes, directory.to_json())
        now = utcnow()
        counts = directory_counts(directory)
        await conn.execute(upsert(self.db, snapshots, {"site": site, "establishment": est, "sha256": sha,
                                                       "counts": counts, "updated_at": now},
                                  ["site", "establishment"], ["sha256", "counts", "updated_at"]))
        event = DirectoryUpdated(site=site, establishment=est, sha256=sha, at=now, counts=counts)
        await self.outbox.add(conn, STATUS_EXCHANGE, event.routing_key, event.to_bytes())
        return {"site": site, "establishment": est, "sha256": sha, "counts": counts,
                "updated_at": now.isoformat().replace("+00:00", "Z")}

    async def _after_commit(self) -> None:
        """Publish now (the next request of the client — an import — must find the event on the broker);
        if the broker is down the relay keeps trying."""
        try:
            await self.outbox.flush()
        except Exception:  # noqa: BLE001 - the row stays in the outbox; the relay retries
            log.warning("directory event not published yet; the outbox relay will retry", exc_info=True)
            self.outbox.kick()

    async def put_directory(self, site: str, est: str, upload: domain.DirectoryUpload, mode: str) -> dict[str, Any]:
        async with self.db.transaction() as conn:
            await self.db.advisory_lock(conn, lock_key(site, est))
            where_p = (persons.c.site == site, persons.c.establishment == est)
            where_u = (units.c.site == site, units.c.establishment == est)
            if mode == "replace":
                await conn.execute(persons.delete().where(*where_p))
                await conn.execute(units.delete().where(*where_u))
            else:  # merge: the uploaded entries replace those with the same id, the others stay
                for chunk in _chunks([p.id for p in upload.persons]):
                    await conn.execute(persons.delete().where(*where_p, persons.c.id.in_(chunk)))
                for kind, items in (("class", upload.classes), ("group", upload.groups)):
                    for chunk in _chunks([u.id for u in items]):
                        await conn.execute(units.delete().where(*where_u, units.c.kind == kind, units.c.id.in_(chunk)))
            rows = [{"site": site, "establishment": est, "id": p.id, "kind": p.kind, "last_name": p.last_name,
                     "first_name": p.first_name, "birth_date": p.birth_date, "pronote_id": p.pronote_id,
                     "cas_id": p.cas_id} for p in upload.persons]
            if rows:
                await conn.execute(persons.insert(), rows)
            unit_rows = [{"site": site, "establishment": est, "kind": kind, "id": u.id, "name": u.name}
                         for kind, items in (("class", upload.classes), ("group", upload.groups)) for u in items]
            if unit_rows:
                await conn.execute(units.insert(), unit_rows)
            out = await self._publish_snapshot(conn, site, est)
        await self._after_commit()
        return {**out, "mode": mode, "received": upload.counts()}

    async def post_pronote_ids(self, site: str, est: str, upload: domain.PronoteIdsUpload,
                               mode: str) -> dict[str, Any]:
        """« mode complet » (start of the year) replaces every association of the establishment; « mode
        partiel » adds or updates those given (newcomers) — seed 004."""
        now = utcnow()
        async with self.db.transaction() as conn:
            await self.db.advisory_lock(conn, lock_key(site, est))
            where = (pronote_ids.c.site == site, pronote_ids.c.establishment == est)
            if mode == "complete":
                await conn.execute(pronote_ids.delete().where(*where))
            else:
                for chunk in _chunks(list(upload.associations)):
                    await conn.execute(pronote_ids.delete().where(*where, pronote_ids.c.pronote_id.in_(chunk)))
            rows = [{"site": site, "establishment": est, "pronote_id": p, "ent_id": e, "updated_at": now}
                    for p, e in upload.associations.items()]
            if rows:
                await conn.execute(pronote_ids.insert(), rows)
            total = len((await conn.execute(sa.select(pronote_ids.c.pronote_id).where(*where))).all())
            out: dict[str, Any] = {"site": site, "establishment": est, "mode": mode,
                                   "received": len(upload.associations), "pronote_ids": total, "sha256": None}
            # No snapshot until a directory exists: threshold control keeps "not computed" meanwhile.
            if await self.has_directory(conn, site, est):
                out["sha256"] = (await self._publish_snapshot(conn, site, est))["sha256"]
        await self._after_commit()
        return out


def _chunks(items: list[str], size: int = 500) -> list[list[str]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


# --- the stage ------------------------------------------------------------------------------------


def groups_lock_key(site: str, est: str) -> int:
    return int.from_bytes(hashlib.sha256(f"groups:{site}:{est}".encode()).digest()[:8], "big", signed=True)


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
    matching: domain.EstablishmentMatching
    stored: wizard.StoredSelection | None  # the selection of the last manual import
    decisions: wizard.Decisions


@dataclass
class Prepared:
    plans: list[EstPlan]
    site: str

    @property
    def matchings(self) -> list[domain.EstablishmentMatching]:
        return [p.matching for p in self.plans]


def timetable_parts(cmd: StageCommand) -> dict[str, str]:
    parts: dict[str, str] = dict(cmd.artifacts.get("timetables") or {})
    if not parts and cmd.establishment and cmd.artifacts.get("timetable_sha256"):
        parts = {cmd.establishment: cmd.artifacts["timetable_sha256"]}
    if not parts:
        raise RuntimeError("no canonical timetable in the command's artifacts")
    return parts


async def load_stored(conn: AsyncConnection, site: str, ests: list[str]) -> tuple[
        dict[str, wizard.StoredSelection], dict[str, wizard.Decisions]]:
    stored: dict[str, wizard.StoredSelection] = {}
    for r in (await conn.execute(sa.select(selections).where(selections.c.site == site,
                                                             selections.c.establishment.in_(ests)))).all():
        stored.setdefault(r.establishment, {}).setdefault(r.kind, {})[r.ident] = bool(r.active)
    decisions: dict[str, wizard.Decisions] = {}
    for r in (await conn.execute(sa.select(person_decisions).where(
            person_decisions.c.site == site, person_decisions.c.establishment.in_(ests)))).all():
        decisions.setdefault(r.establishment, {}).setdefault(r.kind, {})[r.ident] = wizard.Decision(r.decision,
                                                                                                      r.ent_id)
    return stored, decisions


def plan_establishment(blobs: BlobStore, est: str, model: str, snapshot: str | None,
                       stored: wizard.StoredSelection | None, decisions: wizard.Decisions) -> EstPlan:
    """One establishment's model (blob `model`) against its directory snapshot (blob `snapshot`, if any)."""
    tt = blobs.load(model, loads)
    directory = blobs.load(snapshot, Directory.from_json) if snapshot else None
    raw = reconcile_snapshot(blobs, model, tt, snapshot) if snapshot else None
    results = wizard.apply_decisions(raw, directory, decisions) if raw is not None and directory is not None \
        else wizard.empty_results()
    matching = domain.establishment_matching(est, tt, snapshot, results if raw is not None else None)
    return EstPlan(est, tt, derive_courses(tt), snapshot, directory, raw, results, matching, stored, decisions)


async def write_groups(db: Database, conn: AsyncConnection, site: str, plan: EstPlan,
                       selection: wizard.Selection, kept: list[Course], import_id: str) -> list[dict[str, Any]]:
    """Diff the establishment's stored groups and memberships against what this import wants; write only
    the difference (same export again: nothing). Returns the bilan's action lines."""
    await db.advisory_lock(conn, groups_lock_key(site, plan.est))
    want_g, want_m = wizard.desired(plan.tt, plan.results, selection, kept)
    where_g = (groups.c.site == site, groups.c.establishment == plan.est)
    where_m = (memberships.c.site == site, memberships.c.establishment == plan.est)
    have_g = {r.key: wizard.GroupRow(r.key, r.kind, r.ident, r.name, r.parent, r.ent_id)
              for r in (await conn.execute(sa.select(groups).where(*where_g))).all()}
    have_m = [r.key for r in (await conn.execute(sa.select(memberships.c.key).where(*where_m))).all()]
    d = wizard.diff(have_g, have_m, want_g, want_m)
    now = utcnow()
    for chunk in _chunks(d.delete_members):
        await conn.execute(memberships.delete().where(*where_m, memberships.c.key.in_(chunk)))
    for chunk in _chunks(d.delete_groups):
        await conn.execute(groups.delete().where(*where_g, groups.c.key.in_(chunk)))
    for g in d.update_groups:
        await conn.execute(groups.update().where(*where_g, groups.c.key == g.key).values(
            kind=g.kind, ident=g.ident, name=g.name, parent=g.parent, ent_id=g.ent_id, import_id=import_id,
            updated_at=now))
    if d.create_groups:
        await conn.execute(groups.insert(), [
            {"site": site, "establishment": plan.est, "key": g.key, "kind": g.kind, "ident": g.ident,
             "name": g.name, "parent": g.parent, "ent_id": g.ent_id, "import_id": import_id, "updated_at": now}
            for g in d.create_groups])
    rows = [{"site": site, "establishment": plan.est, "key": m.key, "group_key": m.group_key,
             "person_kind": m.person_kind, "person_id": m.person_id, "file_ident": m.file_ident, "start": m.start,
             "end": m.end, "import_id": import_id} for m in d.create_members]
    for i in range(0, len(rows), 2000):
        await conn.execute(memberships.insert(), rows[i:i + 2000])
    return d.actions()


async def save_selection(conn: AsyncConnection, site: str, est: str, selection: wizard.Selection,
                         import_id: str) -> None:
    """The selection of this manual import replaces the establishment's previous one."""
    now = utcnow()
    await conn.execute(selections.delete().where(selections.c.site == site, selections.c.establishment == est))
    rows = [{"site": site, "establishment": est, "kind": kind, "ident": ident, "active": bool(on),
             "import_id": import_id, "updated_at": now}
            for kind in wizard.SELECT_KINDS for ident, on in (selection.get(kind) or {}).items()]
    for i in range(0, len(rows), 2000):
        await conn.execute(selections.insert(), rows[i:i + 2000])


async def save_decisions(db: Database, conn: AsyncConnection, site: str, est: str, selection: wizard.Selection,
                         import_id: str) -> None:
    now = utcnow()
    for kind in wizard.PERSON_KINDS:
        for ident, d in ((selection.get("persons") or {}).get(kind) or {}).items():
            key = (person_decisions.c.site == site, person_decisions.c.establishment == est,
                   person_decisions.c.kind == kind, person_decisions.c.ident == ident)
            if d.get("decision") == "auto":
                await conn.execute(person_decisions.delete().where(*key))
                continue
            await conn.execute(upsert(db, person_decisions, {
                "site": site, "establishment": est, "kind": kind, "ident": ident, "decision": d["decision"],
                "ent_id": d.get("ent_id"), "import_id": import_id, "updated_at": now},
                ["site", "establishment", "kind", "ident"], ["decision", "ent_id", "import_id", "updated_at"]))


async def save_results(db: Database, conn: AsyncConnection, import_id: str, site: str,
                       matchings: list[domain.EstablishmentMatching]) -> None:
    now = utcnow()
    for m in matchings:
        await conn.execute(upsert(db, results, {
            "import_id": import_id, "establishment": m.establishment, "site": site,
            "snapshot_sha256": m.snapshot, "counts": m.counts, "unmatched": m.unmatched, "created_at": now},
            ["import_id", "establishment"], ["snapshot_sha256", "counts", "unmatched", "created_at"]))


class ReconcilerStage:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.db = rt.db

    async def prepare(self, cmd: StageCommand) -> Prepared:
        parts = timetable_parts(cmd)
        ests = list(parts)
        async with self.db.read() as conn:
            latest = {r.establishment: r.sha256 for r in (await conn.execute(sa.select(snapshots).where(
                snapshots.c.site == cmd.site, snapshots.c.establishment.in_(ests)))).all()}
            stored, decisions = await load_stored(conn, cmd.site, ests)

        def compute() -> list[EstPlan]:
            out = []
            for est, sha in sorted(parts.items()):
                out.append(plan_establishment(self.rt.blobs, est, sha, latest.get(est), stored.get(est),
                                              decisions.get(est, {})))
            return out

        return Prepared(await asyncio.to_thread(compute), cmd.site)

    async def apply(self, conn: AsyncConnection, cmd: StageCommand, prepared: Prepared) -> StageResult:
        await save_results(self.db, conn, cmd.import_id, cmd.site, prepared.matchings)
        if cmd.mode is Mode.MANUAL and cmd.review:
            return await self._pause(conn, cmd, prepared)
        per_est: list[list[dict[str, Any]]] = []
        kept_keys: set[str] = set()
        waiting: list[domain.Waiting] = []
        for plan in prepared.plans:
            if cmd.mode is Mode.MANUAL:
                # Without the wizard a manual import is confirmed with the default selection: everything on.
                selection = wizard.default_selection(plan.tt, plan.courses, plan.stored, keep_previous=False)
                await save_selection(conn, cmd.site, plan.est, selection, cmd.import_id)
                kept, late = wizard.kept_courses(plan.courses, selection, unknown_wait=False)
            else:
                # Automatic: only what the last manual import selected; new courses wait for a manual one.
                selection = dict(plan.stored or {})
                kept, late = wizard.kept_courses(plan.courses, selection, unknown_wait=plan.stored is not None)
            kept_keys.update(c.key for c in kept)
            waiting += [domain.Waiting(plan.est, c.key, c.label) for c in late]
            per_est.append(await write_groups(self.db, conn, cmd.site, plan, selection, kept, cmd.import_id))
        result = domain.decide(prepared.matchings, actions=domain.sum_actions(per_est), kept=len(kept_keys),
                               waiting=waiting)
        result.artifacts["courses_kept"] = sorted(kept_keys)
        return result

    async def _pause(self, conn: AsyncConnection, cmd: StageCommand, prepared: Prepared) -> StageResult:
        """Manual import with the wizard: store the preview and the starting selection; nothing else."""
        preview = {"import_id": cmd.import_id, "site": cmd.site, "establishment": cmd.establishment,
                   "thresholds": cmd.artifacts.get("thresholds"),
                   "establishments": [wizard.establishment_preview(
                       p.est, p.tt, p.courses, p.directory, p.snapshot, p.results, p.stored, p.decisions,
                       p.matching.counts) for p in prepared.plans]}
        selection = {p.est: wizard.initial_selection(p.tt, p.courses, p.stored, p.decisions) for p in prepared.plans}
        now = utcnow()
        await conn.execute(upsert(self.db, previews, {
            "import_id": cmd.import_id, "site": cmd.site, "status": "awaiting",
            "command": cmd.model_dump(mode="json"), "preview": preview, "selection": selection,
            "created_at": now, "updated_at": now},
            ["import_id"], ["status", "command", "preview", "selection", "updated_at"]))
        return domain.decide(prepared.matchings, paused=True)


def build_handlers(rt: Runtime) -> dict[str, Any]:
    stage = ReconcilerStage(rt)
    return {"prepare": stage.prepare, "apply": stage.apply}


# --- the wizard (manual import awaiting its selection) ----------------------------------------------

LIFECYCLE_QUEUE = "edt.reconciler.lifecycle"
LIFECYCLE_KEYS = ("import.history.cancelled",)


class WizardError(Exception):
    def __init__(self, status: int, code: str, detail: str, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.errors = errors


class Wizard:
    def __init__(self, rt: Runtime, outbox: Outbox) -> None:
        self.rt = rt
        self.db: Database = rt.db
        self.outbox = outbox

    async def on_lifecycle(self, delivery: Delivery) -> None:
        """`import.history.cancelled`: the notifier cancelled an import; a preview still awaiting its
        selection is dropped (a later confirm answers 409)."""
        event = ImportLifecycle.from_bytes(delivery.body)
        if event.status is not ImportStatus.CANCELLED:
            return
        async with self.db.transaction() as conn:
            await conn.execute(previews.update().where(previews.c.import_id == event.import_id,
                                                       previews.c.status == "awaiting")
                               .values(status="cancelled", preview={}, updated_at=utcnow()))

    async def row(self, import_id: str) -> Any:
        async with self.db.read() as conn:
            return (await conn.execute(sa.select(previews).where(previews.c.import_id == import_id))).first()

    def _directory(self, sha: str | None) -> Directory | None:
        return self.rt.blobs.load(sha, Directory.from_json) if sha else None

    async def put_selection(self, row: Any, body: Any) -> dict[str, Any]:
        if row.status != "awaiting":
            raise WizardError(409, "not_awaiting_selection", f"The import's selection is {row.status}.")
        ests = {e["establishment"]: e for e in row.preview["establishments"]}
        if not isinstance(body, dict):
            raise WizardError(422, "validation_error", "Selection must be an object",
                              [{"loc": ["body"], "msg": "must be an object", "type": "object_type"}])
        if "establishments" in body:
            patches = body["establishments"]
            if not isinstance(patches, dict) or any(e not in ests for e in patches):
                raise WizardError(422, "validation_error", "establishments: {establishment: selection}",
                                  [{"loc": ["body", "establishments"], "msg": "unknown establishment",
                                    "type": "unknown"}])
        elif len(ests) == 1:
            patches = {next(iter(ests)): body}
        else:
            raise WizardError(422, "validation_error", "A site-wide import takes {establishments: {…}}",
                              [{"loc": ["body", "establishments"], "msg": "field required", "type": "missing"}])
        selection = dict(row.selection)
        errors: list[dict[str, Any]] = []
        for est, patch in patches.items():
            directory = await asyncio.to_thread(self._directory, ests[est]["directory"])
            eligible = {k: {p.id for p in (directory.persons if directory else ()) if p.kind in ALLOWED_KINDS[k]}
                        for k in wizard.PERSON_KINDS}
            try:
                selection[est] = wizard.merge_selection(selection[est], patch, ests[est], eligible)
            except wizard.SelectionError as exc:
                errors += [{**e, "loc": ["establishments", est, *e["loc"][1:]]} for e in exc.errors]
        if errors:
            raise WizardError(422, "validation_error", f"Selection rejected: {len(errors)} error(s)", errors)
        async with self.db.transaction() as conn:
            done = await conn.execute(previews.update().where(previews.c.import_id == row.import_id,
                                                              previews.c.status == "awaiting")
                                      .values(selection=selection, updated_at=utcnow()))
            if done.rowcount != 1:
                raise WizardError(409, "not_awaiting_selection", "The import is no longer awaiting its selection.")
        return selection

    async def confirm(self, row: Any) -> dict[str, Any]:
        """Apply the selection (groups and memberships as an automatic stage would), persist it and the
        decided matches for the establishment, and send the import on to the sessions stage with the
        selected courses — ONE transaction, with the groups status event and the sessions command in the
        outbox. 409 when the import is not (or no longer) awaiting its selection."""
        if row.status != "awaiting":
            raise WizardError(409, "not_awaiting_selection", f"The import's selection is {row.status}.")
        cmd = StageCommand.model_validate(row.command)
        parts = timetable_parts(cmd)
        snaps = {e["establishment"]: e["directory"] for e in row.preview["establishments"]}
        chosen: dict[str, wizard.Selection] = row.selection

        def compute() -> list[EstPlan]:
            out = []
            for est, sha in sorted(parts.items()):
                decisions = wizard.decisions_from_selection(chosen.get(est) or {})
                out.append(plan_establishment(self.rt.blobs, est, sha, snaps.get(est), None, decisions))
            return out

        plans = await asyncio.to_thread(compute)
        per_est: list[list[dict[str, Any]]] = []
        kept_keys: set[str] = set()
        async with self.db.transaction() as conn:
            done = await conn.execute(previews.update().where(previews.c.import_id == row.import_id,
                                                              previews.c.status == "awaiting")
                                      .values(status="confirmed", updated_at=utcnow()))
            if done.rowcount != 1:
                raise WizardError(409, "not_awaiting_selection", "The import is no longer awaiting its selection.")
            await save_results(self.db, conn, cmd.import_id, cmd.site, [p.matching for p in plans])
            for plan in plans:
                selection = chosen.get(plan.est) or {}
                await save_selection(conn, cmd.site, plan.est, selection, cmd.import_id)
                await save_decisions(self.db, conn, cmd.site, plan.est, selection, cmd.import_id)
                kept, _ = wizard.kept_courses(plan.courses, selection, unknown_wait=False)
                kept_keys.update(c.key for c in kept)
                per_est.append(await write_groups(self.db, conn, cmd.site, plan, selection, kept, cmd.import_id))
            result = domain.decide([p.matching for p in plans], actions=domain.sum_actions(per_est),
                                   kept=len(kept_keys))
            event = StatusEvent(import_id=cmd.import_id, site=cmd.site, establishment=cmd.establishment,
                                stage=Stage.GROUPS, step_status=result.step_status, message=result.message,
                                message_en=result.message_en, counts=result.counts, alerts=result.alerts)
            await self.outbox.add(conn, STATUS_EXCHANGE, event.routing_key, event.to_bytes())
            nxt = cmd.model_copy(update={"artifacts": {**cmd.artifacts, **result.artifacts,
                                                       "courses_kept": sorted(kept_keys)}})
            await self.outbox.add(conn, "", STAGE_QUEUES[Stage.SESSIONS], nxt.to_bytes(),
                                  message_id=f"{cmd.import_id}:{Stage.SESSIONS.value}")
        self.outbox.kick()
        return {"import_id": cmd.import_id, "status": ImportStatus.GENERATING_SESSIONS.value,
                "courses_kept": len(kept_keys), "actions": result.counts["actions"] if result.counts else []}
