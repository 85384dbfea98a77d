"""iCal feeds (RFC 5545), written directly: pure, no I/O.

A class of an L school has a thousand sessions a year; a general-purpose iCalendar library builds an
object per property and took most of a feed's time. The few properties a feed carries are written
here with the RFC's escaping (TEXT: backslash, semicolon, comma, newline), line folding (75 octets,
never inside a UTF-8 sequence) and CRLF line ends.

The body is a pure function of the stored state: DTSTAMP is the time of the establishment's last
import (not the time of the request), so that the same state always gives the same bytes and the routes
can answer `If-None-Match` with a 304.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from services.scheduler.views import EstablishmentView

PRODID = "-//edt-import//sessions//FR"


def escape_text(value: str) -> str:
    return (value.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,")
            .replace("\r\n", "\\n").replace("\n", "\\n").replace("\r", "\\n"))


def fold(line: str) -> bytes:
    """One content line, folded at 75 octets (RFC 5545 §3.1), CRLF-terminated."""
    data = line.encode()
    if len(data) <= 75:
        return data + b"\r\n"
    out, start, limit = [], 0, 75
    while start < len(data):
        end = min(start + limit, len(data))
        while end < len(data) and end > start and (data[end] & 0xC0) == 0x80:  # not inside a UTF-8 sequence
            end -= 1
        out.append(data[start:end])
        start, limit = end, 74  # a continuation line starts with one space
    return b"\r\n ".join(out) + b"\r\n"


def utc_stamp(value: datetime) -> str:
    moment = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return moment.strftime("%Y%m%dT%H%M%SZ")


def ical_feed(*, name: str, sessions: Iterable[Any], view: EstablishmentView, host: str = "edt-import") -> bytes:
    """A calendar of `sessions` (rows with id, course, start, end, rooms, teachers): one VEVENT each, UID
    from the session's stable id, times in UTC, SUMMARY the course label, LOCATION the rooms,
    DESCRIPTION the teachers."""
    stamp = utc_stamp(view.updated_at)
    rooms, teachers = view.names.get("rooms", {}), view.names.get("teachers", {})
    labels: dict[str, str] = {}
    parts = [b"BEGIN:VCALENDAR\r\n", fold(f"PRODID:{PRODID}"), b"VERSION:2.0\r\n", b"CALSCALE:GREGORIAN\r\n",
             b"METHOD:PUBLISH\r\n", fold(f"X-WR-CALNAME:{escape_text(name)}")]
    for row in sessions:
        label = labels.get(row.course)
        if label is None:
            label = labels[row.course] = escape_text(view.course_label(row.course))
        parts += [b"BEGIN:VEVENT\r\n", fold(f"UID:{row.id}@{host}"), f"DTSTAMP:{stamp}\r\n".encode(),
                  f"DTSTART:{utc_stamp(row.start)}\r\n".encode(), f"DTEND:{utc_stamp(row.end)}\r\n".encode(),
                  fold(f"SUMMARY:{label}")]
        if row.rooms:
            parts.append(fold("LOCATION:" + escape_text(", ".join(rooms.get(r, r) for r in row.rooms))))
        if row.teachers:
            parts.append(fold("DESCRIPTION:" + escape_text(", ".join(teachers.get(t, t) for t in row.teachers))))
        parts.append(b"END:VEVENT\r\n")
    parts.append(b"END:VCALENDAR\r\n")
    return b"".join(parts)
