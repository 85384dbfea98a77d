"""Zip archives: one XML member, safe names, no password, size and ratio caps."""

from __future__ import annotations

import re
import zipfile
import zlib
from collections.abc import Callable
from pathlib import PurePosixPath
from typing import IO

from services.validator.format.context import Ctx
from services.validator.format.stream import Guard
from shared.timetable import Timetable

ParseStream = Callable[[Guard, Ctx, str, "bytes | None"], "Timetable | None"]

# --------------------------------------------------------------------------------------------- zip

_UNSAFE_NAME = re.compile(r"(^/|^\\|^[A-Za-z]:|\x00)")


def _unsafe_member(name: str) -> bool:
    if _UNSAFE_NAME.search(name):
        return True
    return ".." in PurePosixPath(name.replace("\\", "/")).parts


def parse_zip(fh: IO[bytes], ctx: Ctx, partner_name: str, private_key: bytes | None,
              parse_stream: ParseStream) -> Timetable | None:
    """The one XML member of the archive, streamed by `parse_stream` (clear or encrypted, like a plain file)."""
    limits = ctx.limits
    try:
        zf = zipfile.ZipFile(fh)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError) as exc:
        raise ctx.fail("zip_corrupt", reason=str(exc)) from None
    with zf:
        infos = zf.infolist()
        if len(infos) > limits.max_zip_members:
            raise ctx.fail("zip_too_many_members", count=len(infos), limit=limits.max_zip_members)
        files = [i for i in infos if not i.is_dir()]
        if not files:
            raise ctx.fail("zip_empty")
        for info in files:
            if _unsafe_member(info.filename):
                raise ctx.fail("zip_unsafe_member", member=info.filename)
            if info.flag_bits & 0x1:
                raise ctx.fail("zip_encrypted_member", member=info.filename)
            if info.file_size > limits.max_zip_member_bytes:
                raise ctx.fail("zip_member_too_large", member=info.filename, limit=limits.max_zip_member_bytes)
            ratio = info.file_size / max(info.compress_size, 1)
            if ratio > limits.max_zip_ratio and info.file_size > 1024 * 1024:
                raise ctx.fail(
                    "zip_ratio_exceeded", member=info.filename, ratio=int(ratio), limit=int(limits.max_zip_ratio)
                )
        xml_members = []
        for info in files:
            try:
                with zf.open(info) as member:
                    head = member.read(1024)
            except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError) as exc:
                raise ctx.fail("zip_corrupt", reason=str(exc)) from None
            if head.lstrip(b"\xef\xbb\xbf").lstrip().startswith(b"<"):
                xml_members.append(info)
        if not xml_members:
            raise ctx.fail("zip_no_xml", members=[i.filename for i in files])
        if len(xml_members) > 1:
            raise ctx.fail("zip_several_xml", members=[i.filename for i in xml_members])
        chosen = xml_members[0]
        ctx.meta.zip_member = chosen.filename
        ctx.meta.zip_ignored = [i.filename for i in files if i is not chosen]
        if ctx.meta.zip_ignored:
            ctx.report("zip_members_ignored", members=ctx.meta.zip_ignored)
        with zf.open(chosen) as member:
            guard = Guard(
                member,
                min(limits.max_zip_member_bytes, limits.max_xml_bytes),
                "zip_member_too_large",
                compressed_size=chosen.compress_size,
                max_ratio=limits.max_zip_ratio,
                member=chosen.filename,
            )
            return parse_stream(guard, ctx, partner_name, private_key)
