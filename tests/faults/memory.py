"""Memory of a long-running embedded server: `python -m tests.faults.memory [imports]` runs the embedded
product in this process (SQLite, in-process bus) and deposits `imports` files of one establishment,
alternating two different timetables so that every import changes every session (the change events of
an import that replaces a timetable are the biggest); prints the process's RSS every 10 imports and what
the in-process bus still holds (`--unbounded`: with the bus keeping every publish, as it did). The
figures are in docs/reliability.md."""

from __future__ import annotations

import gc
import sys
import tempfile
from pathlib import Path

from deploy.embedded import create_embedded_app
from deploy.migrate import upgrade
from shared.bus import MemoryBus
from shared.settings import Settings
from tests.harness import Api, ServerThread, free_port, sample_xml, test_settings_env


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main(imports: int = 50, unbounded: bool = False) -> int:
    with tempfile.TemporaryDirectory(prefix="edt-memory-") as tmp:
        root = Path(tmp)
        port = free_port()
        env = {**test_settings_env(root, f"sqlite+aiosqlite:///{root}/edt.db"), "EDT_PORT": str(port)}
        settings = Settings(**{k.removeprefix("EDT_").lower(): v for k, v in env.items()})
        upgrade(settings.database_url)
        app = create_embedded_app(settings)
        server = ServerThread(app, port).start()
        try:
            api = Api(server.url, settings.admin_token)
            api.create_site("4817", {"1754": "0490856P"})
            bus = app.state.runtime.bus
            assert isinstance(bus, MemoryBus)
            if unbounded:  # the bus as it was: every publish kept for ever (the figure "before")
                bus.published = []  # type: ignore[assignment]
            print(f"{'imports':>8} {'RSS MB':>8} {'bus kept (messages)':>20} {'bus kept (MB)':>14}")
            for n in range(1, imports + 1):
                import_id = api.upload("4817", "1754", sample_xml("0490856P", marker=f"m{n}", seed=1 + n % 2))
                status = api.wait(import_id, timeout=120)["status"]
                assert status == "done", status
                if n % 10 == 0 or n == 1:
                    gc.collect()
                    kept = sum(len(b) for _, _, b in list(bus.published))
                    print(f"{n:>8} {rss_mb():>8.1f} {len(bus.published):>20} {kept / 1e6:>14.2f}", flush=True)
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    sys.exit(main(int(args[0]) if args else 50, unbounded="--unbounded" in sys.argv))
