"""Tables owned by the reconciler service, and the routes' queries."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.db import outbox_table, service_metadata, stage_runs_table

metadata = service_metadata("reconciler")
outbox = outbox_table(metadata)
runs = stage_runs_table(metadata)

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

# The matching result of each import, per establishment: counts and the unmatched rows (for the CSV).
results = sa.Table(
    "reconciliation_results",
    metadata,
    sa.Column("import_id", sa.String(32), primary_key=True),
    sa.Column("establishment", sa.String(64), primary_key=True),
    sa.Column("site", sa.String(64), nullable=False, index=True),
    sa.Column("snapshot_sha256", sa.String(64), nullable=True),  # None: no directory for the establishment
    sa.Column("counts", sa.JSON, nullable=False),
    sa.Column("unmatched", sa.JSON, nullable=False),  # {kind: [row, …]}
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

# --- group creation (issue 6) -----------------------------------------------------------------------

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
)


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
