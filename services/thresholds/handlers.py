"""thresholds handlers: stage command in → domain → one transaction (StageWorker) → events out."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from services.thresholds import domain
from shared.bus import StageResult
from shared.messages import StageCommand
from shared.web import Runtime


def build_handlers(rt: Runtime) -> dict[str, Any]:
    async def apply(conn: AsyncConnection, cmd: StageCommand, prepared: Any) -> StageResult:
        return domain.decide(cmd.dry_run)

    return {"apply": apply}
