"""The lease rules of the notifier (docs/reliability.md): when an import in flight has no owner left."""

from __future__ import annotations

from services.notifier import domain
from shared.messages import ImportStatus, Stage


def test_an_import_within_its_lease_is_owned_whatever_its_queue() -> None:
    assert not domain.lease_expired(59, 60, queue_busy=False)
    assert not domain.lease_expired(59, 60, queue_busy=None)


def test_past_its_lease_with_an_empty_queue_nobody_owns_it() -> None:
    assert domain.lease_expired(61, 60, queue_busy=False)


def test_a_busy_or_unreadable_queue_gets_five_leases() -> None:
    for busy in (True, None):
        assert not domain.lease_expired(299, 60, queue_busy=busy)
        assert domain.lease_expired(301, 60, queue_busy=busy)


def test_the_stage_in_hand_is_the_queued_one_else_the_running_one() -> None:
    assert domain.stage_in_hand(ImportStatus.RECEIVED, "validation") is Stage.VALIDATION
    assert domain.stage_in_hand(ImportStatus.VALIDATING, "thresholds") is Stage.THRESHOLDS
    assert domain.stage_in_hand(ImportStatus.CREATING_GROUPS, None) is Stage.GROUPS
    assert domain.stage_in_hand(ImportStatus.RECEIVED, None) is Stage.VALIDATION


def test_the_reason_names_the_stage_in_french_and_english() -> None:
    fr, en = domain.lease_expired_message(Stage.GROUPS, 61.4)
    assert "Création des groupes" in fr and "61 s" in fr
    assert "groups stage" in en and "61 s" in en
