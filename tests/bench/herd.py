"""The 08:00 herd of a whole académie, on the distributed product (RabbitMQ + PostgreSQL, a process per
service behind nginx), measured side by side in one run: `make bench-herd`.

    python -m tests.bench.herd [--sites 300] [--window 60] [--scale-sites 60] [--no-scale] [--out DIR]

PRONOTE exports at a fixed hour (seeds 000/001): every site's automatic deposit lands within `--window`
seconds. Each site is an M collège (800 students) with its ENT directory uploaded (2 % missing, IdPN for half)
and a first import done by hand; the herd deposits each one's follow-up (5 % of its courses changed) over
WebDAV at a random moment of the window, while a reader asks the history and import details at 200 req/s.

Printed with PASS/FAIL (targets of the issue): all integrated < 5 min, queue positions exact and monotone,
max/median wait < 3, none lost; throughput ≥ 1 import/s sustained, and what saturates (CPU of each service,
PostgreSQL time, broker); the API's p99 < 100 ms with 0 errors; no service above 400 MB RSS; a 20 MB PUT < 1 s
and 50 concurrent uploads all stored; an XL cité scolaire deposit → done < 10 s embedded with < 300 MB per
service; an identical re-deposit < 200 ms to done. Then the scale-out table: a smaller herd (`--scale-sites`)
at 1, 2 and 4 consumer processes per stage × EDT_MAX_IN_FLIGHT 2, 4, 8. Writes `herd.json` and `herd.png`
(each import's wait against its deposit time) into `--out`.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from tests.factory import make_school
from tests.factory.directory import make_directory
from tests.harness import Api, curl_put

TERMINAL = {"done", "rejected", "blocked", "failed", "cancelled", "superseded", "previewed"}
ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".edt-import" / "bench-cache"


def uai(n: int) -> str:
    from tests.factory import uai_for

    return uai_for(f"{1000000 + n:07d}")


# ------------------------------------------------------------------------------------- the schools


@dataclass
class SiteFiles:
    site: str
    est: str
    uai: str
    first: Path
    follow: Path
    directory: Path


def school_files(n: int, size: str = "M") -> SiteFiles:
    """Site n's first export, its follow-up (5 % changed) and its ENT directory, generated once and cached."""
    site, code = f"{9000 + n}", uai(n)
    folder = CACHE / size / code
    files = SiteFiles(site, site, code, folder / "first.xml", folder / "follow.xml", folder / "directory.json")
    if not files.directory.exists():
        folder.mkdir(parents=True, exist_ok=True)
        base = make_school(size, n, uai=code)
        files.first.write_bytes(base.to_xml_bytes())
        files.follow.write_bytes(make_school(size, n, uai=code, changes=5).to_xml_bytes())
        d = make_directory(base.timetable, seed=n)
        files.directory.write_text(json.dumps({"body": d.body, "associations": d.associations}))
    return files


def all_files(count: int) -> list[SiteFiles]:
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max(1, (os.cpu_count() or 2))) as pool:
        return list(pool.map(school_files, range(count)))


# ------------------------------------------------------------------------------------ measurements


@dataclass
class Sample:
    site: str
    import_id: str
    deposited: float  # seconds from the herd's start
    done: float = 0.0
    status: str = ""
    positions: list[int] = field(default_factory=list)  # every queue position seen while it waited

    @property
    def wait(self) -> float:
        return self.done - self.deposited


class Reader:
    """History and import details at `rate` requests per second from a process of its own (tests.bench.
    api_reader): open loop, and no share of this process's interpreter lock with the depositing threads."""

    def __init__(self, api: Api, sites: list[str], rate: float) -> None:
        self.args = [sys.executable, "-m", "tests.bench.api_reader", api.base_url, api.admin_token, str(rate),
                     ",".join(sites)]
        self.latencies: list[float] = []
        self.errors = 0
        self.error_samples: list[str] = []

    def start(self) -> None:
        self.proc = subprocess.Popen(self.args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=ROOT)

    def finish(self) -> None:
        out, _ = self.proc.communicate(timeout=120)  # closing its standard input stops it
        result = json.loads(out)
        self.latencies, self.errors, self.error_samples = result["latencies"], result["errors"], \
            result["error_samples"]


