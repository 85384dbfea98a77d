"""Tables owned by the scheduler service."""

from __future__ import annotations

from shared.db import outbox_table, service_metadata, stage_runs_table

metadata = service_metadata("scheduler")
outbox = outbox_table(metadata)
runs = stage_runs_table(metadata)
