"""validator handlers: stage command in → parse the deposited file in a worker process → one transaction
(the report, via StageWorker) → the canonical timetable's hash travels on to the next stage."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from datetime import datetime, timedelta
from typing import Any

from services.validator import domain, store
from services.validator.format.worker import validate_file, warm, worker_init
from shared.blobs import BlobStore
from shared.bus import Delivery
from shared.db import as_utc
from shared.messages import FileIdent, ImportLifecycle, Mode, PrivacyRequest, StageCommand, iso, utcnow
from shared.messages import Stage as StageName
from shared.outbox import Outbox
from shared.settings import Settings
from shared.stage import StageResult, UnitOfWork
from shared.timetable import loads, person_row_prefix


def accepted_software(settings: Settings) -> domain.AcceptedSoftware:
    products = frozenset(p.strip().upper() for p in settings.accepted_products.split(",") if p.strip())
    return domain.AcceptedSoftware(products=products, min_year=settings.accepted_min_year)


class ValidatorStage:
    """The validation stage: parse and check the deposited file in a worker process, record the report.
    Also the retention of the canonical models it stored, and what they hold about a person."""

    name = StageName.VALIDATION

    def __init__(self, blobs: BlobStore, settings: Settings, outbox: Outbox) -> None:
        self.blobs = blobs
        self.settings = settings
        self.outbox = outbox
        key_file = settings.private_key_file
        self.private_key = key_file.read_bytes() if key_file and key_file.exists() else None
        self.accepted = accepted_software(settings)
        self._pool: ProcessPoolExecutor | None = None

    def _executor(self) -> ProcessPoolExecutor:
        # A separate process: parsing an XL export is CPU work that must not stall this service's loop.
        # "spawn", not fork: this process runs threads (WebDAV, aiosqlite) that fork would copy mid-state.
        # The worker's functions live in a module of their own, which loads only the parser.
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self.settings.parse_workers,
                                             mp_context=multiprocessing.get_context("spawn"),
                                             initializer=worker_init, initargs=(os.getpid(),))
        return self._pool

    async def warm_up(self) -> None:
        """Start the worker process now: spawning it and loading the parser would otherwise be paid by the
        first import."""
        await asyncio.get_running_loop().run_in_executor(self._executor(), warm)

    async def prepare(self, cmd: StageCommand) -> dict[str, Any] | None:
        if cmd.mode is Mode.UNDO:
            return None  # no file: see domain.restoration
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor(), validate_file, cmd.file.sha256,
                                              str(self.blobs.root), self.blobs.keyring, self.settings.partner_name,
                                              self.private_key, self.accepted, sorted(cmd.establishments.values()))
        except BrokenProcessPool:
            # The worker died (killed, out of memory): a new one serves the retry and later imports.
            self.close()
            raise

    async def apply(self, uow: UnitOfWork, cmd: StageCommand, found: dict[str, Any] | None) -> StageResult:
        if found is None:
            return domain.restoration(cmd)
        result = domain.decide(cmd, found)
        await store.record_report(uow.conn, cmd.import_id, cmd.site, found, result.artifacts.get("timetables", {}),
                                  utcnow())
        return result

    def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    # --- retention and personal data (docs/privacy.md) ------------------------------------------------

    async def on_lifecycle(self, delivery: Delivery) -> None:
        """An import ended: its models' retention starts; an integrated one becomes its establishments'
        baseline."""
        event = ImportLifecycle.from_bytes(delivery.body)
        async with self.outbox.db.transaction() as conn:
            await store.end_report(conn, event.import_id, event.status.value, event.at)

    async def _kept(self, uow: UnitOfWork) -> list[domain.KeptModels]:
        return [domain.KeptModels(r.import_id, r.site, r.status, as_utc(r.ended_at), r.timetable_sha256,
                                  dict(r.timetables or {})) for r in await store.kept_reports(uow.conn)]

    async def purge(self, uow: UnitOfWork, now: datetime | None = None) -> dict[str, int]:
        """Canonical models whose import ended more than EDT_RETENTION_MODEL_DAYS ago leave the blob store,
        except each establishment's baseline; the reports stay (counts, problems), marked. Kept models under
        a retired key are sealed again with the current one."""
        now = now or utcnow()
        expired, gone, keep = domain.expired_models(await self._kept(uow), now, self.settings.retention_model_days)
        await store.mark_purged(uow.conn, expired, now)

        def files() -> tuple[int, int]:
            return (sum(self.blobs.delete(sha) for sha in sorted(gone)),
                    sum(self.blobs.reseal(sha) for sha in sorted(keep) if self.blobs.exists(sha)))

        deleted, resealed = await asyncio.to_thread(files)
        return {"imports_expired": len(expired), "models_deleted": deleted, "resealed": resealed}

    async def purge_now(self) -> dict[str, int]:
        async with self.outbox.unit_of_work() as uow:
            return await self.purge(uow)

    async def on_privacy(self, uow: UnitOfWork, request: PrivacyRequest) -> tuple[dict[str, Any], list[FileIdent]]:
        """Retention on demand; for a person (export or erase alike): the kept models holding them, by the
        idents the reconciler matched — sealed copies of the school's files, never rewritten, which leave by
        retention (the baseline when the next import replaces it)."""
        if request.action == "retention":
            return await self.purge(uow), []
        everything = await self._kept(uow)
        kept = [k for k in everything if k.site == request.site]
        base = domain.baselines(everything)
        days = self.settings.retention_model_days
        now = utcnow()

        def find() -> list[dict[str, Any]]:
            found = []
            records: dict[tuple[str, str, str], tuple[dict[str, Any], bytes]] = {}
            for k in sorted(kept, key=lambda k: k.ended_at or now, reverse=True):  # the newest file first
                for person in request.file_idents:
                    sha = k.parts.get(person.establishment)
                    if not sha or not self.blobs.exists(sha):
                        continue
                    key = (person.establishment, person.kind, person.ident)
                    if key not in records:  # decoded once: the newest model naming the person
                        record = domain.person_in_model(self.blobs.load(sha, loads), person)
                        if record is None:
                            continue
                        records[key] = (record, person_row_prefix(record["ident"], record["last_name"],
                                                                  record["first_name"]))
                    elif records[key][1] not in self.blobs.read_bytes(sha):  # older ones: by their bytes
                        continue
                    until = None if sha in base or k.ended_at is None else iso(k.ended_at + timedelta(days=days))
                    found.append({"import_id": k.import_id, "establishment": person.establishment,
                                  "kind": person.kind, "kept_until": until, "baseline": sha in base})
            return found + [{"record": record, "establishment": e, "kind": kind, "ident": ident}
                            for (e, kind, ident), (record, _) in records.items()]

        models = await asyncio.to_thread(find)
        return {"models": models}, []
