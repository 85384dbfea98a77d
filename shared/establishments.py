"""One service's list of the sites' establishments, so that its routes under
``/sites/{site}/establishments/{est}/`` answer 404 for an establishment that is not the site's (another
site's, or none), as the dropzone's upload route does — never a 200 with empty lists, never a write stored
under it.

The dropzone owns the establishments; every service listed in `shared.messages.ESTABLISHMENT_ACKERS`
keeps its own table (`shared.db.known_establishments_table`), filled from the dropzone's
EstablishmentUpdated events (durable queue ``edt.<service>.establishments``) and acknowledged once
recorded: the dropzone answers the establishment's PUT after every acknowledgement, so the very next
request under it is answered by every service (read-your-writes, like token revocations).
"""

from __future__ import annotations

import sqlalchemy as sa

from shared.db import upsert
from shared.messages import EstablishmentAck, EstablishmentUpdated
from shared.outbox import AcknowledgedCopy, OutboxUnitOfWork


class KnownEstablishments(AcknowledgedCopy):
    topic = "establishments"
    binding = "establishment.updated.*"

    async def record(self, uow: OutboxUnitOfWork, body: bytes) -> None:
        event = EstablishmentUpdated.from_bytes(body)
        await uow.conn.execute(upsert(self.db, self.table, {
            "site": event.site, "id": event.establishment, "updated_at": event.at}, ["site", "id"]))
        await uow.emit(EstablishmentAck(site=event.site, establishment=event.establishment, by=self.service))

    async def exists(self, site: str, establishment: str) -> bool:
        async with self.db.read() as conn:
            found = await conn.execute(sa.select(self.table.c.id).where(self.table.c.site == site,
                                                                         self.table.c.id == establishment))
            return found.first() is not None
