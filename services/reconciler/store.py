"""Tables owned by the reconciler service, and the queries of its handlers and routes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from services.reconciler import domain, wizard
from services.reconciler.groups import Diff, GroupRow, MemberRow
from shared.db import (
    Database,
    known_establishments_table,
    outbox_table,
    revoked_tokens_table,
    service_metadata,
    stage_aborts_table,
    stage_runs_table,
    upsert,
)
from shared.messages import utcnow
from shared.reconcile import Directory, DirectoryPerson, DirectoryUnit

metadata = service_metadata("reconciler")
outbox = outbox_table(metadata)
revoked_tokens = revoked_tokens_table(metadata)
known_establishments = known_establishments_table(metadata)
runs = stage_runs_table(metadata)
aborts = stage_aborts_table(metadata)

# The ENT directory of each establishment (PUT …/directory): persons, then classes and groups.
persons = sa.Table(
    "directory_persons",
    metadata,
    sa.Column("site", sa.String(64), primary_key=True),
    sa.Column("establishment", sa.String(64), primary_key=True),
    sa.Column("id", sa.String(128), primary_key=True),  # the ENT's id
    sa.Column("kind", sa.String(16), nullable=False),  # teacher | staff | student
    sa.Column("last_name", sa.String(255), nullable=False),
    sa.Column("first_name", sa.String(255), nullable=False),
    sa.Column("birth_date", sa.Date, nullable=True),
    sa.Column("pronote_id", sa.String(128), nullable=True),
    sa.Column("cas_id", sa.String(128), nullable=True),
)

units = sa.Table(
    "directory_units",
    metadata,
    sa.Column("site", sa.String(64), primary_key=True),
    sa.Column("establishment", sa.String(64), primary_key=True),
    sa.Column("kind", sa.String(8), primary_key=True),  # class | group
    sa.Column("id", sa.String(128), primary_key=True),
    sa.Column("name", sa.String(255), nullable=False),
)

# The IdPN export (POST …/pronote-ids): PRONOTE id → ENT person, the first reconciliation rule.
pronote_ids = sa.Table(
    "directory_pronote_ids",
    metadata,
    sa.Column("site", sa.String(64), primary_key=True),
    sa.Column("establishment", sa.String(64), primary_key=True),
    sa.Column("pronote_id", sa.String(128), primary_key=True),
    sa.Column("ent_id", sa.String(128), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

# The latest snapshot (blob sha256 of shared.reconcile.Directory JSON) of each establishment that has a
# directory; rewritten by every directory or IdPN upload and announced by a DirectoryUpdated event.
snapshots = sa.Table(
    "directory_snapshots",
    metadata,
    sa.Column("site", sa.String(64), primary_key=True),
    sa.Column("establishment", sa.String(64), primary_key=True),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("counts", sa.JSON, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

# Every snapshot an establishment had, for retention (docs/privacy.md): a snapshot holds the directory's
# names and birth dates, so one superseded (`superseded_at`) leaves the blob store after
# EDT_RETENTION_DIRECTORY_DAYS — never the current one, nor one an awaiting preview refers to.
snapshot_history = sa.Table(
    "directory_snapshot_history",
    metadata,
    sa.Column("site", sa.String(64), primary_key=True),
    sa.Column("establishment", sa.String(64), primary_key=True),
    sa.Column("sha256", sa.String(64), primary_key=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("superseded_at", sa.DateTime(timezone=True), nullable=True),
)

# The matching result of each import, per establishment: counts and the unmatched entries (for the CSV):
# [ident, reason] per entry, the names being the model's (`model_sha256`), joined in when the list is read
# (rows written before that hold the whole rows). The list is emptied by retention (`purged_at`), the
# counts stay.
results = sa.Table(
    "reconciliation_results",
    metadata,
    sa.Column("import_id", sa.String(32), primary_key=True),
    sa.Column("establishment", sa.String(64), primary_key=True),
    sa.Column("site", sa.String(64), nullable=False, index=True),
    sa.Column("snapshot_sha256", sa.String(64), nullable=True),  # None: no directory for the establishment
    sa.Column("counts", sa.JSON, nullable=False),
    sa.Column("unmatched", sa.JSON, nullable=False),  # {kind: [[ident, reason], …]}
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("model_sha256", sa.String(64), nullable=True),
    sa.Column("purged_at", sa.DateTime(timezone=True), nullable=True),
)

# --- group creation -----------------------------------------------------------------------------------

# The groups the imports created for each establishment: the file's classes, parts of class and groups
# (linked to the ENT class/group when matched), and one per course kept (« hiérarchie Cours »).
# `key` = "<kind>:<ident>" (course: "course:<course key>"). Diffed against on every import.
groups = sa.Table(
    "groups",
    metadata,
    sa.Column("site", sa.String(64), primary_key=True),
    sa.Column("establishment", sa.String(64), primary_key=True),
    sa.Column("key", sa.String(400), primary_key=True),
    sa.Column("kind", sa.String(8), nullable=False),  # class | part | group | course
    sa.Column("ident", sa.String(300), nullable=False),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("parent", sa.String(400), nullable=True),  # part → its class, course → its class or group
    sa.Column("ent_id", sa.String(128), nullable=True),  # the ENT class/group it is linked to
    sa.Column("import_id", sa.String(32), nullable=False),  # last import that created or changed it
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    # digest of its membership keys: a re-import diffs the memberships of the groups whose digest changed
    sa.Column("members_fp", sa.String(32), nullable=True),
)

# Memberships (« rattachements / hiérarchie »): matched people only, by ENT id; students in classes,
# parts and groups with the file's entry/exit dates, teachers in the courses they teach.
memberships = sa.Table(
    "group_memberships",
    metadata,
    sa.Column("site", sa.String(64), primary_key=True),
    sa.Column("establishment", sa.String(64), primary_key=True),
    sa.Column("key", sa.String(700), primary_key=True),  # group key # kind:ent id # start # end
    sa.Column("group_key", sa.String(400), nullable=False),
    sa.Column("person_kind", sa.String(8), nullable=False),  # teacher | student
    sa.Column("person_id", sa.String(128), nullable=False),  # ENT id
    sa.Column("file_ident", sa.String(128), nullable=False),
    sa.Column("start", sa.Date, nullable=True),
    sa.Column("end", sa.Date, nullable=True),
    sa.Column("import_id", sa.String(32), nullable=False),
    sa.Index("ix_reconciler_memberships_group", "site", "establishment", "group_key"),
)

# The selection of the last manual import of each establishment (subjects, classes, groups, courses on or
# off); automatic imports re-sync only the courses active here.
selections = sa.Table(
    "selections",
    metadata,
    sa.Column("site", sa.String(64), primary_key=True),
    sa.Column("establishment", sa.String(64), primary_key=True),
    sa.Column("kind", sa.String(8), primary_key=True),  # subject | class | group | course
    sa.Column("ident", sa.String(300), primary_key=True),
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("import_id", sa.String(32), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

# Person matches decided in the wizard (accept / refuse / override), reused by every later import.
person_decisions = sa.Table(
    "person_decisions",
    metadata,
    sa.Column("site", sa.String(64), primary_key=True),
    sa.Column("establishment", sa.String(64), primary_key=True),
    sa.Column("kind", sa.String(8), primary_key=True),  # teachers | students
    sa.Column("ident", sa.String(128), primary_key=True),  # the person's ident in the file
    sa.Column("decision", sa.String(8), nullable=False),  # accept | refuse | override
    sa.Column("ent_id", sa.String(128), nullable=True),
    sa.Column("import_id", sa.String(32), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

# The last writes of groups and memberships of each establishment (at most CHANGES_KEPT): what undoes each one
# exactly (`groups.inverse`, with the selection and person decisions it replaced), and the courses kept after
# it and before it. An abort's compensation and an undo only ever need the latest of an establishment.
group_changes = sa.Table(
    "reconciler_group_changes",
    metadata,
    sa.Column("import_id", sa.String(32), primary_key=True),
    sa.Column("establishment", sa.String(64), primary_key=True),
    sa.Column("site", sa.String(64), nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("inverse", sa.JSON, nullable=False),
    sa.Column("kept", sa.JSON, nullable=False),  # course keys kept after this import
    sa.Column("previous_kept", sa.JSON, nullable=True),  # … before it (None: not known)
    sa.Column("reverted_by", sa.String(32), nullable=True),  # the undo (or the abort) that restored it
    sa.Index("ix_reconciler_group_changes_est", "site", "establishment", "at"),
)
CHANGES_KEPT = 3

# A manual import paused for its selection: the preview, the selection being edited and the command to
# send on at confirm. status awaiting | confirmed | cancelled.
previews = sa.Table(
    "previews",
    metadata,
    sa.Column("import_id", sa.String(32), primary_key=True),
    sa.Column("site", sa.String(64), nullable=False, index=True),
    sa.Column("status", sa.String(12), nullable=False),
    sa.Column("command", sa.JSON, nullable=False),
    sa.Column("preview", sa.JSON, nullable=False),
    sa.Column("selection", sa.JSON, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("purged_at", sa.DateTime(timezone=True), nullable=True),  # retention emptied it
)


def _chunks(items: list[str], size: int = 500) -> list[list[str]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


# --- the ENT directory ----------------------------------------------------------------------------------


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


async def has_directory(conn: AsyncConnection, site: str, est: str) -> bool:
    return (await conn.execute(sa.select(snapshots.c.sha256).where(
        snapshots.c.site == site, snapshots.c.establishment == est))).first() is not None


async def latest_snapshots(conn: AsyncConnection, site: str, ests: list[str]) -> dict[str, str]:
    return {r.establishment: r.sha256 for r in (await conn.execute(sa.select(snapshots).where(
        snapshots.c.site == site, snapshots.c.establishment.in_(ests)))).all()}


async def save_snapshot(db: Database, conn: AsyncConnection, site: str, est: str, sha: str, counts: dict[str, int],
                        at: datetime) -> None:
    """The establishment's current snapshot; the one it replaces is superseded from now (retention)."""
    await conn.execute(upsert(db, snapshots, {"site": site, "establishment": est, "sha256": sha,
                                              "counts": counts, "updated_at": at},
                              ["site", "establishment"], ["sha256", "counts", "updated_at"]))
    key = (snapshot_history.c.site == site, snapshot_history.c.establishment == est)
    await conn.execute(snapshot_history.update().where(*key, snapshot_history.c.sha256 != sha,
                                                       snapshot_history.c.superseded_at.is_(None))
                       .values(superseded_at=at))
    await conn.execute(upsert(db, snapshot_history, {"site": site, "establishment": est, "sha256": sha,
                                                     "created_at": at, "superseded_at": None},
                              ["site", "establishment", "sha256"], ["superseded_at"]))


