"""Issue 2's end-to-end scenario, the same in both run modes: real WebDAV clients deposit files, and
through the REST API only we watch each import go received → … → done, and a second deposit for the
same establishment wait behind the first with queue position 1.

- distributed: six service processes on RabbitMQ + PostgreSQL behind nginx (tests/e2e/conftest.py);
  the validation stage is held by stopping its process (SIGSTOP) — a real stalled consumer.
- embedded: one process, SQLite and the in-process bus; the validation consumer is paused.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.harness import Api, curl_put, sample_xml

SITE, EST, UAI = "4817", "1754", "0490856P"
PIPELINE_STATUSES = ["waiting", "received", "validating", "checking_thresholds", "creating_groups",
                     "generating_sessions", "done"]


@dataclass
class Target:
    mode: str
    api: Api
    hold_validation: Callable[[], Any]  # context manager factory

    @property
    def base_url(self) -> str:
        return self.api.base_url


@pytest.fixture(params=["embedded", "distributed"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Target]:
    if request.param == "distributed":
        env = request.getfixturevalue("cluster")
        cluster = env.cluster

        @contextmanager
        def hold() -> Iterator[None]:
            pids = [cluster.pids[name] for name in cluster.names("validator")]
            for pid in pids:
                os.kill(pid, signal.SIGSTOP)
            try:
                yield
            finally:
                for pid in pids:
                    os.kill(pid, signal.SIGCONT)

        yield Target("distributed", Api(env.base_url, env.admin_token), hold)
        return
    from tests.harness import database
    from tests.integration.conftest import start_stack

    with database("sqlite", tmp_path) as url:
        stacks = start_stack(tmp_path, url)
        stack = next(stacks)

        @contextmanager
        def hold_embedded() -> Iterator[None]:
            stack.pause("edt.validate")
            try:
                yield
            finally:
                stack.resume("edt.validate")

        yield Target("embedded", stack.api, hold_embedded)
        stacks.close()


def rclone_copy(base: str, user: str, password: str, src: Path, dest_dir: str) -> None:
    obscured = subprocess.run(["rclone", "obscure", password], capture_output=True, text=True, check=True).stdout
    env = {**os.environ, "RCLONE_CONFIG_EDT_TYPE": "webdav", "RCLONE_CONFIG_EDT_URL": base,
           "RCLONE_CONFIG_EDT_VENDOR": "other", "RCLONE_CONFIG_EDT_USER": user,
           "RCLONE_CONFIG_EDT_PASS": obscured.strip()}
    subprocess.run(["rclone", "copyto", str(src), f"edt:{dest_dir}/{src.name}", "--retries", "1"],
                   env=env, capture_output=True, text=True, timeout=120, check=True)


def new_import(api: Api, known: set[str]) -> dict[str, Any]:
    """The import a deposit just answered made: listed in the history before the answer (read-your-writes)."""
    fresh = [i for i in api.history(SITE) if i["id"] not in known]
    assert len(fresh) == 1, f"expected exactly one new import in the history, found {len(fresh)}"
    known.add(fresh[0]["id"])
    return fresh[0]


def replayed_statuses(api: Api, import_id: str) -> list[str]:
    with api.client() as c:
        r = c.get(f"/api/v1/imports/{import_id}/events", params={"once": "true"})
    statuses = [json.loads(line[5:])["status"] for line in r.text.splitlines() if line.startswith("data:")]
    return [s for i, s in enumerate(statuses) if i == 0 or statuses[i - 1] != s]


def test_webdav_deposit_to_done_and_queue_position(target: Target, tmp_path: Path) -> None:
    api = target.api
    api.create_site(SITE, {EST: UAI, "4817": "0490857R"}, "Cité scolaire")
    api.first_import(SITE, EST, sample_xml(UAI, marker="first"))
    account = api.create_account(SITE, "Thibault", "Bourgeois")
    login, password = account["login"], account["password"]
    known = {i["id"] for i in api.history(SITE)}

    deposit = tmp_path / "EDT_To_KOSMOS_0490856P.xml"
    deposit.write_bytes(sample_xml(UAI, marker="webdav-1"))
    started = time.monotonic()
    put = curl_put(f"{target.base_url}/webdav/{SITE}/{EST}/", login, password, deposit)
    assert put.status == 201
    first = new_import(api, known)
    assert put.import_id == first["id"]  # X-Import-Id names it
    done = api.wait(first["id"])
    elapsed = time.monotonic() - started
    print(f"\n[{target.mode}] one WebDAV deposit → done: {elapsed * 1000:.0f} ms")
    assert done["status"] == "done" and done["mode"] == "auto" and done["source"] == "webdav"
    assert done["file"]["name"] == deposit.name
    assert all(s["started_at"] and s["ended_at"] for s in done["steps"]), done["steps"]
    assert replayed_statuses(api, first["id"]) == PIPELINE_STATUSES

    a, b = tmp_path / "a" / "EDT_2014_1.xml", tmp_path / "b" / "EDT_2014_2.xml"
    for path, marker in ((a, "a"), (b, "b")):
        path.parent.mkdir()
        path.write_bytes(sample_xml(UAI, marker=marker))
    with target.hold_validation():
        assert curl_put(f"{target.base_url}/webdav/{SITE}/{EST}/", login, password, a).status == 201
        running = new_import(api, known)
        assert api.wait(running["id"], {"received"})["queue_position"] is None
        rclone_copy(f"{target.base_url}/webdav/", login, password, b, f"{SITE}/{EST}")
        second = new_import(api, known)
        waiting = api.wait(second["id"], {"waiting"})
        assert waiting["queue_position"] == 1 and waiting["file"]["name"] == b.name
    first_done, second_done = api.wait(running["id"]), api.wait(second["id"])
    assert first_done["status"] == second_done["status"] == "done"
    assert second_done["started_at"] >= first_done["ended_at"]
