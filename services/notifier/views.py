"""An import as the history API shows it (ImportRead), and the views already rendered, kept per revision.

A front-end reads the same imports far more often than they change (every waiting import's page refreshed
every few seconds while a herd deposits), and building, validating and encoding a view — an M school's
counts and alerts are 14 KB of JSON — was most of a read's CPU. A read now asks the database for the
imports' stamps only (store.STAMP_COLUMNS: no JSON), renders those whose revision it has not seen, and
answers the bytes kept. The revision is in the database, so every notifier process sees every write.
The queue position and the ETA change without a write: they are spliced into the kept bytes per read.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from services.notifier import domain
from services.notifier.schemas import FileRead, ImportRead, StepRead
from shared.messages import PIPELINE, ImportStatus, Stage, StepStatus, iso

STAGE_ORDER = [Stage.DEPOSIT, *PIPELINE]


def import_view(row: Any, step_rows: list[Any], position: int | None, eta: int | None) -> ImportRead:
    """`row`: the import as `store.VIEW_COLUMNS` reads it (its establishment's name; the id when the name is
    not known)."""
    status = ImportStatus(row.status)
    short, long = domain.label_for(status)
    by_stage = {s.stage: s for s in step_rows}
    step_list = []
    for stage in STAGE_ORDER:
        s = by_stage.get(stage.value)
        step_list.append(StepRead(stage=stage, label=domain.STEP_LABELS[stage],
                                  status=s.status if s else StepStatus.PENDING,
                                  started_at=iso(s.started_at) if s else None, ended_at=iso(s.ended_at) if s else None,
                                  message=s.message if s else None, message_en=s.message_en if s else None))
    ended = sum(1 for s in step_list if s.status not in (StepStatus.PENDING, StepStatus.RUNNING))
    return ImportRead.model_validate({
        "id": row.id,
        "site": row.site,
        "establishment": row.establishment,
        "establishment_label": (row.establishment_name or row.establishment) if row.establishment else "Tous",
        "establishments": row.establishments,
        "mode": row.mode,
        "auto": row.mode == "auto",
        "dry_run": row.dry_run,
        "status": status,
        "label": short,
        "label_detail": long,
        "created_at": iso(row.created_at),
        "started_at": iso(row.started_at),
        "ended_at": iso(row.ended_at),
        "queue_position": position,
        "eta_s": eta,
        "progress": 100 if domain.is_terminal(status) else round(100 * ended / len(step_list)),
        "file": FileRead(name=row.file_name, sha256=row.sha256, size=row.size),
        "source": row.source,
        "account": row.account,
        "message": row.message,
        "message_en": row.message_en,
        "no_change": row.no_change,
        "superseded_by": row.superseded_by,
        "steps": step_list,
        "counts": row.counts or {},
        "alerts": row.alerts or [],
        "links": {"self": f"/api/v1/imports/{row.id}", "report": f"/api/v1/imports/{row.id}/report",
                  "source": f"/api/v1/imports/{row.id}/source"},
        "undo_of": row.undo_of,
        "abort_requested_at": row.abort_requested_at,
    })


# The two fields a read fills in, as a view rendered without them encodes them. Every field before them is
# a plain value or a string, in which a quote is escaped: the first occurrence is the fields themselves.
UNPLACED = b'"queue_position":null,"eta_s":null'


def _number(value: int | None) -> bytes:
    return b"null" if value is None else str(value).encode()


@dataclass(frozen=True, slots=True)
class RenderedView:
    revision: int
    establishment_name: str | None  # a view shows its establishment's name, which is not in the row
    head: bytes
    tail: bytes

    def body(self, position: int | None, eta: int | None) -> bytes:
        """The view's JSON with its queue position and ETA (ImportRead's encoding, byte for byte)."""
        return b"".join((self.head, b'"queue_position":', _number(position), b',"eta_s":', _number(eta),
                         self.tail))

    @property
    def size(self) -> int:
        return len(self.head) + len(self.tail)


def render(row: Any, step_rows: list[Any]) -> RenderedView:
    encoded = import_view(row, step_rows, None, None).model_dump_json(by_alias=True).encode()
    head, found, tail = encoded.partition(UNPLACED)
    assert found, "ImportRead no longer encodes its queue position beside its ETA"
    return RenderedView(int(row.revision), row.establishment_name, head, tail)


class ViewCache:
    """The rendered views of the imports read lately, least recently read dropped first past `max_bytes`."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self._views: OrderedDict[str, RenderedView] = OrderedDict()

    def current(self, stamp: Any) -> RenderedView | None:
        """The kept view of the import `stamp` (store.STAMP_COLUMNS) describes, if it is that revision's."""
        view = self._views.get(stamp.id)
        if view is None or view.revision != stamp.revision or view.establishment_name != stamp.establishment_name:
            return None
        self._views.move_to_end(stamp.id)
        return view

    def keep(self, import_id: str, view: RenderedView) -> None:
        old = self._views.pop(import_id, None)
        if old is not None:
            self.size -= old.size
        if old is not None and old.revision > view.revision:
            view = old  # a slower read rendered an older revision: the newer stays
        self._views[import_id] = view
        self.size += view.size
        while self.size > self.max_bytes and len(self._views) > 1:
            _, dropped = self._views.popitem(last=False)
            self.size -= dropped.size
