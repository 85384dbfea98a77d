"""The entry point: one deposited file (clear XML, encrypted container, either in a zip) to a ParseResult."""

from __future__ import annotations

import io
from collections.abc import Collection
from pathlib import Path
from typing import BinaryIO

from lxml import etree

from services.validator.format.archive import parse_zip
from services.validator.format.checks import check_uais
from services.validator.format.clear import ClearParser
from services.validator.format.container import read_container
from services.validator.format.context import AcceptedSoftware, Ctx, Limits, ParseResult, Reject
from services.validator.format.stream import Guard, check_head, iterparse, local, syntax_problem
from shared.timetable import CLEAR_ROOT, CONTAINER_ROOT, ZIP_MAGIC, Timetable

# -------------------------------------------------------------------------------------------- entry


def parse_export(
    source: Path | BinaryIO,
    *,
    partner_name: str,
    private_key: bytes | None,
    limits: Limits | None = None,
    accepted: AcceptedSoftware | None = None,
    expected_uais: Collection[str] | None = None,
    require_encryption: bool = False,
) -> ParseResult:
    """Parse and check one deposited export (clear XML, encrypted container, or either in a zip).

    `source`: a path, or a seekable binary stream (the blob store's plaintext of a sealed blob), closed here.
    `private_key`: the ENT's RSA private key, PEM or DER (None: encrypted files are rejected, "clé absente").
    `expected_uais`: UAIs the target accepts (one establishment, or every establishment of the site for a
    site-wide deposit); None skips the check. Every UAI of a multi-establishment file must be among them.
    """
    ctx = Ctx(limits or Limits(), accepted or AcceptedSoftware())
    timetable: Timetable | None = None
    try:
        timetable = parse_file(source, ctx, partner_name, private_key)
        if timetable is not None:
            if require_encryption and not ctx.meta.encrypted:
                ctx.report("encryption_required")
            if expected_uais is not None:
                check_uais(timetable, {u.strip().upper() for u in expected_uais}, ctx)
    except Reject:
        timetable = None
    if ctx.errors:
        timetable = None
    return ParseResult(timetable, ctx.errors, ctx.warnings, ctx.meta)


def _open(source: Path | BinaryIO, ctx: Ctx) -> tuple[BinaryIO, int]:
    try:
        if isinstance(source, str | Path):
            size = Path(source).stat().st_size
            return open(source, "rb"), size  # noqa: SIM115 - closed by the caller, after the stream is parsed
        size = source.seek(0, io.SEEK_END)
        source.seek(0)
        return source, size
    except OSError as exc:
        raise ctx.fail("file_unreadable", reason=exc.strerror or str(exc)) from None


def parse_file(source: Path | BinaryIO, ctx: Ctx, partner_name: str, private_key: bytes | None) -> Timetable | None:
    fh, size = _open(source, ctx)
    with fh:
        if size == 0:
            raise ctx.fail("file_empty")
        if size > ctx.limits.max_input_bytes:
            raise ctx.fail("file_too_large", size=size, limit=ctx.limits.max_input_bytes)
        magic = fh.read(4)
        fh.seek(0)
        if magic in ZIP_MAGIC:
            ctx.meta.zipped = True
            return parse_zip(fh, ctx, partner_name, private_key, parse_stream)
        guard = Guard(fh, ctx.limits.max_xml_bytes, "xml_too_large")
        return parse_stream(guard, ctx, partner_name, private_key)


# -------------------------------------------------------------------------------------- dispatching


def parse_stream(guard: Guard, ctx: Ctx, partner_name: str, private_key: bytes | None) -> Timetable | None:
    check_head(guard.peek_head(), ctx)
    it = iter(iterparse(guard))
    try:
        _, root = next(it)
        if root.getroottree().docinfo.doctype:  # a DOCTYPE past the first 64 KiB
            raise ctx.fail("xml_dtd_forbidden", doctype=root.getroottree().docinfo.doctype)
        name = local(root.tag)
        if name == CONTAINER_ROOT:
            ctx.meta.encrypted = True
            clear = read_container(it, root, ctx, partner_name, private_key)
        elif name == CLEAR_ROOT:
            ctx.meta.xml_bytes = guard.total
            tt = ClearParser(ctx).run(it, root)
            ctx.meta.xml_bytes = guard.total
            return tt
        else:
            raise ctx.fail("unknown_document", root=name)
    except etree.XMLSyntaxError as exc:
        raise syntax_problem(exc, guard, ctx) from None
    except StopIteration:
        raise ctx.fail("not_xml") from None
    # the decrypted export, parsed like a clear file
    inner = Guard(io.BytesIO(clear), ctx.limits.max_xml_bytes, "xml_too_large")
    check_head(inner.peek_head(), ctx)
    it = iter(iterparse(inner))
    try:
        _, root = next(it)
        if root.getroottree().docinfo.doctype:
            raise ctx.fail("xml_dtd_forbidden", doctype=root.getroottree().docinfo.doctype)
        if local(root.tag) != CLEAR_ROOT:
            raise ctx.fail("unknown_document", root=local(root.tag))
        tt = ClearParser(ctx).run(it, root)
        ctx.meta.xml_bytes = inner.total
    except etree.XMLSyntaxError as exc:
        raise syntax_problem(exc, inner, ctx) from None
    except StopIteration:
        raise ctx.fail("not_xml") from None
    if ctx.meta.container_uai and tt is not None and ctx.meta.container_uai.upper() != tt.uai.upper():
        ctx.report("container_uai_differs", container=ctx.meta.container_uai, inner=tt.uai)
    return tt
