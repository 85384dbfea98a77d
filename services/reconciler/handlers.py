"""reconciler handlers: one class, `ReconcilerStage`.

- The stage (queue edt.groups): the canonical model of each establishment of the import × the latest
  directory snapshot → the plan (`domain.plan_establishment`: shared.reconcile + the stored wizard
  decisions) → one transaction (StageWorker) recording the matching and writing the groups and memberships
  as a diff against what is stored (`groups.diff`). A manual import with the wizard (`review`) stores its
  preview instead and pauses (`awaiting_selection`).
- Directory and IdPN uploads: ONE transaction writes the rows, the new snapshot's hash and the
  `DirectoryUpdated` event (outbox, exchange edt.status, routing key directory.updated.<site>); the outbox
  is flushed before the API answers, so the event is on the broker before the client's next request.
- The wizard: selection edits, and the confirm that applies the selection in ONE transaction ending the
  groups step as StageWorker would (its status event and the sessions command in the outbox)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from services.reconciler import domain, groups, store, wizard
from services.reconciler.domain import EstPlan
from services.reconciler.wizard import WizardError
from shared.blobs import BlobStore, gc_paused
from shared.bus import Delivery
from shared.db import Database
from shared.messages import (
    AccessRecorded,
    DirectoryUpdated,
    FileIdent,
    ImportLifecycle,
    ImportStatus,
    Mode,
    PrivacyRequest,
    StageCommand,
    iso,
    utcnow,
)
from shared.messages import Stage as StageName
from shared.outbox import Outbox
from shared.reconcile import ALLOWED_KINDS, Directory, reconcile_snapshot
from shared.settings import Settings
from shared.stage import StageResult, UnitOfWork
from shared.timetable import loads
from shared.worker import finish_step, is_aborted

log = logging.getLogger("edt.reconciler")

LIFECYCLE_QUEUE = "edt.reconciler.lifecycle"
LIFECYCLE_KEYS = ("import.history.cancelled",)


@dataclass
class Prepared:
    plans: list[EstPlan]
    site: str
    work: list[domain.GroupWork]  # empty when the import pauses for the wizard (or is an undo)

    @property
    def matchings(self) -> list[domain.EstablishmentMatching]:
        return [p.matching for p in self.plans]


class ReconcilerStage:
    """The group-creation stage, the ENT directory uploads and the manual import wizard."""

    name = StageName.GROUPS

    def __init__(self, db: Database, outbox: Outbox, blobs: BlobStore, settings: Settings) -> None:
        self.db = db
        self.outbox = outbox
        self.blobs = blobs
        self.settings = settings

    # --- the stage --------------------------------------------------------------------------------

    async def prepare(self, cmd: StageCommand) -> Prepared:
        if cmd.mode is Mode.UNDO:
            return Prepared([], cmd.site, [])  # see _restore: the inverse of the undone import's write
        parts = domain.timetable_parts(cmd)
        ests = list(parts)
        async with self.db.read() as conn:
            latest = await store.latest_snapshots(conn, cmd.site, ests)
            stored, decisions = await store.load_stored(conn, cmd.site, ests)

        pauses = cmd.mode is Mode.MANUAL and cmd.review

        def compute() -> Prepared:
            with gc_paused():  # tens of thousands of memberships, all kept: no collection while they are built
                plans = [self._plan(est, sha, latest.get(est), stored.get(est), decisions.get(est, {}))
                         for est, sha in sorted(parts.items())]
                work = [] if pauses else [domain.group_work(plan, cmd.mode) for plan in plans]
            return Prepared(plans, cmd.site, work)

        return await asyncio.to_thread(compute)  # CPU work off the event loop, outside the transaction

    async def apply(self, uow: UnitOfWork, cmd: StageCommand, prepared: Prepared) -> StageResult:
        conn = uow.conn
        if cmd.mode is Mode.UNDO:
            return await self._restore(uow, cmd)
        await store.save_results(self.db, conn, cmd.import_id, cmd.site, prepared.matchings)
        if cmd.mode is Mode.MANUAL and cmd.review:
            return await self._pause(uow, cmd, prepared)
        per_est: list[list[dict[str, Any]]] = []
        kept_keys: set[str] = set()
        waiting: list[domain.Waiting] = []
        for work in prepared.work:
            replaced: dict[str, Any] = {}
            if cmd.mode is Mode.MANUAL:  # its selection becomes the establishment's (reused by automatic imports)
                replaced["selection"] = await store.selection_rows(conn, cmd.site, work.plan.est)
                await store.save_selection(conn, cmd.site, work.plan.est, work.selection, cmd.import_id)
            kept_keys.update(c.key for c in work.kept)
            waiting += [domain.Waiting(work.plan.est, c.key, c.label) for c in work.late]
            per_est.append(await self._write_groups(uow, cmd.site, work, cmd.import_id, replaced))
        result = domain.decide(prepared.matchings, actions=domain.sum_actions(per_est), kept=len(kept_keys),
                               waiting=waiting)
        result.artifacts["courses_kept"] = sorted(kept_keys)
        return result

    async def _pause(self, uow: UnitOfWork, cmd: StageCommand, prepared: Prepared) -> StageResult:
        """Manual import with the wizard: store the preview and the starting selection; nothing else."""
        preview = {"import_id": cmd.import_id, "site": cmd.site, "establishment": cmd.establishment,
                   "thresholds": cmd.artifacts.get("thresholds"),
                   "establishments": [wizard.establishment_preview(
                       p.est, p.tt, p.courses, p.directory, p.snapshot, p.results, p.stored, p.decisions,
                       p.matching.counts) for p in prepared.plans]}
        selection = {p.est: wizard.initial_selection(p.tt, p.courses, p.stored, p.decisions) for p in prepared.plans}
        await store.save_preview(self.db, uow.conn, cmd.import_id, cmd.site, cmd.model_dump(mode="json"), preview,
                                 selection)
        return domain.decide(prepared.matchings, paused=True)

    async def _write_groups(self, uow: UnitOfWork, site: str, work: domain.GroupWork, import_id: str,
                            replaced: dict[str, Any]) -> list[dict[str, Any]]:
        """Diff the establishment's stored groups and memberships against what this import wants; write only
        the difference (same export again: nothing), and what undoes it. `replaced`: the selection and
        decisions rows this import replaced. Returns the bilan's action lines."""
        est = work.plan.est
        await self.db.advisory_lock(uow.conn, "groups", site, est)
        have_g = await store.stored_groups(uow.conn, site, est)
        # Only the groups whose membership digest changed are diffed member by member.
        changed = groups.changed_groups(have_g, work.want_groups)
        have_m = await store.stored_memberships(uow.conn, site, est, changed)
        want_m = {k: m for k, m in work.want_members.items() if m.group_key in changed}
        d = groups.diff(have_g, have_m, work.want_groups, want_m)
        inverse = await self._write_undoable(uow, site, est, d, import_id, have_g, replaced)
        kept_before = await self._kept_in_force(uow, site, est, had_groups=bool(have_g))
        await store.record_group_change(uow.conn, site, est, import_id, inverse, sorted(c.key for c in work.kept),
                                        kept_before)
        return d.actions()

    async def _write_undoable(self, uow: UnitOfWork, site: str, est: str, d: groups.Diff, import_id: str,
                              before: dict[str, groups.GroupRow], replaced: dict[str, Any],
                              origins: dict[str, str | None] | None = None) -> dict[str, Any]:
        """Write `d` and return what undoes it exactly (the rows it deletes or changes, as they are now)."""
        conn = uow.conn
        touched = [*d.delete_groups, *(g.key for g in d.update_groups)]
        group_origins: dict[str, str | None] = dict(await store.group_origins(conn, site, est, touched))
        deleted = await store.membership_rows(conn, site, est, d.delete_members)
        inverse = {**groups.inverse(d, before, deleted, group_origins), **replaced}
        await store.write_group_diff(conn, site, est, d, import_id, origins)
        return inverse

    async def _kept_in_force(self, uow: UnitOfWork, site: str, est: str, *, had_groups: bool) -> list[str] | None:
        """The courses kept before this write: those of the establishment's latest write (or, if that one
        was undone, of the one before it); none before a first import; None when not known (history older
        than the record of writes)."""
        latest = await store.latest_group_change(uow.conn, site, est)
        if latest is None:
            return None if had_groups else []
        return list(latest.previous_kept) if latest.reverted_by and latest.previous_kept is not None else (
            None if latest.reverted_by else list(latest.kept))

    # --- undo and abort ------------------------------------------------------------------------------

    async def _restore(self, uow: UnitOfWork, cmd: StageCommand) -> StageResult:
        """An undo import: each establishment's groups, memberships, selection and person decisions as they
        were before the undone import (its write's inverse), and the courses kept then. An establishment whose
        history predates the record of writes is re-synchronised from the restored model instead."""
        undone = str(cmd.artifacts["undo_of"])
        parts: dict[str, str] = dict(cmd.artifacts.get("timetables") or {})
        per_est: list[list[dict[str, Any]]] = []
        kept_keys: set[str] = set()
        restored: dict[str, str] = {}
        for est in sorted(parts):
            conn = uow.conn
            await self.db.advisory_lock(conn, "groups", cmd.site, est)
            row = next((r for r in await store.group_changes_of(conn, undone) if r.establishment == est), None)
            latest = await store.latest_group_change(conn, cmd.site, est)
            if row is None or row.reverted_by or latest is None or latest.import_id != undone:
                actions, kept = await self._resync(uow, cmd, est, parts[est])
                restored[est] = "resynchronised"
            else:
                d, _ = groups.diff_of(row.inverse)
                before = await store.stored_groups(conn, cmd.site, est)
                replaced = await self._replaced_by(conn, cmd.site, est, row.inverse)
                inverse = await self._write_undoable(uow, cmd.site, est, d, cmd.import_id, before, replaced)
                await self._restore_choices(conn, cmd.site, est, row.inverse)
                kept = list(row.previous_kept) if row.previous_kept is not None else (
                    await self._resync(uow, cmd, est, parts[est], write=False))[1]
                await store.mark_reverted(conn, undone, est, cmd.import_id)
                await store.record_group_change(conn, cmd.site, est, cmd.import_id, inverse, kept, list(row.kept))
                actions = d.actions()
                restored[est] = "exact"
            per_est.append(actions)
            kept_keys.update(kept)
        result = domain.decide_restore(domain.sum_actions(per_est), len(kept_keys), restored)
        result.artifacts["courses_kept"] = sorted(kept_keys)
        return result

    async def _replaced_by(self, conn: Any, site: str, est: str, inverse: dict[str, Any]) -> dict[str, Any]:
        """The selection and decisions rows a restore replaces (so that the restore can be undone too)."""
        out: dict[str, Any] = {}
        if inverse.get("selection") is not None:
            out["selection"] = await store.selection_rows(conn, site, est)
        if inverse.get("decisions") is not None:
            out["decisions"] = await store.decision_rows(conn, site, est)
        return out

    async def _restore_choices(self, conn: Any, site: str, est: str, inverse: dict[str, Any]) -> None:
        if inverse.get("selection") is not None:
            await store.restore_selection(conn, site, est, inverse["selection"])
        if inverse.get("decisions") is not None:
            await store.restore_decisions(conn, site, est, inverse["decisions"])

    async def _resync(self, uow: UnitOfWork, cmd: StageCommand, est: str, sha: str, *,
                      write: bool = True) -> tuple[list[dict[str, Any]], list[str]]:
        """An automatic re-sync of the establishment with the restored model ("" = none: no group at all),
        with its current selection; returns the bilan's lines and the courses kept."""
        conn = uow.conn
        if not sha:
            if not write:
                return [], []
            have_g = await store.stored_groups(conn, cmd.site, est)
            have_m = await store.stored_memberships(conn, cmd.site, est, have_g)
            d = groups.diff(have_g, have_m, {}, {})
            inverse = await self._write_undoable(uow, cmd.site, est, d, cmd.import_id, have_g, {})
            await store.record_group_change(conn, cmd.site, est, cmd.import_id, inverse, [],
                                            await self._kept_in_force(uow, cmd.site, est, had_groups=bool(have_g)))
            return d.actions(), []
        snapshot = (await store.latest_snapshots(conn, cmd.site, [est])).get(est)
        stored, decisions = await store.load_stored(conn, cmd.site, [est])

        def compute() -> domain.GroupWork:
            with gc_paused():
                plan = self._plan(est, sha, snapshot, stored.get(est), decisions.get(est, {}))
                return domain.group_work(plan, Mode.AUTO)

        work = await asyncio.to_thread(compute)  # a rare path (history older than the record of writes)
        kept = sorted(c.key for c in work.kept)
        if not write:
            return [], kept
        return await self._write_groups(uow, cmd.site, work, cmd.import_id, {}), kept

    async def compensate(self, import_id: str) -> None:
        """An import ended `cancelled` after its groups were written (aborted at a later boundary): its write
        is undone, unless a later import has written the establishment's groups since (which replaced them)."""
        async with self.outbox.unit_of_work() as uow:
            for row in await store.group_changes_of(uow.conn, import_id):
                if row.reverted_by:
                    continue
                await self.db.advisory_lock(uow.conn, "groups", row.site, row.establishment)
                latest = await store.latest_group_change(uow.conn, row.site, row.establishment)
                if latest is None or latest.import_id != import_id:
                    continue
                d, origins = groups.diff_of(row.inverse)
                await store.write_group_diff(uow.conn, row.site, row.establishment, d, import_id, origins)
                await self._restore_choices(uow.conn, row.site, row.establishment, row.inverse)
                await store.mark_reverted(uow.conn, import_id, row.establishment, import_id)

    def close(self) -> None:
        return None

    def _directory(self, sha: str | None) -> Directory | None:
        return self.blobs.load(sha, Directory.from_json) if sha else None

    def _plan(self, est: str, model: str, snapshot: str | None, stored: wizard.StoredSelection | None,
              decisions: wizard.Decisions) -> EstPlan:
        """One establishment's plan from its model and directory snapshot (both decoded once per process, and
        matched once: threshold control asked for the same pair)."""
        tt = self.blobs.load(model, loads)
        raw = reconcile_snapshot(self.blobs, model, tt, snapshot) if snapshot else None
        return domain.plan_establishment(est, tt, snapshot, self._directory(snapshot), raw, stored, decisions, model)

    async def record_access(self, event: AccessRecorded) -> None:
        """A read of personal data, for the notifier's access log: committed (outbox) before the data goes."""
        async with self.outbox.unit_of_work() as uow:
            await uow.emit(event)

    async def unreconciled_rows(self, results: list[Any], kind: str) -> list[dict[str, Any]] | None:
        """The unreconciled list of one kind of an import (its results, one per establishment): the stored
        entries joined with their model's names, off the event loop. None once retention purged it (the
        results, or the model they refer to)."""
        def render() -> list[dict[str, Any]] | None:
            listed: list[dict[str, Any]] = []
            for row in results:
                entries = (row.unmatched or {}).get(kind, [])
                if row.purged_at is not None:
                    return None
                if entries and isinstance(entries[0], dict):  # written whole, before entries were ident-only
                    listed += entries
                elif entries:
                    if not row.model_sha256 or not self.blobs.exists(row.model_sha256):
                        return None
                    listed += domain.unmatched_rows(self.blobs.load(row.model_sha256, loads), kind, entries)
            return listed

        return await asyncio.to_thread(render)

    # --- directory and IdPN uploads ----------------------------------------------------------------

    async def _publish_snapshot(self, uow: UnitOfWork, site: str, est: str) -> dict[str, Any]:
        """Snapshot of the establishment's directory and associations as they are in this transaction:
        blob, row, event. Called with the establishment's lock held."""
        directory = await store.load_directory(uow.conn, site, est)
        sha, _ = await asyncio.to_thread(self.blobs.put_bytes, directory.to_json())
        now = utcnow()
        counts = domain.directory_counts(directory)
        await store.save_snapshot(self.db, uow.conn, site, est, sha, counts, now)
        await uow.emit(DirectoryUpdated(site=site, establishment=est, sha256=sha, at=now, counts=counts))
        return {"site": site, "establishment": est, "sha256": sha, "counts": counts,
                "updated_at": iso(now)}

    async def _publish_now(self) -> None:
        """Publish now (the next request of the client — an import — must find the event on the broker);
        if the broker is down the relay keeps trying."""
        try:
            await self.outbox.relay.flush(wait=True)
        except Exception:  # noqa: BLE001 - the row stays in the outbox; the relay retries
            log.warning("directory event not published yet; the outbox relay will retry", exc_info=True)
            self.outbox.kick()

    async def put_directory(self, site: str, est: str, upload: domain.DirectoryUpload, mode: str) -> dict[str, Any]:
        async with self.outbox.unit_of_work() as uow:
            await self.db.advisory_lock(uow.conn, "directory", site, est)
            await store.write_directory(uow.conn, site, est, upload, mode)
            out = await self._publish_snapshot(uow, site, est)
        await self._publish_now()
        return {**out, "mode": mode, "received": upload.counts()}

    async def post_pronote_ids(self, site: str, est: str, upload: domain.PronoteIdsUpload,
                               mode: str) -> dict[str, Any]:
        """« mode complet » (start of the year) replaces every association of the establishment; « mode
        partiel » adds or updates those given (newcomers) — seed 004."""
        async with self.outbox.unit_of_work() as uow:
            await self.db.advisory_lock(uow.conn, "directory", site, est)
            total = await store.write_pronote_ids(uow.conn, site, est, upload, mode)
            out: dict[str, Any] = {"site": site, "establishment": est, "mode": mode,
                                   "received": len(upload.associations), "pronote_ids": total, "sha256": None}
            # No snapshot until a directory exists: threshold control keeps "not computed" meanwhile.
            if await store.has_directory(uow.conn, site, est):
                out["sha256"] = (await self._publish_snapshot(uow, site, est))["sha256"]
        await self._publish_now()
        return out

    # --- retention and personal data (docs/privacy.md) ------------------------------------------------

    async def purge(self, uow: UnitOfWork, now: datetime | None = None) -> dict[str, int]:
        """The unreconciled lists and finished wizards' previews older than EDT_RETENTION_LISTS_DAYS are
        emptied (their counts stay); superseded directory snapshots older than EDT_RETENTION_DIRECTORY_DAYS
        leave the blob store (never a current one, nor one an awaiting preview refers to). Current snapshots
        under a retired key are sealed again with the current one."""
        now = now or utcnow()
        conn, s = uow.conn, self.settings
        lists = await store.purge_lists(conn, now - timedelta(days=s.retention_lists_days), now)
        previews = await store.purge_previews(conn, now - timedelta(days=s.retention_lists_days), now)
        current = await store.current_snapshots(conn)
        old = await store.superseded_snapshots(conn, now - timedelta(days=s.retention_directory_days))
        old -= current | await store.awaiting_snapshots(conn)
        await store.forget_snapshots(conn, old)

        def files() -> tuple[int, int]:
            return (sum(self.blobs.delete(sha) for sha in sorted(old)),
                    sum(self.blobs.reseal(sha) for sha in sorted(current) if self.blobs.exists(sha)))

        deleted, resealed = await asyncio.to_thread(files)
        return {"lists_emptied": lists, "previews_emptied": previews, "snapshots_deleted": deleted,
                "resealed": resealed}

    async def purge_now(self) -> dict[str, int]:
        async with self.outbox.unit_of_work() as uow:
            return await self.purge(uow)

    async def on_privacy(self, uow: UnitOfWork, request: PrivacyRequest) -> tuple[dict[str, Any], list[FileIdent]]:
        """Retention on demand; for an ENT person, what the reconciler keeps (directory entries, IdPN
        associations, stored matches, memberships) and the person's idents in the files (from the
        memberships and matches), erased on `erase` — with a new directory snapshot, the older ones (which
        name the person) deleted, and awaiting previews rewritten without them."""
        if request.action == "retention":
            return await self.purge(uow), []
        assert request.site is not None and request.person is not None
        site, ent_id = request.site, request.person
        records = await store.person_records(uow.conn, site, ent_id)
        idents = domain.person_file_idents(records["memberships"], records["decisions"])
        data: dict[str, Any] = {name: [domain.row_view(r) for r in rows] for name, rows in records.items()}
        if request.action == "erase":
            for est in sorted({m.establishment for m in records["memberships"]}):
                await self.db.advisory_lock(uow.conn, "groups", site, est)
            data = {"erased": await store.erase_person(uow.conn, site, ent_id)}
            data.update(await self._forget_in_snapshots(uow, site, ent_id, records))
        return data, idents

    async def _forget_in_snapshots(self, uow: UnitOfWork, site: str, ent_id: str,
                                   records: dict[str, list[Any]]) -> dict[str, int]:
        """After an erasure: the establishments that listed the person get a new snapshot, every older one
        of theirs is deleted, and awaiting previews forget the person."""
        ests = sorted({r.establishment for r in records["directory"]} | {r.establishment
                                                                         for r in records["pronote_ids"]})
        new: dict[str, str] = {}
        for est in ests:
            await self.db.advisory_lock(uow.conn, "directory", site, est)
            if await store.has_directory(uow.conn, site, est):
                new[est] = (await self._publish_snapshot(uow, site, est))["sha256"]
        history = await store.site_snapshots(uow.conn, site)
        stale = set().union(*(history.get(est, set()) for est in ests)) if ests else set()
        stale -= set(new.values()) | await store.current_snapshots(uow.conn)
        rewritten = 0
        for row in await store.awaiting_previews(uow.conn, site):
            preview, selection, changed = wizard.forget_person(row.preview, row.selection, ent_id, new)
            if changed:
                await store.rewrite_preview(uow.conn, row.import_id, preview, selection)
                rewritten += 1
        await store.forget_snapshots(uow.conn, stale)
        deleted = await asyncio.to_thread(lambda: sum(self.blobs.delete(sha) for sha in sorted(stale)))
        return {"snapshots_replaced": len(new), "snapshots_deleted": deleted, "previews_rewritten": rewritten}

    # --- the wizard (manual import awaiting its selection) ----------------------------------------------

    async def on_lifecycle(self, delivery: Delivery) -> None:
        """`import.history.cancelled`: the notifier cancelled an import; a preview still awaiting its
        selection is dropped (a later confirm answers 409), and groups it wrote before an abort stopped it
        are restored."""
        event = ImportLifecycle.from_bytes(delivery.body)
        if event.status is not ImportStatus.CANCELLED:
            return
        async with self.db.transaction() as conn:
            await store.update_awaiting_preview(conn, event.import_id, status="cancelled", preview={})
        await self.compensate(event.import_id)

    async def row(self, import_id: str) -> Any:
        async with self.db.read() as conn:
            return await store.load_preview(conn, import_id)

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
            if not await store.update_awaiting_preview(conn, row.import_id, selection=selection):
                raise WizardError(409, "not_awaiting_selection", "The import is no longer awaiting its selection.")
        return selection

    async def confirm(self, row: Any) -> dict[str, Any]:
        """Apply the selection (groups and memberships as an automatic stage would), persist it and the
        decided matches for the establishment, and end the groups step as StageWorker would — ONE
        transaction, with the step's status event and the sessions command in the outbox. 409 when the
        import is not (or no longer) awaiting its selection."""
        if row.status != "awaiting":
            raise WizardError(409, "not_awaiting_selection", f"The import's selection is {row.status}.")
        cmd = StageCommand.model_validate(row.command)
        parts = domain.timetable_parts(cmd)
        snaps = {e["establishment"]: e["directory"] for e in row.preview["establishments"]}
        chosen: dict[str, wizard.Selection] = row.selection

        def compute() -> list[domain.GroupWork]:
            out = []
            with gc_paused():
                for est, sha in sorted(parts.items()):
                    selection = chosen.get(est) or {}
                    decisions = wizard.decisions_from_selection(selection)
                    out.append(domain.selected_work(self._plan(est, sha, snaps.get(est), None, decisions), selection))
            return out

        works = await asyncio.to_thread(compute)
        plans = [w.plan for w in works]
        per_est: list[list[dict[str, Any]]] = []
        kept_keys: set[str] = set()
        async with self.outbox.unit_of_work() as uow:
            if not await store.update_awaiting_preview(uow.conn, row.import_id, status="confirmed"):
                raise WizardError(409, "not_awaiting_selection", "The import is no longer awaiting its selection.")
            await store.save_results(self.db, uow.conn, cmd.import_id, cmd.site, [p.matching for p in plans])
            for work in works:
                est = work.plan.est
                replaced = {"selection": await store.selection_rows(uow.conn, cmd.site, est),
                            "decisions": await store.decision_rows(uow.conn, cmd.site, est)}
                await store.save_selection(uow.conn, cmd.site, est, work.selection, cmd.import_id)
                await store.save_decisions(self.db, uow.conn, cmd.site, est, work.selection, cmd.import_id)
                kept_keys.update(c.key for c in work.kept)
                per_est.append(await self._write_groups(uow, cmd.site, work, cmd.import_id, replaced))
            result = domain.decide([p.matching for p in plans], actions=domain.sum_actions(per_est),
                                   kept=len(kept_keys))
            result.artifacts["courses_kept"] = sorted(kept_keys)
            if await is_aborted(self.db, uow.conn, store.aborts, cmd.import_id):  # rolls everything back
                raise WizardError(409, "aborted", "The import was aborted: nothing of the selection was applied.")
            await finish_step(uow, self.name, cmd, result)
        return {"import_id": cmd.import_id, "status": ImportStatus.GENERATING_SESSIONS.value,
                "courses_kept": len(kept_keys), "actions": result.counts["actions"] if result.counts else []}
