"""Every service's domain.py (and the pure modules of shared/ it builds on) is importable without loading
any infrastructure — checked at run time, in a fresh interpreter each, beside the import-linter
contracts of `make lint` (which read the source)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

INFRASTRUCTURE = ("sqlalchemy", "alembic", "asyncpg", "aiosqlite", "fastapi", "starlette", "uvicorn", "aio_pika",
                  "aiormq", "wsgidav", "a2wsgi", "httpx", "prometheus_client", "argon2", "pydantic_settings",
                  "shared.bus", "shared.db", "shared.outbox", "shared.worker", "shared.web", "shared.blobs",
                  "shared.observability", "shared.settings")
PURE = ("services.dropzone.domain", "services.validator.domain", "services.thresholds.domain",
        "services.reconciler.domain", "services.reconciler.groups", "services.reconciler.wizard",
        "services.scheduler.domain", "services.notifier.domain", "shared.stage", "shared.messages",
        "shared.reconcile", "shared.timetable")


def loaded_after_import(module: str) -> list[str]:
    code = (f"import json, sys, {module}; "
            f"print(json.dumps([m for m in {list(INFRASTRUCTURE)!r} if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=60)
    return list(json.loads(out.stdout))


@pytest.mark.parametrize("module", PURE)
def test_importing_a_domain_loads_no_infrastructure(module: str) -> None:
    assert loaded_after_import(module) == []


def test_the_check_sees_infrastructure_when_it_is_loaded() -> None:
    # The same probe on a handlers module, which is infrastructure by design: it must report it.
    assert {"sqlalchemy", "shared.db"} <= set(loaded_after_import("services.thresholds.handlers"))
