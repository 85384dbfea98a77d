"""reconciler handlers.

- Directory and IdPN uploads: ONE transaction writes the rows, the new snapshot's hash and the
  `DirectoryUpdated` event (outbox, exchange edt.status, routing key directory.updated.<site>); the outbox
  is flushed before the API answers, so the event is on the broker before the client's next request.
- The stage (queue edt.groups): the canonical model of each establishment of the import × the latest
  directory snapshot → shared.reconcile → one transaction (StageWorker) recording the matching; no group is
  created yet (issue 6)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from services.reconciler import domain
from services.reconciler.store import persons, pronote_ids, results, snapshots, units
from shared.bus import Outbox, StageResult
from shared.db import Database, upsert
from shared.messages import STATUS_EXCHANGE, DirectoryUpdated, StageCommand, utcnow
from shared.reconcile import Directory, DirectoryPerson, DirectoryUnit, reconcile
from shared.timetable import loads
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


@dataclass
class Prepared:
    matchings: list[domain.EstablishmentMatching]
    site: str


class ReconcilerStage:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.db = rt.db

    async def prepare(self, cmd: StageCommand) -> Prepared:
        parts: dict[str, str] = dict(cmd.artifacts.get("timetables") or {})
        if not parts and cmd.establishment and cmd.artifacts.get("timetable_sha256"):
            parts = {cmd.establishment: cmd.artifacts["timetable_sha256"]}
        if not parts:
            raise RuntimeError("no canonical timetable in the command's artifacts")
        async with self.db.read() as conn:
            latest = {r.establishment: r.sha256 for r in (await conn.execute(sa.select(snapshots).where(
                snapshots.c.site == cmd.site, snapshots.c.establishment.in_(list(parts))))).all()}

        def compute() -> list[domain.EstablishmentMatching]:
            out = []
            for est, sha in sorted(parts.items()):
                tt = loads(self.rt.blobs.read_bytes(sha))
                snap = latest.get(est)
                found = reconcile(tt, Directory.from_json(self.rt.blobs.read_bytes(snap))) if snap else None
                out.append(domain.establishment_matching(est, tt, snap, found))
            return out

        return Prepared(await asyncio.to_thread(compute), cmd.site)

    async def apply(self, conn: AsyncConnection, cmd: StageCommand, prepared: Prepared) -> StageResult:
        now = utcnow()
        for m in prepared.matchings:
            await conn.execute(upsert(self.db, results, {
                "import_id": cmd.import_id, "establishment": m.establishment, "site": cmd.site,
                "snapshot_sha256": m.snapshot, "counts": m.counts, "unmatched": m.unmatched, "created_at": now},
                ["import_id", "establishment"], ["snapshot_sha256", "counts", "unmatched", "created_at"]))
        return domain.decide(prepared.matchings)


def build_handlers(rt: Runtime) -> dict[str, Any]:
    stage = ReconcilerStage(rt)
    return {"prepare": stage.prepare, "apply": stage.apply}
