"""validator handlers: stage command in → domain → one transaction (StageWorker) → events out."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from shared.bus import StageResult
from shared.messages import StageCommand, StepStatus
from shared.web import Runtime


def build_handlers(rt: Runtime) -> dict[str, Any]:
    async def apply(conn: AsyncConnection, cmd: StageCommand, prepared: Any) -> StageResult:
        # File validation rules land with their own issue: recorded as skipped, never ok.
        return StageResult(StepStatus.SKIPPED)

    return {"apply": apply}
