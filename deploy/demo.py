"""The demo site both run modes set up and the banner they print (`make run`, `make run-distributed`).

Creates (once) a demo site with one establishment, integrates the bundled sample export through a manual
import (deposit accounts exist only after a site's first import, seed 001), and keeps a site token and a
deposit account in `<EDT_DATA_DIR>/demo.json` (mode 0600) so that a timetable client configured after the
first start keeps working after a restart: each start checks them (the token still answers, the password
still opens WebDAV) and renews only what no longer works. Everything goes through the public API at the
base URL, so the same code serves both modes.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

# The first (manual) import integrates one export; the curl line deposits its follow-up, in which
# 10 % of the courses changed (both made by `python -m tests.factory school --size XS --seed 1 --year 2026`).
SAMPLE_DIR = Path(__file__).resolve().parent / "sample"
FIRST_IMPORT = SAMPLE_DIR / "first_import_0490856P.xml"
SAMPLE = SAMPLE_DIR / "EDT_To_KOSMOS_0490856P.xml"
DEMO_SITE, DEMO_EST, DEMO_UAI = "4817", "1754", "0490856P"
DEMO_FILE = "demo.json"
MODES = {"embedded": "embedded mode: SQLite + in-process bus",
         "distributed": "distributed mode: six services on RabbitMQ + PostgreSQL behind nginx"}


def persistent_secret(data_dir: Path, name: str, make: Callable[[], str] = lambda: secrets.token_urlsafe(24)) -> str:
    """A generated secret kept in the data dir (mode 0600) so that tokens (and sealed blobs) survive a
    restart."""
    path = data_dir / name
    if path.exists():
        value = path.read_text().strip()
        if value:
            return value
    path.parent.mkdir(parents=True, exist_ok=True)
    value = make()
    _write_private(path, value)
    return value


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_text(text)


@dataclass
class DemoCredentials:
    token: str
    token_id: str
    login: str
    password: str


def load_credentials(data_dir: Path) -> DemoCredentials | None:
    try:
        return DemoCredentials(**json.loads((data_dir / DEMO_FILE).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def save_credentials(data_dir: Path, creds: DemoCredentials) -> None:
    _write_private(data_dir / DEMO_FILE, json.dumps(asdict(creds), indent=1) + "\n")


async def _first_import(api: httpx.AsyncClient) -> None:
    r = await api.post(f"/sites/{DEMO_SITE}/establishments/{DEMO_EST}/imports",
                       files={"file": (FIRST_IMPORT.name, FIRST_IMPORT.read_bytes(), "application/xml")},
                       data={"mode": "manual"})
    r.raise_for_status()
    import_id = r.json()["import_id"]
    for _ in range(600):
        status = (await api.get(f"/imports/{import_id}")).json()["status"]
        if status in ("done", "rejected", "failed", "blocked", "cancelled"):
            break
        await asyncio.sleep(0.2)
    for _ in range(50):  # the dropzone learns of the first import from the lifecycle event
        if (await api.get(f"/sites/{DEMO_SITE}")).json()["first_import_at"]:
            break
        await asyncio.sleep(0.1)


async def _token_works(base: str, token: str) -> bool:
    async with httpx.AsyncClient(base_url=f"{base}/api/v1", timeout=30, trust_env=False,
                                 headers={"Authorization": f"Bearer {token}"}) as client:
        return (await client.get(f"/sites/{DEMO_SITE}")).status_code == 200


async def _password_works(base: str, login: str, password: str) -> bool:
    async with httpx.AsyncClient(timeout=30, trust_env=False) as client:
        r = await client.request("PROPFIND", f"{base}/webdav/{DEMO_SITE}/", auth=(login, password),
                                 headers={"Depth": "0"})
        return r.status_code == 207


async def demo_credentials(base: str, admin_token: str, data_dir: Path) -> DemoCredentials:
    """The demo site (created and imported once) and its kept site token and deposit account."""
    headers = {"Authorization": f"Bearer {admin_token}"}
    async with httpx.AsyncClient(base_url=f"{base}/api/v1", headers=headers, timeout=60, trust_env=False) as api:
        if (await api.get(f"/sites/{DEMO_SITE}")).status_code == 404:
            r = await api.post("/sites", json={"id": DEMO_SITE, "name": "Cité scolaire de démonstration"})
            r.raise_for_status()
            (await api.put(f"/sites/{DEMO_SITE}/establishments/{DEMO_EST}",
                           json={"uai": DEMO_UAI, "name": "Collège de démonstration"})).raise_for_status()
        if not (await api.get(f"/sites/{DEMO_SITE}")).json()["first_import_at"]:
            await _first_import(api)
        kept = load_credentials(data_dir)
        token, token_id = (kept.token, kept.token_id) if kept else ("", "")
        if not token or not await _token_works(base, token):
            r = await api.post(f"/sites/{DEMO_SITE}/tokens", json={"label": "démonstration (make run)"})
            r.raise_for_status()
            token, token_id = r.json()["token"], r.json()["id"]
        logins = {a["login"] for a in (await api.get(f"/sites/{DEMO_SITE}/accounts")).json()["items"]}
        login, password = (kept.login, kept.password) if kept and kept.login in logins else ("", "")
        if login and not await _password_works(base, login, password):
            r = await api.post(f"/sites/{DEMO_SITE}/accounts/{login}/password")
            r.raise_for_status()
            password = r.json()["password"]
        if not login:
            r = await api.post(f"/sites/{DEMO_SITE}/accounts",
                               json={"first_name": "Admin", "last_name": "Demo", "notify": True})
            r.raise_for_status()
            login, password = r.json()["login"], r.json()["password"]
    creds = DemoCredentials(token, token_id, login, password)
    save_credentials(data_dir, creds)
    return creds


def banner(base: str, admin_token: str, creds: DemoCredentials, mode: str, extra: list[str] | None = None) -> str:
    """What both modes print once they serve: where everything is, and commands that work from any
    directory (absolute paths)."""
    host = base.split("://", 1)[1]
    dav = f"{base}/webdav/{DEMO_SITE}/{DEMO_EST}/"
    login, password, token = creds.login, creds.password, creds.token
    lines = [
        "",
        f"edt-import is running ({MODES[mode]})",
        f"  Console        {base}/console/    (sign in with the site token, or the admin token for ops)",
        f"  API            {base}/api/v1      (OpenAPI: {base}/docs)",
        f"  Admin token    {admin_token}",
        f"  Site token     {token}   (site {DEMO_SITE} only)",
        f"  WebDAV         http://{login}:{password}@{host}/webdav/{DEMO_SITE}/{DEMO_EST}/",
        f"                 (all establishments: http://{login}:{password}@{host}/webdav/{DEMO_SITE}/)",
        "  Deposit the bundled sample export:",
        f"    curl -u {login}:{password} -T {SAMPLE} {dav}",
        "  Follow the history:",
        f"    curl -H 'Authorization: Bearer {token}' {base}/api/v1/sites/{DEMO_SITE}/imports",
        "  Change events (Server-Sent Events):",
        f"    curl -N -H 'Authorization: Bearer {token}' {base}/api/v1/sites/{DEMO_SITE}/changes",
        *(extra or []),
        "",
    ]
    return "\n".join(lines)


async def demo_banner(api_base: str, public_base: str, admin_token: str, data_dir: Path, mode: str,
                      extra: list[str] | None = None) -> str:
    """Set the demo up through `api_base` (where this machine reaches the server) and print what clients
    use, at `public_base` (EDT_PUBLIC_URL)."""
    creds = await demo_credentials(api_base, admin_token, data_dir)
    return banner(public_base, admin_token, creds, mode, extra)
