"""`make run`: embedded mode on EDT_HOST:EDT_PORT with a ready-to-use demo site (deploy/demo.py).

Ctrl-C and SIGTERM stop the server gracefully and end the process quietly (exit status 0, no traceback):
our own handlers stay installed, so that uvicorn, which re-raises the signal it caught once it has shut
down, hands it back to them instead of to Python's default KeyboardInterrupt.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from types import FrameType

import uvicorn

from deploy.demo import demo_banner, persistent_secret
from deploy.embedded import create_embedded_app
from deploy.migrate import upgrade
from shared.blobs import generate_key
from shared.observability import setup_logging, setup_tracing
from shared.settings import Settings


def _quiet(_signum: int, _frame: FrameType | None) -> None:
    """A stop signal that reaches us after uvicorn's own handling: already dealt with."""


async def main() -> None:
    settings = Settings()
    setup_logging("edt-import", level=settings.log_level, log_format=settings.log_format)
    setup_tracing("edt-import", settings.tracing_exporter)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if not settings.admin_token:
        settings.admin_token = persistent_secret(settings.data_dir, "admin_token")
    if not settings.secret_key:
        settings.secret_key = persistent_secret(settings.data_dir, "secret_key")
    if not settings.blob_key:  # encryption at rest of the blobs and the WebDAV folder (docs/privacy.md)
        settings.blob_key = persistent_secret(settings.data_dir, "blob_key", generate_key)
    await asyncio.to_thread(upgrade, settings.database_url)
    app = create_embedded_app(settings)
    server = uvicorn.Server(uvicorn.Config(app, host=settings.host, port=settings.port, log_level="warning",
                                           timeout_graceful_shutdown=5))
    serving = asyncio.create_task(server.serve())
    while not server.started:
        if serving.done():
            serving.result()
            return
        await asyncio.sleep(0.05)
    try:
        host = "127.0.0.1" if settings.host in ("", "0.0.0.0", "::") else settings.host
        local = f"http://{f'[{host}]' if ':' in host else host}:{settings.port}"
        print(await demo_banner(local, settings.public_url.rstrip("/"), settings.admin_token, settings.data_dir,
                                "embedded"), flush=True)
    except Exception as exc:  # noqa: BLE001 - the server is still useful without the demo
        print(f"demo bootstrap failed: {exc!r}", file=sys.stderr, flush=True)
    await serving


def run() -> int:
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _quiet)
    try:
        asyncio.run(main())
    except KeyboardInterrupt:  # a second Ctrl-C during the shutdown
        pass
    return 0


if __name__ == "__main__":
    sys.exit(run())