class Sampler(threading.Thread):
    """RSS and CPU time of every service process, sampled every second."""

    def __init__(self, pids: dict[str, int]) -> None:
        super().__init__(daemon=True)
        self.pids = pids
        self.rss: dict[str, float] = {n: 0.0 for n in pids}
        self.cpu_start = {n: cpu_seconds(p) for n, p in pids.items()}
        self.cpu: dict[str, float] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.2):
            for name, pid in self.pids.items():
                self.rss[name] = max(self.rss[name], rss_mb(pid))

    def finish(self) -> None:
        self.stop.set()
        self.cpu = {n: cpu_seconds(p) - self.cpu_start[n] for n, p in self.pids.items()}


def rss_mb(pid: int) -> float:
    """The process's resident memory with its children (the validator's parse worker)."""
    total = 0.0
    for p in [pid, *children(pid)]:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) / 1024
        except OSError:
            pass
    return total


def cpu_seconds(pid: int) -> float:
    total = 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    for p in [pid, *children(pid)]:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
        except OSError:
            pass
    return total


def children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def postgres_seconds(database_url: str) -> float:
    """Time PostgreSQL spent executing statements of this database (pg_stat_statements if present, else the
    sum of active backend time seen by pg_stat_database)."""
    import asyncio

    import asyncpg

    async def read() -> float:
        dsn = database_url.replace("postgresql+asyncpg://", "postgresql://")
        conn = await asyncpg.connect(dsn)
        try:
            row = await conn.fetchrow("SELECT active_time FROM pg_stat_database WHERE datname = current_database()")
            return float(row["active_time"] or 0) / 1000 if row else 0.0
        finally:
            await conn.close()

    return asyncio.run(read())


# ---------------------------------------------------------------------------------------- the herd


@contextmanager
def cluster(tmp: Path, **env: str) -> Iterator[Any]:
    from tests.e2e.conftest import start_cluster

    settings = {"EDT_MAX_UPLOAD_MB": "100", "EDT_RETRY_BACKOFF_S": "0.5", **env}
    with start_cluster(tmp, **settings) as e2e:
        yield e2e


def prepare(api: Api, files: list[SiteFiles]) -> dict[str, dict[str, str]]:
    """Sites, directories, first imports by hand, one deposit account each (not measured)."""
    accounts: dict[str, dict[str, str]] = {}

    def one(f: SiteFiles) -> None:
        api.create_site(f.site, {f.est: f.uai})
        d = json.loads(f.directory.read_text())
        api.ok("PUT", f"/sites/{f.site}/establishments/{f.est}/directory", json=d["body"])
        api.ok("POST", f"/sites/{f.site}/establishments/{f.est}/pronote-ids?mode=complete", json=d["associations"])
        done = api.wait(api.upload(f.site, f.est, f.first.read_bytes(), name="EDT_To_KOSMOS.xml"), timeout=1800)
        assert done["status"] == "done", done
        accounts[f.site] = api.create_account(f.site)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, files))
    return accounts


def run_herd(api: Api, files: list[SiteFiles], accounts: dict[str, dict[str, str]], window: float,
             rate: float = 200.0) -> tuple[list[Sample], Reader, float]:
    rng = random.Random(8)
    offsets = sorted((rng.uniform(0, window), f) for f in files)
    samples: list[Sample] = []
    reader = Reader(api, [f.site for f in files], rate)
    start, wall_start = time.monotonic(), time.time()
    reader.start()

    def deposit(offset: float, f: SiteFiles) -> None:
        delay = start + offset - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        account = accounts[f.site]
        began = time.monotonic() - start  # the wait is the deposit's: from the moment its upload begins
        put = curl_put(f"{api.base_url}/webdav/{f.site}/{f.est}/EDT_To_KOSMOS_{f.uai}.xml", account["login"],
                       account["password"], f.follow)
        assert put.status in (201, 204) and put.import_id, put
        sample = Sample(f.site, put.import_id, began)
        samples.append(sample)
        follow(api, sample, wall_start)

    with ThreadPoolExecutor(len(files)) as pool:
        list(pool.map(lambda a: deposit(*a), offsets))
    reader.finish()
    return samples, reader, time.monotonic() - start