async def write_directory(conn: AsyncConnection, site: str, est: str, upload: domain.DirectoryUpload,
                          mode: str) -> None:
    """`replace`: the upload is the whole directory; `merge`: its entries replace those with the same id."""
    where_p = (persons.c.site == site, persons.c.establishment == est)
    where_u = (units.c.site == site, units.c.establishment == est)
    if mode == "replace":
        await conn.execute(persons.delete().where(*where_p))
        await conn.execute(units.delete().where(*where_u))
    else:
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


async def write_pronote_ids(conn: AsyncConnection, site: str, est: str, upload: domain.PronoteIdsUpload,
                            mode: str) -> int:
    """« mode complet » replaces every association of the establishment; « mode partiel » adds or updates
    those given (seed 004). Returns how many the establishment has now."""
    now = utcnow()
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
    return len((await conn.execute(sa.select(pronote_ids.c.pronote_id).where(*where))).all())


# --- selections, decisions, results ---------------------------------------------------------------------


async def load_stored(conn: AsyncConnection, site: str, ests: list[str]) -> tuple[
        dict[str, wizard.StoredSelection], dict[str, wizard.Decisions]]:
    """The selection of each establishment's last manual import and the person decisions it keeps."""
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
            "snapshot_sha256": m.snapshot, "counts": m.counts, "unmatched": m.unmatched, "created_at": now,
            "model_sha256": m.model},
            ["import_id", "establishment"], ["snapshot_sha256", "counts", "unmatched", "created_at", "model_sha256"]))


