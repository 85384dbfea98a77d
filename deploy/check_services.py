"""`python -m deploy.check_services [--wait SECONDS]`: are the servers the test suite needs reachable?

`make test` runs it first so that a missing PostgreSQL or RabbitMQ fails the run at once with a clear
message, instead of tests failing one by one (they fail, never skip, on their own too).
Checks PostgreSQL (EDT_TEST_PG) and RabbitMQ (EDT_TEST_AMQP) with a real login; reports the RabbitMQ
management API and the command-line tools the e2e tests drive as warnings only.
Exit status: 0 when both servers answer, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import time
import urllib.parse

from deploy.supervisor import redact

PG_DSN = os.environ.get("EDT_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
AMQP_URL = os.environ.get("EDT_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672/")
MANAGEMENT_URL = os.environ.get("EDT_TEST_RABBITMQ_MANAGEMENT", "http://guest:guest@127.0.0.1:15672")
TOOLS = ("nginx", "litmus", "rclone", "cadaver", "curl")


async def check_postgres() -> str | None:
    import asyncpg

    try:
        conn = await asyncpg.connect(PG_DSN, timeout=5)
        try:
            await conn.fetchval("SELECT 1")
        finally:
            await conn.close()
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        return f"PostgreSQL unreachable at {redact(PG_DSN)} (EDT_TEST_PG): {exc!r}"
    return None


async def check_rabbitmq() -> str | None:
    import aio_pika

    try:
        connection = await asyncio.wait_for(aio_pika.connect(AMQP_URL, timeout=5), 8)
        await connection.close()
    except Exception as exc:  # noqa: BLE001 - any failure means "unreachable" here
        return f"RabbitMQ unreachable at {redact(AMQP_URL)} (EDT_TEST_AMQP): {exc!r}"
    return None


def check_management() -> str | None:
    import httpx

    url = urllib.parse.urlsplit(MANAGEMENT_URL)
    base = f"{url.scheme}://{url.hostname}:{url.port or 15672}"
    auth = (urllib.parse.unquote(url.username or "guest"), urllib.parse.unquote(url.password or "guest"))
    try:
        r = httpx.get(f"{base}/api/overview", timeout=3, trust_env=False, auth=auth)
        if r.status_code == 200:
            return None
        return f"RabbitMQ management API at {base} answered {r.status_code}"
    except httpx.HTTPError as exc:
        return (f"RabbitMQ management API unreachable at {base} ({exc!r}); "
                "enable it with: rabbitmq-plugins enable rabbitmq_management")


def missing_tools() -> list[str]:
    return [t for t in TOOLS if shutil.which(t) is None and not os.path.exists(f"/usr/sbin/{t}")]


async def check_once() -> list[str]:
    results = await asyncio.gather(check_postgres(), check_rabbitmq())
    return [r for r in results if r]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.check_services")
    parser.add_argument("--wait", type=float, default=0, help="keep trying for this many seconds")
    args = parser.parse_args(argv)
    deadline = time.monotonic() + args.wait
    while True:
        errors = asyncio.run(check_once())
        if not errors or time.monotonic() >= deadline:
            break
        time.sleep(1)
    for error in errors:
        print(f"check_services: ERROR: {error}", file=sys.stderr)
    warning = check_management()
    if warning:
        print(f"check_services: warning: {warning}", file=sys.stderr)
    tools = missing_tools()
    if tools:
        print(f"check_services: warning: missing tools the e2e tests use: {', '.join(tools)} "
              f"(apt-get install -y {' '.join('nginx-light' if t == 'nginx' else t for t in tools)})",
              file=sys.stderr)
    if errors:
        print("check_services: the test suite needs PostgreSQL and RabbitMQ; start them (see .ci/run)",
              file=sys.stderr)
        return 1
    print("check_services: PostgreSQL and RabbitMQ reachable")
    return 0


if __name__ == "__main__":
    sys.exit(main())
