"""`python -m deploy.migrate [URL]`: bring the database to the latest schema (SQLite or PostgreSQL)."""

from __future__ import annotations

import sys
from pathlib import Path

from alembic import command
from alembic.config import Config

from shared.settings import Settings

HERE = Path(__file__).parent


def alembic_config(url: str) -> Config:
    cfg = Config(str(HERE / "alembic.ini"))
    cfg.set_main_option("script_location", str(HERE / "migrations"))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str) -> None:
    command.upgrade(alembic_config(url), "heads")  # service branches may each add a head


if __name__ == "__main__":
    upgrade(sys.argv[1] if len(sys.argv) > 1 else Settings().database_url)
