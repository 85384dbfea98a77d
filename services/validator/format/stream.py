"""Streaming the XML safely: byte and ratio caps, the first bytes checked before any parser sees them,
lxml's syntax errors turned into our own problems."""

from __future__ import annotations

import re
import zipfile
import zlib
from typing import IO, Any

from lxml import etree

from services.validator.format.context import Ctx, Reject
from shared.timetable import safe_iterparse

# --------------------------------------------------------------------------------------- streaming

HEAD = 64 * 1024
_DOCTYPE_RE = re.compile(rb"<!DOCTYPE", re.IGNORECASE)
_ENTITY_RE = re.compile(rb"<!ENTITY\s+%?\s*([\w.-]+)")


class Guard:
    """File-like wrapper for lxml: counts bytes and lines, enforces a size cap and (zip) a ratio cap.

    On a breach it records why and returns EOF, so lxml stops with a syntax error that we then
    replace by the breach's own problem."""

    def __init__(
        self,
        raw: IO[bytes],
        cap: int,
        cap_code: str,
        *,
        compressed_size: int | None = None,
        max_ratio: float | None = None,
        member: str | None = None,
    ) -> None:
        self.raw, self.cap, self.cap_code = raw, cap, cap_code
        self.compressed_size, self.max_ratio, self.member = compressed_size, max_ratio, member
        self.total = 0
        self.lines = 1
        self.eof = False
        self.breach: tuple[str, dict[str, Any]] | None = None
        self.prefix = b""

    def peek_head(self) -> bytes:
        self.prefix = self._read(HEAD)
        return self.prefix

    def _read(self, size: int) -> bytes:
        if self.breach is not None:
            return b""
        try:
            data = self.raw.read(size)
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
            self.breach = ("zip_corrupt" if self.member is not None else "file_unreadable", {"reason": str(exc)})
            return b""
        if not data:
            self.eof = True
            return b""
        self.total += len(data)
        self.lines += data.count(b"\n")
        if self.total > self.cap:
            self.breach = (self.cap_code, {"limit": self.cap, "member": self.member})
            return b""
        if self.max_ratio is not None and self.compressed_size is not None:
            ratio = self.total / max(self.compressed_size, 1)
            if ratio > self.max_ratio and self.total > 1024 * 1024:
                self.breach = (
                    "zip_ratio_exceeded",
                    {"member": self.member, "ratio": int(ratio), "limit": int(self.max_ratio)},
                )
                return b""
        return data

    def read(self, size: int = -1) -> bytes:
        if self.prefix:
            out, self.prefix = self.prefix, b""
            return out
        return self._read(size if size and size > 0 else 1024 * 1024)


def check_head(head: bytes, ctx: Ctx) -> None:
    """Cheap checks on the first bytes, before any XML parser sees them."""
    stripped = head.lstrip(b"\xef\xbb\xbf").lstrip()
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return  # UTF-16: lxml decodes it; the DOCTYPE check at the root start still applies
    if not stripped.startswith(b"<"):
        raise ctx.fail("not_xml")
    entities = _ENTITY_RE.findall(head)
    if entities:
        raise ctx.fail("xml_entities_forbidden", entities=sorted({e.decode("ascii", "replace") for e in entities}))
    m = _DOCTYPE_RE.search(head)
    if m:
        end = head.find(b">", m.start())
        raise ctx.fail(
            "xml_dtd_forbidden",
            doctype=head[m.start() : end + 1 if end > 0 else m.start() + 80].decode("utf-8", "replace"),
        )


def iterparse(source: IO[bytes] | Guard) -> Any:
    return safe_iterparse(source)


def local(tag: object) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def namespace(tag: str) -> str:
    return tag[1:].split("}", 1)[0] if tag.startswith("{") else ""


def syntax_problem(exc: etree.XMLSyntaxError, guard: Guard, ctx: Ctx) -> Reject:
    if guard.breach is not None:
        code, detail = guard.breach
        return ctx.fail(code, **detail)
    msg = str(exc.msg if getattr(exc, "msg", None) else exc)
    line = exc.position[0] if getattr(exc, "position", None) else None
    if "Excessive depth" in msg:
        return ctx.fail("xml_too_deep", depth=">256", line=line, limit=ctx.limits.max_depth)
    if "amplification" in msg or "entity" in msg.lower() and "loop" in msg.lower():
        return ctx.fail("xml_entities_forbidden", entities=["?"], reason=msg)
    if guard.eof and ("Premature end" in msg or "end of data" in msg or (line is not None and line >= guard.lines)):
        return ctx.fail("xml_truncated", line=line, reason=msg)
    if guard.total == 0 or "Document is empty" in msg:
        return ctx.fail("not_xml")
    return ctx.fail("xml_malformed", line=line, reason=msg.split(", line")[0])