# --- groups and memberships -----------------------------------------------------------------------------


async def stored_groups(conn: AsyncConnection, site: str, est: str) -> dict[str, GroupRow]:
    """The establishment's groups (by key) as they are now, with their membership digests."""
    return {r.key: GroupRow(r.key, r.kind, r.ident, r.name, r.parent, r.ent_id, r.members_fp)
            for r in (await conn.execute(sa.select(groups).where(
                groups.c.site == site, groups.c.establishment == est))).all()}


async def stored_memberships(conn: AsyncConnection, site: str, est: str, group_keys: Iterable[str]) -> list[str]:
    """The membership keys of these groups of the establishment."""
    out: list[str] = []
    for chunk in _chunks(sorted(group_keys)):
        out += (await conn.execute(sa.select(memberships.c.key).where(
            memberships.c.site == site, memberships.c.establishment == est,
            memberships.c.group_key.in_(chunk)))).scalars()
    return out


async def group_origins(conn: AsyncConnection, site: str, est: str, keys: Iterable[str]) -> dict[str, str]:
    """The import that last wrote each of these groups."""
    out: dict[str, str] = {}
    for chunk in _chunks(sorted(keys)):
        rows = await conn.execute(sa.select(groups.c.key, groups.c.import_id).where(
            groups.c.site == site, groups.c.establishment == est, groups.c.key.in_(chunk)))
        out.update({r.key: r.import_id for r in rows})
    return out


