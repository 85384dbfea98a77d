"""The rules of abort and undo (services/notifier/domain.py), one test per rule."""

from __future__ import annotations

from services.notifier.domain import Integrated, abort_refusal, undo_refusal
from shared.messages import ImportStatus


def imp(id_: str, est: str | None = "1754", status: ImportStatus = ImportStatus.DONE, *, site: str = "4817",
        dry_run: bool = False, no_change: bool = False) -> Integrated:
    return Integrated(id_, site, est, status, dry_run, no_change)


def test_only_an_import_that_has_not_ended_can_be_aborted() -> None:
    for status in (ImportStatus.WAITING, ImportStatus.VALIDATING, ImportStatus.GENERATING_SESSIONS,
                   ImportStatus.AWAITING_SELECTION):
        assert abort_refusal(status) is None
    for status in (ImportStatus.DONE, ImportStatus.REJECTED, ImportStatus.CANCELLED, ImportStatus.PREVIEWED):
        fr, en = abort_refusal(status) or ("", "")
        assert status.value in fr and status.value in en


def test_only_the_last_integrated_import_of_an_establishment_can_be_undone() -> None:
    target = imp("a2")
    assert undo_refusal(target, [], []) is None
    assert undo_refusal(target, [imp("other-establishment", "9999")], []) is None  # another establishment
    assert undo_refusal(target, [imp("other-site", site="1")], []) is None
    refused = undo_refusal(target, [imp("a3")], [])
    assert refused and "a3" in refused[0]
    refused = undo_refusal(target, [imp("site-wide", None)], [])  # a site-wide import covers it too
    assert refused and "site-wide" in refused[1]


def test_an_import_that_integrated_nothing_cannot_be_undone() -> None:
    for target in (imp("r", status=ImportStatus.REJECTED), imp("d", dry_run=True), imp("n", no_change=True),
                   imp("b", status=ImportStatus.BLOCKED)):
        assert undo_refusal(target, [], []) is not None, target


def test_no_undo_while_an_import_of_the_establishment_waits_or_runs() -> None:
    target = imp("a2")
    busy = imp("w", status=ImportStatus.WAITING)
    refused = undo_refusal(target, [], [busy])
    assert refused and "w" in refused[0]
    assert undo_refusal(target, [], [imp("x", "9999", ImportStatus.VALIDATING)]) is None
