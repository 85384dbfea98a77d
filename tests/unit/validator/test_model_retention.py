"""Retention of canonical models (docs/privacy.md): EDT_RETENTION_MODEL_DAYS after the end of their import,
never while a model is an establishment's baseline (threshold control compares the next import with it)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.validator.domain import KeptModels, baselines, expired_models

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def kept(import_id: str, status: str | None, days_ago: float | None, parts: dict[str, str],
         full: str | None = None, site: str = "4817") -> KeptModels:
    ended = NOW - timedelta(days=days_ago) if days_ago is not None else None
    return KeptModels(import_id, site, status, ended, full or next(iter(parts.values())), parts)


def test_the_baseline_is_the_latest_integrated_part_of_each_establishment() -> None:
    models = [kept("a", "done", 40, {"1754": "A"}), kept("b", "done", 35, {"1754": "B"}),
              kept("c", "blocked", 1, {"1754": "C"}),  # not integrated: never a baseline
              kept("d", "done", 50, {"1755": "D1", "1754": "D2"}, full="D"),  # a cité scolaire file
              kept("e", "done", 60, {"1754": "E"}, site="9999")]
    assert baselines(models) == {"B", "D1", "E"}


def test_models_expire_after_their_days_except_a_baseline_and_imports_not_ended() -> None:
    models = [kept("old", "done", 40, {"1754": "OLD"}), kept("base", "done", 31, {"1754": "BASE"}),
              kept("recent", "rejected", 10, {"1754": "RECENT"}), kept("running", None, None, {"1754": "RUN"}),
              kept("multi", "done", 45, {"1755": "M1", "1756": "M2"}, full="M")]
    expired, gone, keep = expired_models(models, NOW, days=30)
    assert expired == ["old"]  # "multi" holds the baselines of 1755 and 1756: kept whole
    assert gone == {"OLD"}
    assert keep == {"BASE", "RECENT", "RUN", "M", "M1", "M2"}


def test_a_model_shared_by_a_kept_import_stays() -> None:
    models = [kept("old", "done", 40, {"1754": "SAME"}), kept("other", "superseded", 40, {"1754": "X"}),
              kept("new", "done", 2, {"1754": "SAME"})]  # the same export deposited again later
    expired, gone, _ = expired_models(models, NOW, days=30)
    assert expired == ["other"] and gone == {"X"}  # "old" holds the baseline, SAME is kept


def test_zero_days_expires_whatever_ended() -> None:
    models = [kept("a", "done", 0.001, {"1754": "A"}), kept("b", "done", 0.0001, {"1754": "B"})]
    expired, gone, keep = expired_models(models, NOW, days=0)
    assert expired == ["a"] and gone == {"A"} and keep == {"B"}