async def membership_rows(conn: AsyncConnection, site: str, est: str, keys: Iterable[str]) -> list[
        tuple[MemberRow, str]]:
    """These memberships in full, with the import that wrote each."""
    m = memberships
    out: list[tuple[MemberRow, str]] = []
    for chunk in _chunks(sorted(keys)):
        for r in (await conn.execute(sa.select(m).where(m.c.site == site, m.c.establishment == est,
                                                        m.c.key.in_(chunk)))).all():
            out.append((MemberRow(r.key, r.group_key, r.person_kind, r.person_id, r.file_ident, r.start, r.end),
                        r.import_id))
    return out


async def write_group_diff(conn: AsyncConnection, site: str, est: str, d: Diff, import_id: str,
                           origins: Mapping[str, str | None] | None = None) -> None:
    """`origins`: restored rows keep the import that had written them (an abort's compensation)."""
    origins = origins or {}
    where_g = (groups.c.site == site, groups.c.establishment == est)
    where_m = (memberships.c.site == site, memberships.c.establishment == est)
    now = utcnow()
    for chunk in _chunks(d.delete_members):
        await conn.execute(memberships.delete().where(*where_m, memberships.c.key.in_(chunk)))
    for chunk in _chunks(d.delete_groups):
        await conn.execute(groups.delete().where(*where_g, groups.c.key.in_(chunk)))
    for g in d.update_groups:
        await conn.execute(groups.update().where(*where_g, groups.c.key == g.key).values(
            kind=g.kind, ident=g.ident, name=g.name, parent=g.parent, ent_id=g.ent_id, members_fp=g.members_fp,
            import_id=origins.get(g.key) or import_id, updated_at=now))
    if d.create_groups:
        await conn.execute(groups.insert(), [
            {"site": site, "establishment": est, "key": g.key, "kind": g.kind, "ident": g.ident,
             "name": g.name, "parent": g.parent, "ent_id": g.ent_id, "members_fp": g.members_fp,
             "import_id": origins.get(g.key) or import_id, "updated_at": now}
            for g in d.create_groups])
    rows = [{"site": site, "establishment": est, "key": m.key, "group_key": m.group_key,
             "person_kind": m.person_kind, "person_id": m.person_id, "file_ident": m.file_ident, "start": m.start,
             "end": m.end, "import_id": origins.get(m.key) or import_id} for m in d.create_members]
    for i in range(0, len(rows), 2000):
        await conn.execute(memberships.insert(), rows[i:i + 2000])


