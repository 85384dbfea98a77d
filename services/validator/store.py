"""Tables owned by the validator service."""

from __future__ import annotations

from shared.db import outbox_table, service_metadata, stage_runs_table

metadata = service_metadata("validator")
outbox = outbox_table(metadata)
runs = stage_runs_table(metadata)
