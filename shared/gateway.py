"""The product at one base URL, in both run modes: readiness of the whole, the whole API document and its
documentation pages (Swagger UI, ReDoc) served with their assets from the installed packages.

Every service's app includes this router. A process that knows the services' addresses
(`EDT_SERVICE_URLS`, distributed mode: the notifier, to which the proxy sends `/healthz`, `/readyz`,
`/openapi.json`, `/docs` and `/redoc`) answers for all of them: readiness is green only when every
instance of every service is ready (each checks its database and the broker), and `/openapi.json` is the
merge of every service's own document — the same document as the embedded all-in-one's. Without
addresses (embedded mode, or any one service asked directly) the process answers for itself, which in
embedded mode is the whole product.

The assets (swagger-ui-bundle.js, swagger-ui.css, redoc.standalone.js) ship inside the `fastapi-offline`
wheel: nothing is fetched from a CDN, so the pages work on a school network without internet.
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Awaitable, Callable
from importlib import resources
from pathlib import Path
from typing import Any

import httpx
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from shared.settings import Settings

ASSETS_URL = "/docs/assets"
LOCAL_HEADER = "X-Edt-Local"  # a gateway asking a peer for its own document (never a merge of merges)
DOCUMENT_TTL_S = 30.0
PROBE_TIMEOUT_S = 3.0


def assets_dir() -> Path:
    return Path(str(resources.files("fastapi_offline") / "static"))


class InstanceHealth(BaseModel):
    url: str
    status: str = Field(description="ready | not ready | unreachable")


class ServiceHealth(BaseModel):
    status: str
    instances: list[InstanceHealth]


class ProductHealth(BaseModel):
    """The whole product: green only when every service (every instance of it) is."""

    status: str = Field(description="ok / ready, or not ready")
    services: dict[str, ServiceHealth]
    broker: str | None = Field(default=None, description="ok | down (readiness only)")
    database: str | None = Field(default=None, description="ok | down (readiness only)")


def merge_documents(documents: list[dict[str, Any]]) -> dict[str, Any]:
    """One OpenAPI document from the services' own (in the embedded app's order: each service's paths in
    turn, the operations of a path shared by two services together, the components of all)."""
    if not documents:
        raise ValueError("no document to merge")
    merged = copy.deepcopy({k: v for k, v in documents[0].items() if k not in ("paths", "components")})
    paths: dict[str, Any] = {}
    components: dict[str, dict[str, Any]] = {}
    for doc in documents:
        for path, item in doc.get("paths", {}).items():
            paths.setdefault(path, {}).update(copy.deepcopy(item))
        for section, entries in doc.get("components", {}).items():
            target = components.setdefault(section, {})
            for name, value in entries.items():
                if name in target and target[name] != value:
                    raise ValueError(f"two services define {section} {name!r} differently")
                target[name] = copy.deepcopy(value)
    merged["paths"] = paths
    merged["components"] = {section: dict(sorted(entries.items())) for section, entries in components.items()}
    return merged


def normalised(document: dict[str, Any]) -> dict[str, Any]:
    """A document with its components sorted by name (FastAPI sorts them too), for the merge to equal it."""
    out = dict(document)
    if "components" in out:
        out["components"] = {s: dict(sorted(e.items())) for s, e in out["components"].items()}
    return out


class Gateway:
    """The product-level answers of one process (see the module docstring)."""

    def __init__(self, settings: Settings, local_ready: Callable[[], Awaitable[dict[str, bool]]],
                 local_document: Callable[[], dict[str, Any]], services: list[str]) -> None:
        self.settings = settings
        self.local_ready = local_ready
        self.local_document = local_document
        self.services = services  # the services this process runs (embedded: all of them)
        self._document: tuple[float, dict[str, Any]] | None = None
        self._lock = asyncio.Lock()
        self._client: httpx.AsyncClient | None = None

    def client(self) -> httpx.AsyncClient:
        """One client for every probe (a client per request would build a TLS context each time: ~40 ms of
        CPU on every health check)."""
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=PROBE_TIMEOUT_S, trust_env=False)
        return self._client

    @property
    def peers(self) -> dict[str, list[str]]:
        return {name: [u.rstrip("/") for u in urls] for name, urls in self.settings.service_urls.items() if urls}

    async def _probe(self, client: httpx.AsyncClient, url: str, path: str) -> str:
        try:
            r = await client.get(f"{url}{path}")
        except httpx.HTTPError:
            return "unreachable"
        return "ready" if r.status_code == 200 else "not ready"

    async def health(self, path: str) -> ProductHealth:
        """`path` /healthz (alive) or /readyz (ready: database and broker)."""
        checks = await self.local_ready() if path == "/readyz" else {}
        local_ok = all(checks.values())
        services: dict[str, ServiceHealth] = {}
        if self.peers:
            client = self.client()
            for name, urls in self.peers.items():
                found = await asyncio.gather(*(self._probe(client, u, path) for u in urls))
                services[name] = ServiceHealth(
                    status="ready" if all(f == "ready" for f in found) else "not ready",
                    instances=[InstanceHealth(url=u, status=f) for u, f in zip(urls, found, strict=True)])
        else:
            own = "ready" if local_ok else "not ready"
            services = {name: ServiceHealth(status=own, instances=[InstanceHealth(url="(this process)", status=own)])
                        for name in self.services}
        green = local_ok and all(s.status == "ready" for s in services.values())
        word = ("ready" if green else "not ready") if path == "/readyz" else ("ok" if green else "not ready")
        return ProductHealth(status=word, services=services,
                             broker=("ok" if checks.get("broker") else "down") if checks else None,
                             database=("ok" if checks.get("database") else "down") if checks else None)

    async def document(self, local_only: bool) -> dict[str, Any]:
        """The OpenAPI document: this process's own, or (as the gateway) the merge of every service's."""
        if local_only or not self.peers:
            return normalised(self.local_document())
        async with self._lock:
            if self._document is not None and time.monotonic() - self._document[0] < DOCUMENT_TTL_S:
                return self._document[1]
            documents = []
            client = self.client()
            for name, urls in self.peers.items():
                try:
                    r = await client.get(f"{urls[0]}/openapi.json", headers={LOCAL_HEADER: "1"})
                    r.raise_for_status()
                except httpx.HTTPError as exc:
                    raise DocumentIncomplete(name, exc) from exc
                documents.append(r.json())
            merged = merge_documents(documents)
            self._document = (time.monotonic(), merged)
            return merged


class DocumentIncomplete(Exception):
    def __init__(self, service: str, exc: BaseException) -> None:
        super().__init__(f"the API document of {service} is unavailable ({exc.__class__.__name__})")
        self.service = service


def gateway_router(gateway: Gateway, title: str) -> APIRouter:
    router = APIRouter()
    responses: dict[int | str, dict[str, Any]] = {503: {"model": ProductHealth, "description": "Not ready"}}

    @router.get("/ops/healthz", response_model=ProductHealth, response_model_exclude_none=True,
                summary="Liveness of the whole product (every service)", responses=responses)
    async def product_healthz(response: Response) -> ProductHealth:
        """`GET /healthz` at the base URL: every service answers."""
        health = await gateway.health("/healthz")
        response.status_code = 200 if health.status == "ok" else 503
        return health

    @router.get("/ops/readyz", response_model=ProductHealth, response_model_exclude_none=True,
                summary="Readiness of the whole product (every service, its database, the broker)",
                responses=responses)
    async def product_readyz(response: Response) -> ProductHealth:
        """`GET /readyz` at the base URL: every service is ready (its database and the broker answer)."""
        health = await gateway.health("/readyz")
        response.status_code = 200 if health.status == "ready" else 503
        return health

    @router.get("/openapi.json", include_in_schema=False,
                responses={200: {"description": "The OpenAPI document", "content": {"application/json": {}}}})
    async def openapi(request: Request) -> JSONResponse:
        try:
            document = await gateway.document(local_only=request.headers.get(LOCAL_HEADER) == "1")
        except DocumentIncomplete as exc:
            return JSONResponse({"type": "https://edt-import/problems/document_incomplete", "title":
                                 "Service Unavailable", "status": 503, "detail": str(exc), "code":
                                 "document_incomplete", "service": exc.service}, status_code=503,
                                media_type="application/problem+json")
        return JSONResponse(document)

    @router.get("/docs", include_in_schema=False, response_class=HTMLResponse,
                responses={200: {"description": "Swagger UI", "content": {"text/html": {}}}})
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{title} — Swagger UI",
                                   swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
                                   swagger_favicon_url=f"{ASSETS_URL}/favicon.png",
                                   # no validator badge: it would load an image from swagger.io
                                   swagger_ui_parameters={"validatorUrl": None})

    @router.get("/redoc", include_in_schema=False, response_class=HTMLResponse,
                responses={200: {"description": "ReDoc", "content": {"text/html": {}}}})
    async def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url="/openapi.json", title=f"{title} — ReDoc",
                              redoc_js_url=f"{ASSETS_URL}/redoc.standalone.js",
                              redoc_favicon_url=f"{ASSETS_URL}/favicon.png", with_google_fonts=False)

    return router


def install_gateway(app: FastAPI, gateway: Gateway) -> None:
    app.include_router(gateway_router(gateway, app.title))
    app.mount(ASSETS_URL, StaticFiles(directory=assets_dir()), name="docs-assets")
