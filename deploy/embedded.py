"""Embedded mode: every service in one process, SQLite and the in-process bus (`make run`)."""

from __future__ import annotations

from fastapi import FastAPI

from services.dropzone.main import build as build_dropzone
from services.notifier.main import build as build_notifier
from services.reconciler.main import build as build_reconciler
from services.scheduler.main import build as build_scheduler
from services.thresholds.main import build as build_thresholds
from services.validator.main import build as build_validator
from shared.settings import Settings
from shared.web import Runtime, build_runtime, create_app

BUILDERS = (build_dropzone, build_validator, build_thresholds, build_reconciler, build_scheduler, build_notifier)


def create_embedded_app(settings: Settings | None = None, runtime: Runtime | None = None) -> FastAPI:
    runtime = runtime or build_runtime(settings or Settings())
    return create_app(runtime, [build(runtime) for build in BUILDERS])
