"""Distributed mode's command line (design.md §3): `python -m deploy.distributed`, `make run-distributed`.

Starts the cluster (`deploy/supervisor.py`: the migrations, the six services, nginx in front) and prints
where everything is, restarting a process that dies (with backoff, logged), until Ctrl-C or SIGTERM stops
it; `--render-compose` writes docker-compose's proxy configuration (`deploy/nginx.py`) instead.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import IO

from deploy.demo import demo_banner
from deploy.nginx import COMPOSE_CONF, render_compose_conf
from deploy.supervisor import Cluster, ClusterError, redact

# --- command line -----------------------------------------------------------------------------------

class _Stop(BaseException):
    """Raised by the SIGTERM/SIGINT handler to unwind into Cluster.stop()."""


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[None]:
    def handler(signum: int, _frame: FrameType | None) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise _Stop(signum)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _print(message: str, stream: IO[str] | None = None) -> None:
    print(message, file=stream or sys.stdout, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.distributed",
                                     description="Run edt-import's six services behind nginx (distributed mode).")
    parser.add_argument("--render-compose", metavar="PATH", nargs="?", const=str(COMPOSE_CONF),
                        help=f"write the docker-compose proxy configuration (default {COMPOSE_CONF}) and exit")
    args = parser.parse_args(argv)
    if args.render_compose:
        target = Path(args.render_compose)
        text = render_compose_conf()
        if str(target) == "-":
            sys.stdout.write(text)
        else:
            target.write_text(text, encoding="utf-8")
            _print(f"wrote {target}")
        return 0

    cluster = Cluster(echo=lambda m: _print(f"[distributed] {m}", sys.stderr))
    with _stop_on_signals():
        try:
            cluster.start()
            cfg = cluster._cfg
            processes = [f"  {name:<14} pid {inst.proc.pid if inst.proc else '?':<8} port {inst.port:<6} log {inst.log}"
                         for name, inst in cluster.instances.items()]
            extra = ["  Processes", *[f"  {line}" for line in processes],
                     f"  Database       {redact(cfg.database_url)}", f"  Broker         {redact(cfg.broker_url)}",
                     f"  Metrics        {cluster.base_url}/metrics/<service>"]
            if cfg.admin_token_generated:
                extra.append(f"  (admin token generated, kept in {cfg.data_dir / 'admin-token'})")
            try:
                text = asyncio.run(demo_banner(cluster.base_url, cfg.env["EDT_PUBLIC_URL"].rstrip("/"),
                                               cfg.admin_token, cfg.data_dir, "distributed", extra))
            except Exception as exc:  # noqa: BLE001 - the cluster is still useful without the demo
                text = f"edt-import (distributed) ready at {cluster.base_url}; demo bootstrap failed: {exc!r}"
            _print(text)
            _print("Ctrl-C (or SIGTERM) stops everything.")
            while True:  # a service that dies is started again, with backoff (logged)
                cluster.revive()
                time.sleep(0.5)
        except _Stop:
            _print("[distributed] stopping…", sys.stderr)
            _shutdown(cluster)
            return 0
        except ClusterError as exc:
            _shutdown(cluster)
            _print(f"[distributed] error: {exc}", sys.stderr)
            return 1
        except BaseException:
            _shutdown(cluster)
            raise


def _shutdown(cluster: Cluster) -> None:
    """Stop the cluster without being interrupted by a second Ctrl-C (stop is bounded by its grace)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    cluster.stop()


if __name__ == "__main__":
    sys.exit(main())