async def selection_rows(conn: AsyncConnection, site: str, est: str) -> list[list[Any]]:
    """The establishment's stored selection as [kind, ident, active, import_id] rows (restorable)."""
    return [[r.kind, r.ident, bool(r.active), r.import_id] for r in (await conn.execute(sa.select(selections).where(
        selections.c.site == site, selections.c.establishment == est))).all()]


async def restore_selection(conn: AsyncConnection, site: str, est: str, rows: list[list[Any]]) -> None:
    now = utcnow()
    await conn.execute(selections.delete().where(selections.c.site == site, selections.c.establishment == est))
    values = [{"site": site, "establishment": est, "kind": k, "ident": i, "active": a, "import_id": imp,
               "updated_at": now} for k, i, a, imp in rows]
    for i in range(0, len(values), 2000):
        await conn.execute(selections.insert(), values[i:i + 2000])


async def decision_rows(conn: AsyncConnection, site: str, est: str) -> list[list[Any]]:
    d = person_decisions
    return [[r.kind, r.ident, r.decision, r.ent_id, r.import_id] for r in (await conn.execute(sa.select(d).where(
        d.c.site == site, d.c.establishment == est))).all()]


async def restore_decisions(conn: AsyncConnection, site: str, est: str, rows: list[list[Any]]) -> None:
    d = person_decisions
    now = utcnow()
    await conn.execute(d.delete().where(d.c.site == site, d.c.establishment == est))
    if rows:
        await conn.execute(d.insert(), [{"site": site, "establishment": est, "kind": k, "ident": i, "decision": dec,
                                         "ent_id": ent, "import_id": imp, "updated_at": now}
                                        for k, i, dec, ent, imp in rows])


async def latest_group_change(conn: AsyncConnection, site: str, est: str) -> Any:
    c = group_changes
    return (await conn.execute(sa.select(c).where(c.c.site == site, c.c.establishment == est)
                               .order_by(c.c.at.desc()).limit(1))).first()


async def group_changes_of(conn: AsyncConnection, import_id: str) -> list[Any]:
    return list((await conn.execute(sa.select(group_changes).where(group_changes.c.import_id == import_id))).all())


async def record_group_change(conn: AsyncConnection, site: str, est: str, import_id: str, inverse: dict[str, Any],
                              kept: list[str], previous_kept: list[str] | None) -> None:
    """This write's inverse, as the establishment's latest; older ones beyond CHANGES_KEPT are dropped."""
    c = group_changes
    await conn.execute(c.insert().values(import_id=import_id, establishment=est, site=site, at=utcnow(),
                                         inverse=inverse, kept=kept, previous_kept=previous_kept))
    old = (await conn.execute(sa.select(c.c.import_id).where(c.c.site == site, c.c.establishment == est)
                              .order_by(c.c.at.desc()).offset(CHANGES_KEPT))).scalars().all()
    if old:
        await conn.execute(c.delete().where(c.c.site == site, c.c.establishment == est, c.c.import_id.in_(old)))


async def mark_reverted(conn: AsyncConnection, import_id: str, est: str, by: str) -> None:
    await conn.execute(group_changes.update().where(group_changes.c.import_id == import_id,
                                                    group_changes.c.establishment == est).values(reverted_by=by))


# --- previews of manual imports awaiting their selection ------------------------------------------------


async def save_preview(db: Database, conn: AsyncConnection, import_id: str, site: str, command: dict[str, Any],
                       preview: dict[str, Any], selection: dict[str, Any]) -> None:
    now = utcnow()
    await conn.execute(upsert(db, previews, {
        "import_id": import_id, "site": site, "status": "awaiting", "command": command, "preview": preview,
        "selection": selection, "created_at": now, "updated_at": now},
        ["import_id"], ["status", "command", "preview", "selection", "updated_at"]))


