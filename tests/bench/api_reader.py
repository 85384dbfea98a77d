"""An ENT front-end's read load, in a process of its own: the history of a site and the detail of an import,
alternately, at a fixed rate whatever the answers' latency (open loop: a slow answer does not slow the next
request down, as it would for a client that waits for each answer).

    python -m tests.bench.api_reader BASE_URL TOKEN RATE SITE[,SITE…]

Runs until its standard input closes, then prints one JSON line: every latency (s), measured from the moment
the request was due (time spent waiting for a free connection counts: no coordinated omission), and the
errors (any answer but 200, or none). The import ids it asks about are those the history answers list.

The client is a few keep-alive HTTP/1.1 connections written on asyncio streams: a general-purpose client
(httpx) costs a millisecond or more of CPU per request and queues thousands of due requests in its pool,
so on a saturated 2-core machine it measured itself, not the product.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from urllib.parse import urlsplit

CONNECTIONS = 32


class Connection:
    def __init__(self, host: str, port: int, headers: bytes) -> None:
        self.host, self.port, self.headers = host, port, headers
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self, path: str) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        try:
            self.writer.write(f"GET {path} HTTP/1.1\r\n".encode() + self.headers)
            head = await self.reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split(" ", 2)[1])
            fields = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
            if "content-length" in fields:
                body = await self.reader.readexactly(int(fields["content-length"]))
            elif fields.get("transfer-encoding", "").lower() == "chunked":
                parts = []
                while size := int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16):
                    parts.append(await self.reader.readexactly(size + 2))
                await self.reader.readuntil(b"\r\n")
                body = b"".join(p[:-2] for p in parts)
            else:
                body = await self.reader.read()
            if fields.get("connection", "").lower() == "close":
                self.close()
            return status, body
        except (OSError, asyncio.IncompleteReadError, ValueError):
            self.close()
            raise

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def read(base_url: str, token: str, rate: float, sites: list[str]) -> dict[str, object]:
    url = urlsplit(base_url)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    headers = (f"Host: {url.netloc}\r\nAuthorization: Bearer {token}\r\nAccept: application/json\r\n\r\n").encode()
    latencies: list[float] = []
    errors: list[str] = []
    ids: list[str] = []
    due: asyncio.Queue[tuple[float, str]] = asyncio.Queue()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    stdin = sys.stdin.fileno()
    loop.add_reader(stdin, lambda: None if os.read(stdin, 4096) else stop.set())
    listed = 0

    async def worker() -> None:
        nonlocal listed
        conn = Connection(host, port, headers)
        while True:
            at, path = await due.get()
            try:
                status, body = await conn.get(path)
                if status != 200:
                    errors.append(f"{path} {status}")
                elif path.endswith("/imports") and (listed := listed + 1) % 5 == 1:  # ids to ask about
                    ids.extend(item["id"] for item in json.loads(body)["items"][:2])
                    del ids[:-500]
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                errors.append(f"{path} {type(exc).__name__}")
            latencies.append(time.monotonic() - at)
            due.task_done()

    workers = [asyncio.create_task(worker()) for _ in range(CONNECTIONS)]
    start, n = time.monotonic(), 0
    while not stop.is_set():
        at = start + n / rate
        delay = at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        path = f"/api/v1/imports/{ids[n % len(ids)]}" if n % 2 and ids else \
            f"/api/v1/sites/{sites[n % len(sites)]}/imports"
        due.put_nowait((at, path))
        n += 1
    # Requests still due when the herd is over get 10 s more; any later is an error, not a wait.
    try:
        await asyncio.wait_for(due.join(), timeout=10)
    except TimeoutError:
        pass
    for w in workers:
        w.cancel()
    answered = len(latencies)
    unanswered = n - answered
    errors.extend(["no answer 10 s after the herd ended"] * unanswered)
    return {"latencies": latencies, "errors": len(errors), "error_samples": errors[:10], "unanswered": unanswered,
            "sent": n}


def main() -> None:
    base_url, token, rate, sites = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4].split(",")
    print(json.dumps(asyncio.run(read(base_url, token, rate, sites))), flush=True)


if __name__ == "__main__":
    main()
