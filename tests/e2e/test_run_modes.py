"""`make run` and `make run-distributed` as a new user runs them (`python -m deploy.run`,
`python -m deploy.distributed`, what the Makefile calls): the same demo and the same banner in both modes,
commands that work from any directory, credentials kept across restarts, URLs that follow EDT_PORT, and a
quiet end on Ctrl-C (SIGINT to the whole process group, as a terminal sends it) or SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from deploy.supervisor import REPO_ROOT, free_port
from tests.e2e.conftest import MANAGEMENT_URL, rabbit_vhost
from tests.harness import postgres_database

pytestmark = [pytest.mark.e2e, pytest.mark.long]

LABELS = ("API", "Admin token", "Site token", "WebDAV", "Deposit the bundled sample export:", "Follow the history:",
          "Change events (Server-Sent Events):")


@dataclass
class Banner:
    text: str

    def value(self, label: str) -> str:
        match = re.search(rf"^  {re.escape(label)}\s+(\S+)", self.text, re.M)
        assert match, f"no {label!r} in the banner:\n{self.text}"
        return match.group(1)

    def command(self, after: str) -> str:
        lines = self.text.splitlines()
        return lines[lines.index(f"  {after}") + 1].strip()

    @property
    def labels(self) -> list[str]:
        return [label for line in self.text.splitlines() for label in LABELS if line.startswith(f"  {label}")]


@dataclass
class Running:
    proc: subprocess.Popen[bytes]
    out: Path
    err: Path

    def banner(self, within: float = 180) -> Banner:
        deadline = time.monotonic() + within
        while True:
            text = self.out.read_text(errors="replace")
            # embedded: the banner ends with the change stream's line; distributed: a last line follows
            if text.rstrip().endswith("/changes") or "Ctrl-C" in text:
                start = text.index("edt-import is running")
                return Banner(text[start:])
            assert self.proc.poll() is None, f"exited {self.proc.returncode}:\n{self.err.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"no banner after {within} s:\n{text}\n{self.err.read_text()[-3000:]}"
            time.sleep(0.2)

    def stop(self, sig: int, *, group: bool) -> None:
        if group:
            os.killpg(self.proc.pid, sig)
        else:
            self.proc.send_signal(sig)
        assert self.proc.wait(60) == 0, self.err.read_text()[-3000:]
        stderr = self.err.read_text()
        assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr[-3000:]


@contextmanager
def launched(module: str, env: dict[str, str], logs: Path, name: str) -> Iterator[Running]:
    out, err = logs / f"{name}.out", logs / f"{name}.err"
    with out.open("wb") as o, err.open("wb") as e:
        proc = subprocess.Popen([sys.executable, "-m", module], cwd=REPO_ROOT, env=env, stdout=o, stderr=e,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        yield Running(proc, out, err)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)


def clean_env(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDT_")}
    return {**env, "PYTHONUNBUFFERED": "1", **settings}


def run_printed(command: str, cwd: Path) -> str:
    """A command of the banner, run as the user would paste it, from another directory."""
    return subprocess.run(["bash", "-c", command], cwd=cwd, capture_output=True, text=True, timeout=120,
                          check=True).stdout


def check_banner_commands(banner: Banner, port: int, elsewhere: Path) -> None:
    assert banner.labels == list(LABELS)
    assert banner.value("API") == f"http://127.0.0.1:{port}/api/v1"
    assert f"@127.0.0.1:{port}/webdav/4817/1754/" in banner.value("WebDAV")  # EDT_PUBLIC_URL follows EDT_PORT
    deposit = banner.command("Deposit the bundled sample export:")
    assert re.search(r" -T /\S+\.xml ", deposit), "an absolute path"
    code = run_printed(deposit + " -s -o /dev/null -w '%{http_code}'", elsewhere)
    assert code in ("201", "204"), code
    history = run_printed(banner.command("Follow the history:"), elsewhere)
    assert '"EDT_To_KOSMOS_0490856P.xml"' in history


def test_make_run_keeps_its_demo_across_restarts_and_ends_quietly(tmp_path: Path) -> None:
    data, elsewhere = tmp_path / "data", tmp_path / "elsewhere"
    elsewhere.mkdir()
    port = free_port()
    env = clean_env(EDT_DATA_DIR=str(data), EDT_BLOB_DIR=str(data / "blobs"), EDT_PORT=str(port),
                    EDT_DATABASE_URL=f"sqlite+aiosqlite:///{data}/edt.db")
    with launched("deploy.run", env, tmp_path, "first") as first:
        banner = first.banner()
        assert "embedded mode" in banner.text
        check_banner_commands(banner, port, elsewhere)
        first.stop(signal.SIGINT, group=True)  # Ctrl-C: the parse worker gets it too
    with launched("deploy.run", env, tmp_path, "second") as second:
        again = second.banner()
        for label in ("Admin token", "Site token", "WebDAV"):  # a PRONOTE client configured once keeps working
            assert again.value(label) == banner.value(label), label
        dav = urllib.parse.urlsplit(again.value("WebDAV"))
        r = httpx.request("PROPFIND", dav._replace(netloc=f"{dav.hostname}:{dav.port}").geturl(), timeout=30,
                          auth=(dav.username or "", dav.password or ""), headers={"Depth": "0"}, trust_env=False)
        assert r.status_code == 207  # the kept password still opens WebDAV
        second.stop(signal.SIGTERM, group=False)
    assert (data / "demo.json").stat().st_mode & 0o777 == 0o600


def test_make_run_distributed_sets_up_the_same_demo_and_prints_the_same_banner(tmp_path: Path) -> None:
    data, elsewhere = tmp_path / "data", tmp_path / "elsewhere"
    elsewhere.mkdir()
    port = free_port()
    with ExitStack() as stack:
        database_url = stack.enter_context(postgres_database())
        broker_url = stack.enter_context(rabbit_vhost())
        env = clean_env(EDT_DATA_DIR=str(data), EDT_PORT=str(port), EDT_SERVICE_BASE_PORT="0",
                        EDT_DATABASE_URL=database_url, EDT_BROKER_URL=broker_url, EDT_START_TIMEOUT="120",
                        EDT_RABBITMQ_MANAGEMENT_URL=MANAGEMENT_URL)
        running = stack.enter_context(launched("deploy.distributed", env, tmp_path, "distributed"))
        banner = running.banner(within=300)
        assert "distributed mode" in banner.text
        check_banner_commands(banner, port, elsewhere)
        assert "notifier" in banner.text.split("Processes", 1)[1]  # then where each process is
        running.stop(signal.SIGTERM, group=False)