async def load_preview(conn: AsyncConnection, import_id: str) -> Any:
    return (await conn.execute(sa.select(previews).where(previews.c.import_id == import_id))).first()


async def update_awaiting_preview(conn: AsyncConnection, import_id: str, **values: Any) -> bool:
    """Change a preview still awaiting its selection; False when it no longer is."""
    done = await conn.execute(previews.update().where(previews.c.import_id == import_id,
                                                      previews.c.status == "awaiting")
                              .values(**values, updated_at=utcnow()))
    return bool(done.rowcount == 1)


# --- queries of the routes (each takes the caller's connection) ---------------------------------------


async def get_snapshot(conn: AsyncConnection, site: str, est: str) -> Any:
    return (await conn.execute(sa.select(snapshots).where(snapshots.c.site == site,
                                                          snapshots.c.establishment == est))).first()


async def directory_page(conn: AsyncConnection, site: str, est: str, section: str, kind: str | None,
                         after_id: str | None, limit: int) -> list[Any]:
    """One page of the stored directory, by id: persons (of one kind if given), classes or groups."""
    if section == "persons":
        table = persons
        q = sa.select(persons).where(persons.c.site == site, persons.c.establishment == est)
        if kind:
            q = q.where(persons.c.kind == kind)
    else:
        table = units
        q = sa.select(units).where(units.c.site == site, units.c.establishment == est,
                                   units.c.kind == ("class" if section == "classes" else "group"))
    if after_id is not None:
        q = q.where(table.c.id > after_id)
    return list((await conn.execute(q.order_by(table.c.id).limit(limit))).all())


async def results_of(conn: AsyncConnection, import_id: str) -> list[Any]:
    """The matching results of an import, one per establishment."""
    return list((await conn.execute(sa.select(results).where(results.c.import_id == import_id)
                                    .order_by(results.c.establishment))).all())


async def groups_page(conn: AsyncConnection, site: str, est: str, kind: str | None, after_key: str | None,
                      limit: int) -> list[Any]:
    q = sa.select(groups).where(groups.c.site == site, groups.c.establishment == est)
    if kind:
        q = q.where(groups.c.kind == kind)
    if after_key is not None:
        q = q.where(groups.c.key > after_key)
    return list((await conn.execute(q.order_by(groups.c.key).limit(limit))).all())


async def members_of(conn: AsyncConnection, site: str, est: str, keys: list[str]) -> dict[str, list[Any]]:
    """The memberships of each group key."""
    out: dict[str, list[Any]] = {k: [] for k in keys}
    for i in range(0, len(keys), 500):
        for m in (await conn.execute(sa.select(memberships).where(
                memberships.c.site == site, memberships.c.establishment == est,
                memberships.c.group_key.in_(keys[i:i + 500])))).all():
            out[m.group_key].append(m)
    return out


# --- retention (docs/privacy.md) -------------------------------------------------------------------------


async def purge_lists(conn: AsyncConnection, before: datetime, at: datetime) -> int:
    """Empty the unreconciled lists of imports matched before `before`; their counts stay."""
    done = await conn.execute(results.update().where(results.c.created_at < before, results.c.purged_at.is_(None))
                              .values(unmatched={}, purged_at=at))
    return int(done.rowcount or 0)


async def purge_previews(conn: AsyncConnection, before: datetime, at: datetime) -> int:
    """Empty the previews of wizards confirmed or cancelled before `before` (one still awaiting stays)."""
    done = await conn.execute(previews.update().where(
        previews.c.status.in_(("confirmed", "cancelled")), previews.c.updated_at < before,
        previews.c.purged_at.is_(None)).values(preview={}, selection={}, purged_at=at))
    return int(done.rowcount or 0)


async def awaiting_snapshots(conn: AsyncConnection) -> set[str]:
    """The directory snapshots the previews still awaiting their selection refer to."""
    out: set[str] = set()
    for row in (await conn.execute(sa.select(previews.c.preview).where(previews.c.status == "awaiting"))).all():
        out.update(e.get("directory") for e in (row.preview or {}).get("establishments", []) if e.get("directory"))
    return out


