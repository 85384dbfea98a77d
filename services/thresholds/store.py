"""Tables owned by the thresholds service."""

from __future__ import annotations

from shared.db import outbox_table, service_metadata, stage_runs_table

metadata = service_metadata("thresholds")
outbox = outbox_table(metadata)
runs = stage_runs_table(metadata)
