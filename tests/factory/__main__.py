"""Command line for the synthetic export factory.

    python -m tests.factory school --size S|M|L|XL --seed N [--encrypt --public-key F --partner NAME] [--zip]
                                   [--changes K] [--uai UAI] [--year Y] -o OUT
    python -m tests.factory keypair -o DIR          # test RSA-2048 pair: DIR/private.pem, DIR/public.pem
    python -m tests.factory bad-files -o DIR        # the bad-file corpus and DIR/expected.json

`--changes K` writes the follow-up export of the same school (same seed) with K % of its courses changed,
and OUT.changes.json listing exactly which course keys changed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tests.factory import SIZES, make_keypair, make_school, write_school


def _school(args: argparse.Namespace) -> int:
    if args.encrypt and (not args.public_key or not args.partner):
        print("--encrypt needs --public-key and --partner", file=sys.stderr)
        return 2
    school = make_school(args.size, args.seed, uai=args.uai, changes=args.changes, year=args.year,
                         newer=args.newer or None)
    public = Path(args.public_key).read_bytes() if args.encrypt else None
    out = Path(args.output)
    write_school(school, out, public_key_pem=public, partner=args.partner or "", zipped=args.zip)
    summary = {
        "file": str(out),
        "size": args.size,
        "seed": args.seed,
        "uai": school.timetable.uai,
        "establishments": [e.uai for e in school.timetable.establishments.values()],
        "students": len(school.timetable.students),
        "slots": len(school.timetable.slots),
        "encrypted": bool(args.encrypt),
        "zipped": bool(args.zip),
    }
    if args.changes:
        sidecar = out.with_name(out.name + ".changes.json")
        sidecar.write_text(json.dumps({"percent": args.changes, "changed_courses": school.changed_courses}, indent=1))
        summary["changed_courses"] = len(school.changed_courses)
        summary["changes_file"] = str(sidecar)
    print(json.dumps(summary))
    return 0


def _keypair(args: argparse.Namespace) -> int:
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    private, public = make_keypair()
    (out / "private.pem").write_bytes(private)
    (out / "private.pem").chmod(0o600)
    (out / "public.pem").write_bytes(public)
    print(json.dumps({"private": str(out / "private.pem"), "public": str(out / "public.pem")}))
    return 0


def _bad_files(args: argparse.Namespace) -> int:
    from tests.factory.bad_files import build_corpus

    out = Path(args.output)
    cases = build_corpus(out)
    expected = {
        c.name: {
            "code": c.code,
            "accepted": sorted(c.codes),
            "description": c.description,
            "parse_overrides": sorted(c.kwargs),
        }
        for c in cases
    }
    (out / "expected.json").write_text(json.dumps(expected, indent=1, ensure_ascii=False))
    print(json.dumps({"directory": str(out), "cases": len(cases)}))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.factory", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    school = sub.add_parser("school", help="write a synthetic school export")
    school.add_argument("--size", choices=list(SIZES), required=True)
    school.add_argument("--seed", type=int, default=1)
    school.add_argument("--encrypt", action="store_true")
    school.add_argument("--public-key")
    school.add_argument("--partner")
    school.add_argument("--zip", action="store_true")
    school.add_argument("--changes", type=float, default=0, help="percent of courses changed (follow-up export)")
    school.add_argument("--year", type=int, default=None,
                        help="school year's first calendar year (default: the current school year)")
    school.add_argument("--newer", action="store_true",
                        help="add the constructs newer exports carry (implied for the XL cité scolaire)")
    school.add_argument("--uai")
    school.add_argument("-o", "--output", required=True)
    school.set_defaults(fn=_school)
    keypair = sub.add_parser("keypair", help="write a test RSA-2048 key pair")
    keypair.add_argument("-o", "--output", required=True)
    keypair.set_defaults(fn=_keypair)
    bad = sub.add_parser("bad-files", help="write the bad-file corpus")
    bad.add_argument("-o", "--output", required=True)
    bad.set_defaults(fn=_bad_files)
    args = parser.parse_args(argv)
    return int(args.fn(args))


if __name__ == "__main__":
    sys.exit(main())