FOLLOW_EVERY_S = 5.0


def follow(api: Api, sample: Sample, wall_start: float) -> None:
    """Until the import ends, recording its queue positions (every 5 s, as a page left open refreshes); its
    end is the import's own `ended_at` (this machine's clock, as `wall_start`), not the poll that saw it."""
    with api.client() as client:
        while True:
            r = client.get(f"/api/v1/imports/{sample.import_id}")
            assert r.status_code == 200, (sample.import_id, r.status_code)
            item = r.json()
            if item["queue_position"] is not None:
                sample.positions.append(int(item["queue_position"]))
            if item["status"] in TERMINAL:
                sample.status = item["status"]
                sample.done = datetime.fromisoformat(item["ended_at"]).timestamp() - wall_start
                return
            time.sleep(FOLLOW_EVERY_S)


def herd_line(samples: list[Sample], elapsed: float, window: float) -> dict[str, Any]:
    waits = sorted(s.wait for s in samples)
    done = [s for s in samples if s.status == "done"]
    monotone = all(all(b <= a for a, b in zip(s.positions, s.positions[1:], strict=False)) for s in samples)
    return {"imports": len(samples), "done": len(done), "lost": len(samples) - len(done), "elapsed_s": elapsed,
            "last_done_s": max(s.done for s in samples), "wait_p50_s": statistics.median(waits),
            "wait_p99_s": waits[max(0, int(len(waits) * 0.99) - 1)], "wait_max_s": waits[-1],
            "max_over_median": waits[-1] / statistics.median(waits), "positions_monotone": monotone,
            "throughput_per_s": len(done) / max(1e-9, max(s.done for s in samples) - window / 2)}


def chart(samples: list[Sample], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.5))
    ax.scatter([s.deposited for s in samples], [s.wait for s in samples], s=8)
    ax.set_xlabel("deposit time in the herd (s)")
    ax.set_ylabel("deposit → done (s)")
    ax.set_title(f"08:00 herd: {len(samples)} M collèges over WebDAV, distributed mode")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


# ------------------------------------------------------------------------------- the other targets


def webdav_lines(api: Api, files: list[SiteFiles], accounts: dict[str, dict[str, str]], tmp: Path) -> dict[str, Any]:
    """A 20 MB PUT, and 50 concurrent uploads (all stored: each has its import)."""
    big = tmp / "EDT_big.xml"
    with open(big, "wb") as out:  # a valid export padded with a comment to 20 MB
        data = files[0].follow.read_bytes()
        out.write(data)
        out.write(b"<!--" + b" " * (20 * 1024 * 1024 - len(data) - 8) + b"-->\n")
    f, account = files[0], accounts[files[0].site]
    t = time.perf_counter()
    put = curl_put(f"{api.base_url}/webdav/{f.site}/{f.est}/{big.name}", account["login"], account["password"], big)
    big_s = time.perf_counter() - t
    assert put.status in (201, 204), put
    api.wait(str(put.import_id), timeout=600)

    def upload(i: int) -> str | None:
        g = files[i % len(files)]
        path = tmp / f"concurrent-{i}.xml"
        path.write_bytes(g.follow.read_bytes() + f"<!-- {i} -->\n".encode())
        acc = accounts[g.site]
        out = curl_put(f"{api.base_url}/webdav/{g.site}/{g.est}/EDT_{i}.xml", acc["login"], acc["password"], path)
        return out.import_id if out.status in (201, 204) else None

    with ThreadPoolExecutor(50) as pool:
        stored = list(pool.map(upload, range(50)))
    readable = sum(1 for i in stored if i and api.call("GET", f"/imports/{i}").status_code == 200)
    for i in stored:
        if i:
            api.wait(i, timeout=900)
    return {"put_20mb_s": big_s, "concurrent_uploads": 50, "stored": readable}


