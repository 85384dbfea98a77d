"""The notifier's personal-data rules (docs/privacy.md): when a deposited file is gone, and whether a person
request found anything."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.notifier.domain import erased_anything, holds_anything, source_expired

NOW = datetime(2026, 12, 2, tzinfo=UTC)


def test_a_deposited_file_is_kept_its_days_after_the_end_of_its_import() -> None:
    assert not source_expired(None, NOW, 30)  # still running: kept
    assert not source_expired(NOW - timedelta(days=29), NOW, 30)
    assert source_expired(NOW - timedelta(days=31), NOW, 30)
    assert source_expired(NOW - timedelta(seconds=1), NOW, 0)


def test_a_person_is_found_when_some_service_lists_something() -> None:
    assert not holds_anything({"reconciler": {"directory": [], "memberships": []}, "scheduler": {"people": []}})
    assert holds_anything({"reconciler": {"directory": [{"id": "e1"}]}, "scheduler": {}})
    assert holds_anything({"validator": {"models": [{"import_id": "x"}]}})


def test_an_erasure_found_something_when_a_row_went_or_copies_remain() -> None:
    nothing = {"reconciler": {"erased": {"directory": 0, "memberships": 0}, "snapshots_replaced": 0},
               "scheduler": {"timetable_people": []}, "validator": {"models": []}}
    assert not erased_anything(nothing)
    assert erased_anything({**nothing, "scheduler": {"timetable_people": [{"erased": {"course_members": 2}}]}})
    assert erased_anything({**nothing, "validator": {"models": [{"import_id": "x"}]}})
