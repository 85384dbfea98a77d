"""Every service's tables, for migrations only (services never import each other)."""

from __future__ import annotations

import sqlalchemy as sa


def all_metadata() -> list[sa.MetaData]:
    from services.dropzone import store as dropzone
    from services.notifier import store as notifier
    from services.reconciler import store as reconciler
    from services.scheduler import store as scheduler
    from services.thresholds import store as thresholds
    from services.validator import store as validator

    return [m.metadata for m in (dropzone, validator, thresholds, reconciler, scheduler, notifier)]
