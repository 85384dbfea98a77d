"""Stage rules, pure. Until this stage's issue lands, the step is recorded as `skipped` (never `ok`)
and the import goes on: no fake counts."""

from __future__ import annotations

from shared.bus import StageResult
from shared.messages import StepStatus


def decide(dry_run: bool) -> StageResult:
    return StageResult(StepStatus.SKIPPED)
