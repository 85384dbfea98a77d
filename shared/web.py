"""The HTTP edge common to every service's api.py: problem+json errors (raised, rendered and declared in
the OpenAPI), bearer tokens, list pages and cursors, and the app every service is served by.

Site tokens are signed (HMAC with EDT_SECRET_KEY) so that each service checks them on its own,
without reading the dropzone's tables (design.md §2: no service reads another's tables). The route
dependencies built on them (CurrentPrincipal, SitePrincipal…) are in shared/deps.py.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import inspect
import re
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Generic, TypeVar
from urllib.parse import parse_qsl

import sqlalchemy as sa
from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from fastapi.routing import RouteContext, iter_route_contexts
from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path

from shared.blobs import BlobStore, Keyring, tune_gc
from shared.bus import Bus, make_bus
from shared.db import Database, as_utc, is_sqlite_url, upsert
from shared.establishments import KnownEstablishments
from shared.gateway import Gateway, install_gateway
from shared.messages import AccessRecorded, TokenRevocationAck, TokenRevoked
from shared.observability import HTTP_REQUESTS, method_label, ops_router, setup_logging, setup_tracing
from shared.outbox import AcknowledgedCopy, OutboxUnitOfWork
from shared.settings import Settings

PROBLEM_JSON = "application/problem+json"


class Problem(Exception):
    """An RFC 9457 problem: raised anywhere in a route, rendered as application/problem+json."""

    def __init__(self, status: int, title: str, detail: str | None = None, *, code: str | None = None,
                 **extra: Any) -> None:
        super().__init__(detail or title)
        self.status = status
        self.title = title
        self.detail = detail
        self.code = code
        self.extra = extra

    def body(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"type": f"https://edt-import/problems/{self.code or self.status}",
                                "title": self.title, "status": self.status}
        if self.detail:
            body["detail"] = self.detail
        if instance:
            body["instance"] = instance
        if self.code:
            body["code"] = self.code
        body.update(self.extra)
        return body


def not_found(what: str = "Resource") -> Problem:
    return Problem(404, "Not Found", f"{what} not found", code="not_found")


def problem_response(problem: Problem, request: Request | None = None,
                     headers: Mapping[str, str] | None = None) -> JSONResponse:
    headers = dict(headers or {})
    if problem.status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse(problem.body(str(request.url.path) if request else None), status_code=problem.status,
                        media_type=PROBLEM_JSON, headers=headers or None)


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(exc, request)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(exc.headers or {})
        if exc.status_code == 405:  # RFC 9110 §15.5.6: every method of the path, not only one route's
            headers["Allow"] = ", ".join(allowed_methods(request.app, request.scope))
        return problem_response(Problem(exc.status_code, str(exc.detail)), request, headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")} for e in exc.errors()]
        return problem_response(Problem(422, "Unprocessable Content", "Request validation failed",
                                        code="validation_error", errors=errors), request)


def api_routes(app: FastAPI) -> Iterator[RouteContext]:
    """Every route of the app with its full path, through the included routers."""
    yield from iter_route_contexts(app.routes)


def allowed_methods(app: FastAPI, scope: Any) -> list[str]:
    """The methods the routes of this path answer (each route of a path serves one method)."""
    methods: set[str] = set()
    for route in api_routes(app):
        if route.path and route.methods and compile_path(route.path)[0].match(scope["path"]):
            methods |= route.methods
    return sorted(methods)


class ValidationIssue(BaseModel):
    """One invalid field of a request: where (`loc`: body, query or path, then the field's path), what."""

    model_config = ConfigDict(extra="allow")  # uploads add `line` (CSV), checks may add context
    loc: list[str | int]
    msg: str
    type: str


class ProblemDetails(BaseModel):
    """An error, as every route answers it (RFC 9457, `application/problem+json`)."""

    model_config = ConfigDict(extra="allow")  # problem types carry their own members, e.g. `detail_en`
    type: str = Field(examples=["https://edt-import/problems/not_found"])
    title: str
    status: int = Field(ge=400, le=599)
    detail: str | None = None
    instance: str | None = None
    code: str | None = Field(default=None, description="Stable machine-readable cause, e.g. `validation_error`")
    errors: list[ValidationIssue] | None = Field(default=None, description="Each invalid field (422)")


PROBLEM_DESCRIPTIONS = {
    400: "Malformed request (unreadable body, invalid cursor or parameter)",
    401: "Missing or invalid bearer token",
    403: "The admin token is required",
    404: "Not found, or another site's (cross-site access is 404)",
    409: "Conflict with the resource's current state",
    410: "Gone",
    413: "Request body too large",
    415: "Unsupported media type",
    422: "Request validation failed: `errors` names each field",
    423: "Locked while an import of the site or establishment runs",
    502: "A service answered the request with an error",
    504: "A service did not answer in time (its part is carried out when it is back)",
    507: "Insufficient storage: the deposit was not recorded (nothing kept); deposit again once room is made",
}


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` of a route: each error status it may answer, as a ProblemDetails. The OpenAPI serves
    them as application/problem+json (see `problem_openapi`)."""
    out: dict[int | str, dict[str, Any]] = {}
    for status in sorted(set(statuses)):
        entry: dict[str, Any] = {"model": ProblemDetails, "description": PROBLEM_DESCRIPTIONS[status]}
        if status == 401:
            entry["headers"] = {"WWW-Authenticate": {"description": "`Bearer`", "schema": {"type": "string"}}}
        out[status] = entry
    return out


# One Server-Sent Event (OpenAPI 3.1: the schema of a text/event-stream describes each event).
SSE_EVENT = {"type": "object", "required": ["event", "data"],
             "properties": {"id": {"type": "string"}, "event": {"type": "string"},
                            "data": {"type": "string", "contentMediaType": "application/json"}}}


def media(description: str, *media_types: str) -> dict[str, Any]:
    """A success response that is not JSON (CSV, iCal, zip, SSE): its media types, as text or bytes."""
    def schema(media_type: str) -> dict[str, Any]:
        if media_type == "text/event-stream":
            return SSE_EVENT
        return {"type": "string"} if media_type.startswith("text/") else {"type": "string", "format": "binary"}
    return {"description": description, "content": {m: {"schema": schema(m)} for m in media_types}}


_COMPONENTS = "x-edt-components"  # models of a hand-documented body, moved to the components


def request_body(model: type[BaseModel], description: str) -> dict[str, Any]:
    """`openapi_extra=` of a route that reads its body itself (e.g. JSON or CSV, by media type): `model`
    is the JSON one. Another media type it takes is said in `description` only, when JSON Schema cannot
    state which texts are valid (a CSV file)."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    components = {**schema.pop("$defs", {}), model.__name__: schema}
    content: dict[str, Any] = {"application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}
    return {"requestBody": {"required": True, "description": description, "content": content},
            _COMPONENTS: components}


def problem_openapi(app: FastAPI) -> dict[str, Any]:
    """The app's OpenAPI with every error response as application/problem+json — what the problem
    handlers answer — instead of the application/json FastAPI assumes for a response model."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            components.update(operation.pop(_COMPONENTS, {}))
            for response in operation.get("responses", {}).values():
                content = response.get("content") or {}
                # FastAPI files a response model under the route's own media type (JSON, CSV, SSE…).
                for media_type in [m for m, v in content.items()
                                   if v.get("schema", {}).get("$ref", "").endswith("/ProblemDetails")]:
                    content[PROBLEM_JSON] = content.pop(media_type)
    app.openapi_schema = schema
    return schema


# --- tokens -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Principal:
    admin: bool
    site: str | None = None
    token_id: str | None = None

    def can_access(self, site: str) -> bool:
        return self.admin or self.site == site


def access_event(principal: Principal, action: str, resource: str, *, service: str, site: str | None = None,
                 import_id: str | None = None) -> AccessRecorded:
    """A read of personal data by this principal, for the access log (docs/privacy.md): the admin token is
    "admin", a site token is its id (never the secret)."""
    if principal.admin:
        return AccessRecorded(actor="admin", actor_kind="admin", action=action, resource=resource, site=site,
                              import_id=import_id, service=service)
    return AccessRecorded(actor=principal.token_id or "unknown", actor_kind="site_token", action=action,
                          resource=resource, site=site, import_id=import_id, service=service)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signature(secret: str, site: str, token_id: str, expires: int | None = None) -> str:
    message = f"site:{site}:{token_id}" + (f":{expires}" if expires is not None else "")
    return _b64(hmac.new(secret.encode(), message.encode(), hashlib.sha256).digest())


def issue_site_token(secret: str, site: str, expires_at: datetime | None = None) -> tuple[str, str]:
    """A new site token and its id. Only a hash of the token is ever stored. An expiry is signed into the
    token (`edts.<site>.<id>.<epoch s>.<signature>`), so every service refuses it past that time alone."""
    token_id = secrets.token_hex(8)
    site_part = _b64(site.encode())
    if expires_at is None:
        return f"edts.{site_part}.{token_id}.{_signature(secret, site, token_id)}", token_id
    expires = int(expires_at.timestamp())
    return f"edts.{site_part}.{token_id}.{expires}.{_signature(secret, site, token_id, expires)}", token_id


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def principal_from_token(settings: Settings, token: str) -> Principal | None:
    if settings.admin_token and hmac.compare_digest(token.encode(), settings.admin_token.encode()):
        return Principal(admin=True)
    parts = token.split(".")
    if len(parts) not in (4, 5) or parts[0] != "edts" or not settings.effective_secret:
        return None
    try:
        site = _unb64(parts[1]).decode()
        expires = int(parts[3]) if len(parts) == 5 else None
    except (ValueError, UnicodeDecodeError):
        return None
    if not hmac.compare_digest(parts[-1], _signature(settings.effective_secret, site, parts[2], expires)):
        return None
    if expires is not None and expires <= datetime.now(UTC).timestamp():
        return None
    return Principal(admin=False, site=site, token_id=parts[2])


class TokenRevocations(AcknowledgedCopy):
    """One service's list of revoked site tokens (its own table, `revoked_tokens_table`): filled from the
    dropzone's TokenRevoked events (durable queue `edt.<service>.tokens`), each acknowledged once recorded,
    and read on every request carrying a site token — tokens are signed, so this list is what makes a
    revocation hold in every service, at once (the DELETE is answered after every service's ack)."""

    topic = "tokens"
    binding = "token.revoked.*"

    async def record(self, uow: OutboxUnitOfWork, body: bytes) -> None:
        event = TokenRevoked.from_bytes(body)
        await uow.conn.execute(upsert(self.db, self.table, {
            "token_id": event.token_id, "site": event.site, "revoked_at": event.at}, ["token_id"]))
        await uow.emit(TokenRevocationAck(token_id=event.token_id, by=self.service))

    async def is_revoked(self, token_id: str) -> bool:
        async with self.db.read() as conn:
            found = await conn.execute(sa.select(self.table.c.token_id).where(self.table.c.token_id == token_id))
            return found.first() is not None


def authenticate(settings: Settings, token: str | None) -> Principal:
    """The principal of a bearer token; 401 (problem+json, `WWW-Authenticate: Bearer`) without one."""
    if not token:
        raise Problem(401, "Unauthorized", "Bearer token required", code="unauthorized")
    principal = principal_from_token(settings, token.strip())
    if principal is None:
        raise Problem(401, "Unauthorized", "Invalid token", code="unauthorized")
    return principal


async def caller(settings: Settings, revocations: TokenRevocations | None, token: str | None) -> Principal:
    """The caller of a request with this bearer token; a revoked site token is refused by every service from
    the DELETE's answer on."""
    principal = authenticate(settings, token)
    if principal.token_id is not None and revocations is not None and await revocations.is_revoked(
            principal.token_id):
        raise Problem(401, "Unauthorized", "Token revoked", code="token_revoked")
    return principal


def require_site(principal: Principal, site: str) -> None:
    """Cross-site access is 404, so a site cannot even learn that another exists (design.md §5)."""
    if not principal.can_access(site):
        raise not_found("Site")


def require_admin(principal: Principal) -> None:
    if not principal.admin:
        raise Problem(403, "Forbidden", "Admin token required", code="forbidden")


# --- pagination ---------------------------------------------------------------------------------

ItemT = TypeVar("ItemT")

# An instant in a response: ISO 8601 in UTC with a Z, as `shared.messages.iso` writes it (design.md §5).
Instant = Annotated[str, WithJsonSchema({"type": "string", "format": "date-time"})]


class Page(BaseModel, Generic[ItemT]):
    """A list (design.md §5): one page of items and the cursor of the next (null on the last page)."""

    items: list[ItemT]
    next_cursor: str | None = None


# A cursor is opaque to clients but has a grammar, so that the OpenAPI can say exactly which values are
# well formed (every one of them is honoured): its values joined by ".", each a text (base64url, no
# padding), an integer, or an instant (microseconds since 1970, UTC).
_CURSOR_PARTS: dict[type, str] = {str: r"(?:[A-Za-z0-9_-]{4})*(?:[A-Za-z0-9_-]{2,3})?", int: r"[0-9]{1,18}",
                                  datetime: r"[0-9]{1,17}"}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)


def cursor_pattern(*kinds: type) -> str:
    """Empty (the first page), or the values of `kinds`."""
    return "^(" + r"\.".join(_CURSOR_PARTS[k] for k in kinds) + ")?$"


def cursor_query(*kinds: type) -> Any:
    """The `cursor` query parameter of a list whose cursors hold values of these types."""
    return Query(description="`next_cursor` of the previous page",
                 json_schema_extra={"pattern": cursor_pattern(*kinds)})


def encode_cursor(*values: str | int | datetime) -> str:
    parts = []
    for value in values:
        if isinstance(value, datetime):
            parts.append(str((as_utc(value) - _EPOCH) // _MICRO))
        elif isinstance(value, int):
            parts.append(str(value))
        else:
            parts.append(_b64(value.encode()))
    return ".".join(parts)


def invalid_cursor() -> Problem:
    return Problem(400, "Bad Request", "Invalid cursor", code="invalid_cursor")


def decode_cursor(cursor: str | None, *kinds: type) -> list[Any] | None:
    """The values `encode_cursor` wrote (of the given types), or None for the first page; 400 when the
    cursor is not well formed."""
    if not cursor:
        return None
    if not re.match(cursor_pattern(*kinds), cursor):
        raise invalid_cursor()
    values: list[Any] = []
    for part, kind in zip(cursor.split("."), kinds, strict=True):
        if kind is str:
            values.append(_unb64(part).decode("utf-8", "replace"))
        elif kind is int:
            values.append(int(part))
        else:
            values.append(_EPOCH + int(part) * _MICRO)
    return values


# --- composition plumbing (each service's main.py and the embedded all-in-one use it) ---------------

@dataclass(frozen=True)
class FastRead:
    """A GET answered before FastAPI routes it: for a history read, routing, dependency solving and the
    response classes cost more CPU than the read itself. `path` matches the whole path; `answer(caller,
    match, query)` gives the JSON body (the same function as the documented route's), or None, or raises,
    whenever it does not answer 200: the request then goes on to that route, which answers it, errors and
    all. The route keeps the OpenAPI; what a client sees is the same either way."""

    path: re.Pattern[str]
    answer: Callable[[Principal, re.Match[str], dict[str, str]], Awaitable[bytes | None]]


class FastReads:
    """The middleware answering the services' FastReads (inside RequestMetrics: they are counted)."""

    def __init__(self, app: Any, reads: list[FastRead], settings: Settings,
                 revocations: TokenRevocations | None) -> None:
        self.app, self.reads, self.settings, self.revocations = app, reads, settings, revocations

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            for read in self.reads:
                if (match := read.path.fullmatch(scope["path"])) is not None:
                    body = await self._answer(read, match, scope)
                    if body is not None:
                        await send({"type": "http.response.start", "status": 200, "headers": [
                            (b"content-length", str(len(body)).encode()), (b"content-type", b"application/json")]})
                        await send({"type": "http.response.body", "body": body})
                        return
                    break
        await self.app(scope, receive, send)

    async def _answer(self, read: FastRead, match: re.Match[str], scope: Any) -> bytes | None:
        authorization = next((v for k, v in scope["headers"] if k == b"authorization"), b"").decode("latin-1")
        scheme, _, token = authorization.partition(" ")
        query = parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
        if scheme.lower() != "bearer" or len(dict(query)) != len(query):
            return None  # no bearer token, or a parameter given twice: the route decides
        try:
            return await read.answer(await caller(self.settings, self.revocations, token), match, dict(query))
        except Exception:  # noqa: BLE001 - the route answers the same request with its own error
            return None


@dataclass
class Runtime:
    """What every service is built from: one process's settings, database, bus and blob store."""

    settings: Settings
    db: Database
    bus: Bus
    blobs: BlobStore


@dataclass
class Service:
    name: str
    router: APIRouter | None
    start: Callable[[], Awaitable[None]]
    stop: Callable[[], Awaitable[None]]
    # Extra ASGI mounts (path, app factory called at startup with the running loop), e.g. WebDAV.
    mounts: list[tuple[str, Callable[[asyncio.AbstractEventLoop], Any]]] = field(default_factory=list)
    # Routes outside /api/v1 and the OpenAPI (the console's pages).
    pages: APIRouter | None = None
    # The service's list of revoked site tokens: started with the app, checked by every route's auth.
    revocations: TokenRevocations | None = None
    # The service's list of the sites' establishments: started with the app, checked by every route under
    # /sites/{site}/establishments/{est}/ (shared.deps.KnownEstablishment).
    establishments: KnownEstablishments | None = None
    # GETs answered before the routes (FastRead): the few reads a front-end makes hundreds of times a second.
    fast_reads: list[FastRead] = field(default_factory=list)


def build_runtime(settings: Settings) -> Runtime:
    tune_gc()
    bus = make_bus(settings.broker_url, max_retries=settings.max_retries, backoff_s=settings.retry_backoff_s,
                   prefetch=settings.prefetch, management_url=settings.rabbitmq_management_url,
                   outage_wait_s=settings.outage_wait_s)
    keyring = Keyring.parse(settings.blob_key, settings.blob_keys)
    pool: dict[str, Any] = {} if is_sqlite_url(settings.database_url) else {
        "pool_size": settings.db_pool_size, "max_overflow": settings.db_pool_overflow}
    return Runtime(settings, Database(settings.database_url, **pool), bus, BlobStore(settings.blob_dir, keyring))


def create_app(runtime: Runtime, services: list[Service]) -> FastAPI:
    """One FastAPI app serving the given services' routes under /api/v1 (plus their mounts)."""

    async def checks() -> dict[str, bool]:
        """This process's readiness: its database answers and its broker connection is up."""
        try:
            async with runtime.db.read() as conn:
                await conn.exec_driver_sql("SELECT 1")
            database = True
        except Exception:  # noqa: BLE001 - readiness reports, never raises
            database = False
        return {"database": database, "broker": runtime.bus.is_ready()}

    async def ready() -> bool:
        return all((await checks()).values())

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.loop = asyncio.get_running_loop()
        await runtime.bus.start()
        for service in services:
            if service.revocations is not None:
                await service.revocations.start(runtime.bus)
            if service.establishments is not None:
                await service.establishments.start(runtime.bus)
            await service.start()
        try:
            yield
        finally:
            for service in reversed(services):
                await service.stop()
            await runtime.bus.close()
            await runtime.db.close()

    setup_tracing("edt-import")  # once per process; run_service and `make run` chose the exporter before
    # /openapi.json, /docs and /redoc are the gateway's (shared/gateway.py): offline assets, merged document.
    app = FastAPI(title="edt-import", version="1", lifespan=lifespan, openapi_url=None, docs_url=None,
                  redoc_url=None, description="Automated timetable import (EDT / PRONOTE) for ENTs",
                  **native_telemetry(runtime.settings.tracing_exporter))
    app.openapi = lambda: problem_openapi(app)  # type: ignore[method-assign]
    install_problem_handlers(app)
    app.include_router(ops_router(ready))
    app.include_router(ops_router(ready), prefix="/api/v1", include_in_schema=False)
    install_gateway(app, Gateway(runtime.settings, checks, app.openapi, [s.name for s in services]))
    for service in services:
        if service.router is not None:
            app.include_router(service.router, prefix="/api/v1", tags=[service.name])
        if service.pages is not None:
            app.include_router(service.pages, include_in_schema=False)
        for path, factory in service.mounts:
            app.mount(path, LazyMount(factory))
    app.state.runtime = runtime
    # One process checks one list: in embedded mode every service's list is in the same database and every
    # revocation is recorded in all of them before the DELETE is answered, so any one is up to date.
    app.state.revocations = next((s.revocations for s in services if s.revocations is not None), None)
    app.state.establishments = next((s.establishments for s in services if s.establishments is not None), None)
    fast_reads = [read for s in services for read in s.fast_reads]
    if fast_reads:
        app.add_middleware(FastReads, reads=fast_reads, settings=runtime.settings,
                           revocations=app.state.revocations)
    app.add_middleware(BodyLimit, max_bytes=runtime.settings.max_upload_bytes + 1024 * 1024,
                       file_cap=runtime.settings.max_upload_bytes)
    app.add_middleware(RequestMetrics)
    return app


def native_telemetry(exporter: str) -> dict[str, Any]:
    """FastAPI's own OpenTelemetry (recent versions): request spans only when spans go somewhere, and none
    of its metrics or logs (RequestMetrics counts requests for Prometheus; the logs are ours). Its spans
    cost a fifth of a history read's CPU, for nothing when no exporter is set."""
    if "telemetry" not in inspect.signature(FastAPI.__init__).parameters:
        return {}
    return {"telemetry": {"tracing": exporter != "none", "operation_spans": False, "metrics": False, "logs": False}}


class RequestMetrics:
    """edt_http_requests_total for the REST API (method, status; never the path: its ids are unbounded)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/api/"):
            await self.app(scope, receive, send)
            return
        status = 500

        async def counting_send(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        finally:
            HTTP_REQUESTS.labels(method_label(scope["method"]), str(status)).inc()


class BodyTooLarge(Exception):
    pass


def upload_too_large(max_bytes: int) -> Problem:
    mb = max_bytes / (1024 * 1024)
    return Problem(413, "Content Too Large", f"Fichier trop volumineux (plus de {mb:g} Mo).", code="too_large",
                   detail_en=f"File too large (over {mb:g} MB).", max_bytes=max_bytes)


class BodyLimit:
    """413 for an API request body over the cap, before it is read (Content-Length) or as soon as a
    chunked body goes past it: an oversized upload never fills the disk. WebDAV enforces its own cap.

    The route reading the body may answer first, with its own error for a body cut short (a multipart
    parser's 400 "error parsing the body"): past the cap, the cap's 413 replaces whatever it answers."""

    def __init__(self, app: Any, max_bytes: int, file_cap: int | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.file_cap = file_cap or max_bytes  # the size named in the answer: the file's, not the request's

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/api/"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length in (None, b"0") and b"transfer-encoding" not in headers:
            await self.app(scope, receive, send)  # no body (RFC 9112 §6.3): nothing to count
            return
        too_large = upload_too_large(self.file_cap)
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await problem_response(too_large)(scope, receive, send)
            return
        seen = 0
        started = exceeded = answered = False

        async def counting_receive() -> Any:
            nonlocal seen, exceeded
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    exceeded = True
                    raise BodyTooLarge()
            return message

        async def answer_too_large() -> None:
            nonlocal answered
            if not answered:
                answered = True
                await problem_response(too_large)(scope, receive, send)

        async def tracking_send(message: Any) -> None:
            nonlocal started
            if exceeded and not started:
                await answer_too_large()  # the route's own answer to a body it could not read is dropped
                return
            if answered:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await answer_too_large()


class LazyMount:
    """An ASGI app built on first use, inside the running event loop (WsgiDAV needs that loop)."""

    def __init__(self, factory: Callable[[asyncio.AbstractEventLoop], Any]) -> None:
        self.factory = factory
        self.app: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self.app is None:
            self.app = self.factory(asyncio.get_running_loop())
        await self.app(scope, receive, send)


UPSTREAM_KEEPALIVE_S = 75


def run_service(name: str, build: Callable[[Runtime], Service]) -> None:
    """Entry point of one service process (distributed mode): `python -m services.<name>.main`."""
    import os

    import uvicorn

    settings = Settings()
    setup_logging(name, level=settings.log_level, log_format=settings.log_format)
    setup_tracing(name, settings.tracing_exporter)
    runtime = build_runtime(settings)
    app = create_app(runtime, [build(runtime)])
    port = int(os.environ.get("EDT_SERVICE_PORT", settings.port))
    # Idle keep-alive connections are closed by nginx (its upstream keepalive_timeout, 60 s), never first by
    # the service: a connection the service closes just as nginx sends a request on it is a 502, and nginx
    # does not retry a PUT or a POST elsewhere.
    uvicorn.run(app, host=settings.host, port=port, log_level="warning", timeout_graceful_shutdown=5,
                timeout_keep_alive=UPSTREAM_KEEPALIVE_S)
