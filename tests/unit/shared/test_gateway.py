"""The merge of the services' OpenAPI documents (shared/gateway.py): the embedded app's order, one
component per name, a conflict named."""

from __future__ import annotations

import pytest

from shared.gateway import merge_documents


def doc(paths: dict, schemas: dict) -> dict:
    return {"openapi": "3.1.0", "info": {"title": "edt-import", "version": "1"}, "paths": paths,
            "components": {"schemas": schemas}}


def test_merge_keeps_each_service_paths_in_turn_and_joins_a_shared_path() -> None:
    a = doc({"/healthz": {"get": {"x": 1}}, "/a": {"get": {"a": 1}}, "/shared": {"get": {"g": 1}}}, {"B": {}, "A": {}})
    b = doc({"/healthz": {"get": {"x": 1}}, "/b": {"post": {"b": 1}}, "/shared": {"put": {"p": 1}}}, {"A": {}, "C": {}})
    merged = merge_documents([a, b])
    assert list(merged["paths"]) == ["/healthz", "/a", "/shared", "/b"]
    assert merged["paths"]["/shared"] == {"get": {"g": 1}, "put": {"p": 1}}
    assert list(merged["components"]["schemas"]) == ["A", "B", "C"]
    assert merged["info"] == a["info"]


def test_two_services_defining_a_model_differently_is_an_error() -> None:
    with pytest.raises(ValueError, match="schemas 'A'"):
        merge_documents([doc({}, {"A": {"type": "string"}}), doc({}, {"A": {"type": "integer"}})])