async def current_snapshots(conn: AsyncConnection) -> set[str]:
    return set((await conn.execute(sa.select(snapshots.c.sha256))).scalars())


async def superseded_snapshots(conn: AsyncConnection, before: datetime) -> set[str]:
    return set((await conn.execute(sa.select(snapshot_history.c.sha256).where(
        snapshot_history.c.superseded_at < before))).scalars())


async def forget_snapshots(conn: AsyncConnection, shas: Iterable[str]) -> None:
    for chunk in _chunks(sorted(shas)):
        await conn.execute(snapshot_history.delete().where(snapshot_history.c.sha256.in_(chunk)))


async def site_snapshots(conn: AsyncConnection, site: str) -> dict[str, set[str]]:
    """Every snapshot each establishment of the site has had (current and superseded)."""
    out: dict[str, set[str]] = {}
    for row in (await conn.execute(sa.select(snapshot_history).where(snapshot_history.c.site == site))).all():
        out.setdefault(row.establishment, set()).add(row.sha256)
    return out


# --- a person, by ENT id (docs/privacy.md: export and erasure) -------------------------------------------


async def person_records(conn: AsyncConnection, site: str, ent_id: str) -> dict[str, list[Any]]:
    """Everything the reconciler keeps about one ENT person of a site."""
    joined = memberships.join(groups, sa.and_(groups.c.site == memberships.c.site,
                                              groups.c.establishment == memberships.c.establishment,
                                              groups.c.key == memberships.c.group_key), isouter=True)
    queries = {
        "directory": sa.select(persons).where(persons.c.site == site, persons.c.id == ent_id),
        "pronote_ids": sa.select(pronote_ids).where(pronote_ids.c.site == site, pronote_ids.c.ent_id == ent_id),
        "decisions": sa.select(person_decisions).where(person_decisions.c.site == site,
                                                       person_decisions.c.ent_id == ent_id),
        "memberships": sa.select(memberships, groups.c.name.label("group_name")).select_from(joined).where(
            memberships.c.site == site, memberships.c.person_id == ent_id),
    }
    return {name: list((await conn.execute(query)).all()) for name, query in queries.items()}


async def erase_person(conn: AsyncConnection, site: str, ent_id: str) -> dict[str, int]:
    """Delete one ENT person's directory entries, IdPN associations, stored matches and memberships; the
    groups that lost a member are diffed member by member at the next import (digest cleared)."""
    touched = list((await conn.execute(sa.select(memberships.c.establishment, memberships.c.group_key).where(
        memberships.c.site == site, memberships.c.person_id == ent_id).distinct())).all())
    counts = {}
    for name, table, where in (
            ("directory", persons, (persons.c.site == site, persons.c.id == ent_id)),
            ("pronote_ids", pronote_ids, (pronote_ids.c.site == site, pronote_ids.c.ent_id == ent_id)),
            ("decisions", person_decisions, (person_decisions.c.site == site, person_decisions.c.ent_id == ent_id)),
            ("memberships", memberships, (memberships.c.site == site, memberships.c.person_id == ent_id))):
        counts[name] = int((await conn.execute(table.delete().where(*where))).rowcount or 0)
    for est, key in touched:
        await conn.execute(groups.update().where(groups.c.site == site, groups.c.establishment == est,
                                                 groups.c.key == key).values(members_fp=None))
    return counts


async def awaiting_previews(conn: AsyncConnection, site: str) -> list[Any]:
    return list((await conn.execute(sa.select(previews).where(previews.c.site == site,
                                                              previews.c.status == "awaiting"))).all())


async def rewrite_preview(conn: AsyncConnection, import_id: str, preview: dict[str, Any],
                          selection: dict[str, Any]) -> None:
    await conn.execute(previews.update().where(previews.c.import_id == import_id)
                       .values(preview=preview, selection=selection, updated_at=utcnow()))
