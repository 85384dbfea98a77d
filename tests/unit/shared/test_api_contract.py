"""The API layer's own rules, read from the app every mode serves: each route declares its response model
(or its non-JSON media types) and the errors it answers, authenticates through the shared dependencies,
and the OpenAPI documents every error as application/problem+json."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute

from deploy.embedded import create_embedded_app
from shared.deps import current_principal, optional_principal
from shared.settings import Settings
from shared.web import PROBLEM_JSON, api_routes
from tests import harness

PUBLIC = {"/healthz", "/readyz", "/metrics", "/api/v1/healthz", "/api/v1/readyz", "/api/v1/metrics",
          "/ops/healthz", "/ops/readyz", "/openapi.json", "/docs", "/redoc"}


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> FastAPI:
    tmp: Path = tmp_path_factory.mktemp("app")
    env = harness.test_settings_env(tmp, f"sqlite+aiosqlite:///{tmp}/edt.db")
    return create_embedded_app(Settings(**{k.removeprefix("EDT_").lower(): v for k, v in env.items()}))


def is_console_page(path: str) -> bool:
    """The console's HTML pages (and / leading to them): not API routes, outside the OpenAPI."""
    return path == "/" or path == "/console" or path.startswith("/console/")


def routes(app: FastAPI) -> Iterator[tuple[str, str, Any]]:
    for route in api_routes(app):
        if isinstance(route.original_route, APIRoute) and not is_console_page(str(route.path)):
            for method in sorted(route.methods or ()):
                yield method, str(route.path), route


def dependency_calls(dependant: Any) -> Iterator[Any]:
    for sub in dependant.dependencies:
        yield sub.call
        yield from dependency_calls(sub)


def takes_parameters(dependant: Any) -> Iterator[bool]:
    yield bool(dependant.path_params or dependant.query_params or dependant.header_params)
    for sub in dependant.dependencies:
        yield from takes_parameters(sub)


def operations(schema: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            yield method.upper(), path, operation


def test_every_route_has_a_response_model_or_declared_media_types(app: FastAPI) -> None:
    listed = list(routes(app))
    assert len([r for r in listed if r[1].startswith("/api/v1/") and r[1] not in PUBLIC]) >= 38
    for method, path, route in listed:
        success = route.status_code or 200
        declared = route.responses.get(success) or route.responses.get(str(success)) or {}
        assert route.response_model is not None or success == 204 or declared.get("content"), (method, path)


def test_every_api_route_authenticates_through_the_shared_dependency(app: FastAPI) -> None:
    for method, path, route in routes(app):
        calls = set(dependency_calls(route.dependant))
        if path in PUBLIC:
            assert current_principal not in calls, (method, path)
            continue
        # optional_principal: a route that also takes another proof (an iCal subscription's key), same check
        assert current_principal in calls or optional_principal in calls, (method, path)
        assert 401 in route.responses, (method, path)


def test_every_route_declares_the_errors_it_answers(app: FastAPI) -> None:
    for method, path, route in routes(app):
        if path in PUBLIC:
            continue
        codes = set(route.responses)
        if any(takes_parameters(route.dependant)) or route.body_field is not None:
            assert 422 in codes, (method, path)
        if "{site}" in path:
            assert 404 in codes, (method, path)
        if method in ("POST", "PUT", "PATCH") and route.body_field is not None:
            assert {400, 413} <= codes, (method, path)


def test_openapi_declares_problem_json_for_every_error(app: FastAPI) -> None:
    schema = app.openapi()
    components = schema["components"]["schemas"]
    assert "HTTPValidationError" not in components and "ProblemDetails" in components
    assert set(components["ProblemDetails"]["required"]) == {"type", "title", "status"}
    seen = 0
    for method, path, operation in operations(schema):
        for status, response in operation["responses"].items():
            if path.endswith(("/readyz", "/healthz")) or status[0] not in "45":  # health answers its own body
                continue
            assert set(response.get("content", {})) == {PROBLEM_JSON}, (method, path, status)
            assert response["content"][PROBLEM_JSON]["schema"]["$ref"].endswith("/ProblemDetails")
            seen += 1
        if operation.get("parameters") or operation.get("requestBody"):
            assert "422" in operation["responses"], (method, path)
        if path.startswith("/api/v1/"):
            assert operation.get("security") == [{"bearer": []}], (method, path)
    assert seen > 100


def test_openapi_documents_every_success_response(app: FastAPI) -> None:
    schema = app.openapi()
    for method, path, operation in operations(schema):
        ok = {s: r for s, r in operation["responses"].items() if s.startswith("2")}
        assert ok, (method, path)
        for status, response in ok.items():
            if status == "204":
                continue
            content = response.get("content") or {}
            assert content and all(m.get("schema") for m in content.values()), (method, path, status)
            if "application/json" in content:  # a named model, not an untyped object
                assert "$ref" in content["application/json"]["schema"], (method, path, status)
    media = {(m, p): set(o["responses"]["200"]["content"]) for m, p, o in operations(schema)
             if "200" in o["responses"]}
    assert media[("GET", "/api/v1/imports/{import_id}/unreconciled")] == {"text/csv"}
    assert media[("GET", "/api/v1/imports/{import_id}/events")] == {"text/event-stream"}
    assert media[("GET", "/api/v1/imports/{import_id}/source")] == {"application/zip", "application/octet-stream"}
    assert media[("GET", "/api/v1/sites/{site}/establishments/{est}/calendar/{kind}/{ident}.ics")] == \
        {"text/calendar"}
