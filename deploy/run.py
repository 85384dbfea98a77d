"""`make run`: embedded mode on EDT_HOST:EDT_PORT with a ready-to-use demo site.

Creates (once) a demo site with one establishment, integrates the bundled sample export through a
manual import (deposit accounts exist only after a site's first import, seed 001), creates a deposit
account, and prints the WebDAV URL with credentials, the tokens and a curl line that deposits the sample.
"""

from __future__ import annotations

import asyncio
import secrets
import sys
from pathlib import Path

import httpx
import uvicorn

from deploy.embedded import create_embedded_app
from deploy.migrate import upgrade
from shared.observability import setup_logging, setup_tracing
from shared.settings import Settings

# The first (manual) import integrates one export; the curl line deposits its follow-up, in which
# 10 % of the courses changed (both made by `python -m tests.factory school --size XS --seed 1 --year 2026`).
FIRST_IMPORT = Path(__file__).parent / "sample" / "first_import_0490856P.xml"
SAMPLE = Path(__file__).parent / "sample" / "EDT_To_KOSMOS_0490856P.xml"
DEMO_SITE, DEMO_EST, DEMO_UAI = "4817", "1754", "0490856P"


def persistent_secret(settings: Settings, name: str) -> str:
    """A generated secret kept in the data dir so that tokens survive a restart."""
    path = settings.data_dir / name
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(24)
    path.write_text(value)
    path.chmod(0o600)
    return value


async def bootstrap(base: str, settings: Settings) -> str:
    headers = {"Authorization": f"Bearer {settings.admin_token}"}
    async with httpx.AsyncClient(base_url=f"{base}/api/v1", headers=headers, timeout=60) as api:
        if (await api.get(f"/sites/{DEMO_SITE}")).status_code == 404:
            r = await api.post("/sites", json={"id": DEMO_SITE, "name": "Cité scolaire de démonstration"})
            r.raise_for_status()
            (await api.put(f"/sites/{DEMO_SITE}/establishments/{DEMO_EST}",
                           json={"uai": DEMO_UAI, "name": "Collège de démonstration"})).raise_for_status()
        site = (await api.get(f"/sites/{DEMO_SITE}")).json()
        if not site["first_import_at"]:
            r = await api.post(f"/sites/{DEMO_SITE}/establishments/{DEMO_EST}/imports",
                               files={"file": (FIRST_IMPORT.name, FIRST_IMPORT.read_bytes(), "application/xml")},
                               data={"mode": "manual"})
            r.raise_for_status()
            import_id = r.json()["import_id"]
            for _ in range(600):
                status = (await api.get(f"/imports/{import_id}")).json()["status"]
                if status in ("done", "rejected", "failed", "blocked"):
                    break
                await asyncio.sleep(0.2)
            for _ in range(50):  # the dropzone learns of the first import from the lifecycle event
                if (await api.get(f"/sites/{DEMO_SITE}")).json()["first_import_at"]:
                    break
                await asyncio.sleep(0.1)
        accounts = (await api.get(f"/sites/{DEMO_SITE}/accounts")).json()["items"]
        if accounts:
            account = (await api.post(f"/sites/{DEMO_SITE}/accounts/{accounts[0]['login']}/password")).json()
        else:
            r = await api.post(f"/sites/{DEMO_SITE}/accounts",
                               json={"first_name": "Admin", "last_name": "Demo", "notify": True})
            r.raise_for_status()
            account = r.json()
        token = (await api.post(f"/sites/{DEMO_SITE}/tokens")).json()["token"]
    login, password = account["login"], account["password"]
    host = base.split("://", 1)[1]
    dav = f"{base}/webdav/{DEMO_SITE}/{DEMO_EST}/"
    sample = SAMPLE.relative_to(Path.cwd()) if SAMPLE.is_relative_to(Path.cwd()) else SAMPLE
    return "\n".join([
        "",
        "edt-import is running (embedded mode: SQLite + in-process bus)",
        f"  Console        {base}/console/    (sign in with the site token, or the admin token for ops)",
        f"  API            {base}/api/v1      (OpenAPI: {base}/docs)",
        f"  Admin token    {settings.admin_token}",
        f"  Site token     {token}   (site {DEMO_SITE} only)",
        f"  WebDAV         http://{login}:{password}@{host}/webdav/{DEMO_SITE}/{DEMO_EST}/",
        f"                 (all establishments: http://{login}:{password}@{host}/webdav/{DEMO_SITE}/)",
        "  Deposit the bundled sample export:",
        f"    curl -u {login}:{password} -T {sample} {dav}",
        "  Follow the history:",
        f"    curl -H 'Authorization: Bearer {token}' {base}/api/v1/sites/{DEMO_SITE}/imports",
        "",
    ])


async def main() -> None:
    settings = Settings()
    setup_logging("edt-import", level=settings.log_level, log_format=settings.log_format)
    setup_tracing("edt-import", settings.tracing_exporter)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if not settings.admin_token:
        settings.admin_token = persistent_secret(settings, "admin_token")
    if not settings.secret_key:
        settings.secret_key = persistent_secret(settings, "secret_key")
    await asyncio.to_thread(upgrade, settings.database_url)
    app = create_embedded_app(settings)
    server = uvicorn.Server(uvicorn.Config(app, host=settings.host, port=settings.port, log_level="warning"))
    serving = asyncio.create_task(server.serve())
    while not server.started:
        if serving.done():
            serving.result()
            return
        await asyncio.sleep(0.05)
    base = f"http://{settings.host}:{settings.port}"
    try:
        print(await bootstrap(base, settings), flush=True)
    except Exception as exc:  # noqa: BLE001 - the server is still useful without the demo
        print(f"demo bootstrap failed: {exc!r}", file=sys.stderr, flush=True)
    await serving


if __name__ == "__main__":
    asyncio.run(main())