def embedded_lines(tmp: Path) -> dict[str, Any]:
    """The XL cité scolaire, deposit → done embedded, peak RSS; an identical re-deposit."""
    from tests.bench.pipeline import embedded, setup_site, wait_done

    xl = make_school("XL", 1, uai=["0490856P", "0490857R"])
    with embedded(tmp) as api:
        ests = setup_site(api, xl)
        data = xl.to_xml_bytes()
        peak = Sampler({"embedded": os.getpid()})
        peak.start()
        t = time.perf_counter()
        wait_done(api, api.upload("4817", None, data, name="EDT_2014_1.zip"))
        xl_s = time.perf_counter() - t
        peak.finish()
        rss = peak.rss["embedded"]
        t = time.perf_counter()
        again = wait_done(api, api.upload("4817", None, data, name="EDT_2014_2.zip"))
        same_s = time.perf_counter() - t
        assert again["no_change"], again
    del ests
    return {"xl_embedded_s": xl_s, "xl_embedded_rss_mb": rss, "identical_redeposit_s": same_s}


# ------------------------------------------------------------------------------------------------ main


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sites", type=int, default=300)
    parser.add_argument("--window", type=float, default=60.0)
    parser.add_argument("--scale-sites", type=int, default=60)
    parser.add_argument("--no-scale", action="store_true")
    parser.add_argument("--out", default=str(ROOT / ".edt-import" / "bench-herd"))
    args = parser.parse_args()
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    print(f"generating {args.sites} M schools with their directories (cached in {CACHE}) …", flush=True)
    files = all_files(args.sites)
    result: dict[str, Any] = {"at": datetime.now().isoformat(timespec="seconds"), "sites": args.sites,
                              "window": args.window}
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        with cluster(tmp / "herd") as e2e:
            api = Api(e2e.base_url, e2e.admin_token)
            t = time.perf_counter()
            accounts = prepare(api, files)
            result["prepare_s"] = time.perf_counter() - t
            pids = dict(e2e.cluster.pids)
            sampler = Sampler(pids)
            sampler.start()
            pg_before = postgres_seconds(e2e.database_url)
            samples, reader, elapsed = run_herd(api, files, accounts, args.window)
            sampler.finish()
            result["herd"] = herd_line(samples, elapsed, args.window)
            result["postgres_active_s"] = postgres_seconds(e2e.database_url) - pg_before
            result["cpu_s"] = sampler.cpu
            result["rss_mb"] = sampler.rss
            lat = sorted(reader.latencies)
            result["api"] = {"requests": len(lat), "errors": reader.errors, "error_samples": reader.error_samples,
                             "p50_ms": 1000 * lat[len(lat) // 2] if lat else 0.0,
                             "p90_ms": 1000 * lat[int(len(lat) * 0.9)] if lat else 0.0,
                             "p99_ms": 1000 * lat[max(0, int(len(lat) * 0.99) - 1)] if lat else 0.0}
            result["webdav"] = webdav_lines(api, files, accounts, tmp)
            result["samples"] = [asdict(s) for s in samples]
        result["embedded"] = embedded_lines(tmp / "xl")
        if not args.no_scale:
            result["scale"] = scale_table(files[: args.scale_sites], args.window * args.scale_sites / args.sites,
                                          tmp)
    chart([Sample(**s) for s in result["samples"]], out_dir / "herd.png")
    (out_dir / "herd.json").write_text(json.dumps(result, indent=1, default=str))
    sys.exit(0 if report(result, out_dir) else 1)


def scale_table(files: list[SiteFiles], window: float, tmp: Path) -> list[dict[str, Any]]:
    rows = []
    for consumers in (1, 2, 4):
        for in_flight in (2, 4, 8):
            env = {f"EDT_CONSUMERS_{s}": str(consumers) for s in ("VALIDATOR", "THRESHOLDS", "RECONCILER",
                                                                    "SCHEDULER")}
            with cluster(tmp / f"scale-{consumers}-{in_flight}", EDT_MAX_IN_FLIGHT=str(in_flight), **env) as e2e:
                api = Api(e2e.base_url, e2e.admin_token)
                accounts = prepare(api, files)
                sampler = Sampler(dict(e2e.cluster.pids))
                sampler.start()
                pg_before = postgres_seconds(e2e.database_url)
                samples, _, elapsed = run_herd(api, files, accounts, window, rate=20)
                sampler.finish()
                line = herd_line(samples, elapsed, window)
                rows.append({"consumers": consumers, "max_in_flight": in_flight, **line,
                             "cpu_s": sampler.cpu, "postgres_active_s": postgres_seconds(e2e.database_url) - pg_before})
            print(f"  scale {consumers} consumers × {in_flight} in flight: {line['throughput_per_s']:.2f} imports/s",
                  flush=True)
    return rows


def report(r: dict[str, Any], out_dir: Path) -> bool:
    h, api, web, emb = r["herd"], r["api"], r["webdav"], r["embedded"]
    cpu = r["cpu_s"]
    busiest = max(cpu, key=lambda k: cpu[k])
    lines = [
        (f"herd: {h['imports']} sites within {r['window']:.0f} s, last integrated at {h['last_done_s']:.0f} s "
         "< 300 s", h["last_done_s"] < 300),
        (f"queue positions exact and monotone: {h['positions_monotone']}", h["positions_monotone"]),
        (f"max/median wait {h['max_over_median']:.2f} < 3 (p50 {h['wait_p50_s']:.1f} s, p99 {h['wait_p99_s']:.1f} s)",
         h["max_over_median"] < 3),
        (f"no import lost: {h['lost']} lost of {h['imports']}", h["lost"] == 0),
        (f"throughput {h['throughput_per_s']:.2f} imports/s ≥ 1 (busiest: {busiest}, {cpu[busiest]:.0f} s CPU; "
         f"PostgreSQL active {r['postgres_active_s']:.0f} s)", h["throughput_per_s"] >= 1),
        (f"API under load: {api['requests']} requests, p50 {api.get('p50_ms', 0):.0f} / p90 "
         f"{api.get('p90_ms', 0):.0f} / p99 {api['p99_ms']:.0f} ms (p99 < 100), {api['errors']} errors",
         api["p99_ms"] < 100 and api["errors"] == 0),
        (f"WebDAV: 20 MB PUT in {web['put_20mb_s']:.2f} s < 1 s", web["put_20mb_s"] < 1),
        (f"WebDAV: {web['stored']}/{web['concurrent_uploads']} concurrent uploads stored",
         web["stored"] == web["concurrent_uploads"]),
        (f"XL cité scolaire embedded: {emb['xl_embedded_s']:.1f} s < 10 s, {emb['xl_embedded_rss_mb']:.0f} MB < 300",
         emb["xl_embedded_s"] < 10 and emb["xl_embedded_rss_mb"] < 300),
        (f"identical re-deposit: {1000 * emb['identical_redeposit_s']:.0f} ms < 200 ms",
         emb["identical_redeposit_s"] < 0.2),
        ("memory under the herd: " + ", ".join(f"{k} {v:.0f}" for k, v in r["rss_mb"].items()) + " MB, each < 400",
         max(r["rss_mb"].values()) < 400),
    ]
    print("\nthe 08:00 herd (distributed mode, this machine)")
    ok = True
    for text, passed in lines:
        print(f"{verdict(passed)}  {text}")
        ok &= passed
    if "scale" in r:
        print("\nscale-out (a herd of the first sites), imports/s, waits p50/p99 (s), CPU s per service, PostgreSQL s")
        for row in r["scale"]:
            per_service: dict[str, float] = {}
            for process, seconds in row["cpu_s"].items():  # "validator-2" is the validator's second process
                service = process.rsplit("-", 1)[0] if process[-1].isdigit() else process
                per_service[service] = per_service.get(service, 0.0) + seconds
            cpu_txt = " ".join(f"{k[:5]}={v:.0f}" for k, v in per_service.items())
            print(f"  {row['consumers']} consumers × {row['max_in_flight']} in flight: {row['throughput_per_s']:.2f}/s "
                  f"p50 {row['wait_p50_s']:.1f} p99 {row['wait_p99_s']:.1f}  {cpu_txt}  "
                  f"pg {row['postgres_active_s']:.0f}")
    print(f"\nwrote {out_dir / 'herd.json'} and {out_dir / 'herd.png'}")
    return ok


if __name__ == "__main__":
    main()
