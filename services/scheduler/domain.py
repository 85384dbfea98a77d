"""Session generation rules, pure. Until this stage's issue lands, the step is recorded as `skipped`
(never `ok`); being the last stage, it ends the import: `done` ("intégré", seed 001), or `previewed`
for a dry run."""

from __future__ import annotations

from shared.bus import StageResult
from shared.messages import ImportStatus, StepStatus


def decide(dry_run: bool) -> StageResult:
    return StageResult(StepStatus.SKIPPED, outcome=ImportStatus.PREVIEWED if dry_run else ImportStatus.DONE)
