"""Parse benchmark: the validator's parser beside a raw floor, per school size, in the same run.

    python -m tests.bench.parse [--sizes S,M,L,XL] [--repeat 3] [--encrypted]

For each size the factory writes the export once; then each measurement runs in a fresh subprocess
(so peak memory is that run's alone): `floor` is a bare lxml iterparse of the same file clearing
elements as it goes, `parse` is `parse_export` (checks included), `parse+enc` the same file encrypted.
Time: first run and best of --repeat. Memory: peak RSS of the subprocess (VmHWM), its growth over the
RSS after imports, and the Python-heap peak of one traced run (tracemalloc; libxml2's own memory is not
in it). Target (design): L under 1 s and 150 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PARTNER = "EDT-IMPORT"


def _status_mb(field: str) -> float:
    """VmRSS / VmHWM of this process from /proc (ru_maxrss would include the parent's peak: Linux keeps it
    across fork+exec); falls back to ru_maxrss elsewhere."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _reset_peak() -> None:
    try:  # Linux ≥ 4.0: "5" resets the peak RSS to the current RSS
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def _child(mode: str, path: Path, key: Path | None, repeat: int) -> dict[str, float]:
    import tracemalloc

    from lxml import etree

    from services.validator.domain import parse_export

    private = key.read_bytes() if key else None

    def floor() -> None:
        for _, el in etree.iterparse(
            str(path), events=("end",), resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False
        ):
            el.clear()
            while el.getprevious() is not None:
                del el.getparent()[0]

    def parse() -> None:
        result = parse_export(path, partner_name=PARTNER, private_key=private)
        if not result.ok:
            raise SystemExit(f"parse failed: {[e.code for e in result.errors]}")

    fn = floor if mode == "floor" else parse
    _reset_peak()
    base = _status_mb("VmRSS")
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    peak = _status_mb("VmHWM")
    tracemalloc.start()  # Python-heap peak of one more run (lxml's own C allocations are not traced)
    fn()
    py_peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return {"first_s": times[0], "best_s": min(times), "rss_base_mb": base, "rss_peak_mb": peak, "py_peak_mb": py_peak}


def _measure(mode: str, path: Path, key: Path | None, repeat: int) -> dict[str, float]:
    cmd = [sys.executable, str(Path(__file__)), "--child", mode, str(path), "--repeat", str(repeat)]
    if key:
        cmd += ["--key", str(key)]
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="S,M,L,XL")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--encrypted", action="store_true", help="also parse the encrypted copy")
    parser.add_argument("--child", nargs=2, metavar=("MODE", "PATH"), help=argparse.SUPPRESS)
    parser.add_argument("--key", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mode, path = args.child
        print(json.dumps(_child(mode, Path(path), Path(args.key) if args.key else None, args.repeat)))
        return 0

    sys.path.insert(0, str(ROOT))
    from tests.factory import make_keypair, make_school

    work = Path(tempfile.mkdtemp(prefix="edt-bench-"))
    private, public = make_keypair()
    key = work / "private.pem"
    key.write_bytes(private)
    rows = []
    print(
        f"{'size':4} {'mode':10} {'file MB':>8} {'first s':>8} {'best s':>8} {'peak RSS MB':>11} {'growth MB':>9} "
        f"{'py heap MB':>10} {'× floor':>8}"
    )
    for size in args.sizes.split(","):
        school = make_school(size, 1)
        clear = work / f"{size}.xml"
        clear.write_bytes(school.to_xml_bytes())
        runs: list[tuple[str, Path, Path | None]] = [("floor", clear, None), ("parse", clear, None)]
        if args.encrypted:
            enc = work / f"{size}.enc.xml"
            enc.write_bytes(school.encrypt(public, PARTNER))
            runs.append(("parse+enc", enc, key))
        floor_s = 0.0
        for mode, path, k in runs:
            m = _measure(mode, path, k, args.repeat)
            growth = m["rss_peak_mb"] - m["rss_base_mb"]
            mb = path.stat().st_size / 1e6
            floor_s = floor_s or m["best_s"]  # the floor runs first: ratios are best-of times against it
            print(
                f"{size:4} {mode:10} {mb:8.2f} {m['first_s']:8.3f} {m['best_s']:8.3f} {m['rss_peak_mb']:11.1f} "
                f"{growth:9.1f} {m['py_peak_mb']:10.1f} {m['best_s'] / floor_s:8.1f}"
            )
            rows.append({"size": size, "mode": mode, "file_mb": mb, **m})
    (work / "results.json").write_text(json.dumps(rows, indent=1))
    target = next((r for r in rows if r["size"] == "L" and r["mode"] == "parse"), None)
    if target:
        ok = target["first_s"] < 1.0 and target["rss_peak_mb"] < 150
        print(
            f"target L < 1 s and < 150 MB: {'met' if ok else 'NOT met'} "
            f"({target['first_s']:.3f} s, {target['rss_peak_mb']:.1f} MB peak)"
        )
        return 0 if ok else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
