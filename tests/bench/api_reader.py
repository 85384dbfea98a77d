"""An ENT front-end's read load, in a process of its own: the history of a site and the detail of an import,
alternately, at a fixed rate whatever the answers' latency (open loop: a slow answer does not slow the next
request down, as it would for a client that waits for each answer).

    python -m tests.bench.api_reader BASE_URL TOKEN RATE SITE[,SITE…]

Runs until its standard input closes, then prints one JSON line: every latency (s) and the errors (any
answer but 200, or none). The import ids it asks about are those the history answers list.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time

import httpx


async def read(base_url: str, token: str, rate: float, sites: list[str]) -> dict[str, object]:
    latencies: list[float] = []
    errors: list[str] = []
    ids: list[str] = []
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    stdin = sys.stdin.fileno()
    loop.add_reader(stdin, lambda: None if os.read(stdin, 4096) else stop.set())
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=base_url, headers={"Authorization": f"Bearer {token}"}, limits=limits,
                                 timeout=30) as client:

        async def one(path: str) -> None:
            t = time.perf_counter()
            try:
                r = await client.get(path)
                ok = r.status_code == 200
                if ok and path.endswith("/imports"):
                    ids.extend(item["id"] for item in r.json()["items"][:2])
                    del ids[:-500]
                if not ok:
                    errors.append(f"{path} {r.status_code}")
            except httpx.HTTPError as exc:
                errors.append(f"{path} {type(exc).__name__}")
            latencies.append(time.perf_counter() - t)

        tasks: set[asyncio.Task[None]] = set()
        start, n = time.monotonic(), 0
        while not stop.is_set():
            delay = start + n / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            path = f"/api/v1/imports/{ids[n % len(ids)]}" if n % 2 and ids else \
                f"/api/v1/sites/{sites[n % len(sites)]}/imports"
            task = asyncio.create_task(one(path))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            n += 1
        # Answers still awaited when the herd is over get 10 s more; any later is an error, not a wait.
        _, late = await asyncio.wait(tasks, timeout=10) if tasks else (set(), set())
        for task in late:
            task.cancel()
        errors.extend(["no answer 10 s after the herd ended"] * len(late))
    return {"latencies": latencies, "errors": len(errors), "error_samples": errors[:10], "unanswered": len(late)}


def main() -> None:
    base_url, token, rate, sites = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4].split(",")
    print(json.dumps(asyncio.run(read(base_url, token, rate, sites))), flush=True)


if __name__ == "__main__":
    main()
