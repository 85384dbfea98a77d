"""Schemathesis hooks for the contract test (loaded through SCHEMATHESIS_HOOKS).

Two rules of the API compare values across a body, which JSON Schema cannot state: a closure period ends
on or after its start, and an id is given once per section of a directory (a PRONOTE id once per IdPN
upload). The OpenAPI says them in words; generated bodies are made to follow them before they are sent,
in every phase (schemathesis re-classifies a case its hook changed). Nothing else is changed: no check
is relaxed and no failure filtered.
"""

from __future__ import annotations

from typing import Any

import schemathesis

from services.reconciler.domain import MAX_ID, clean_text


def _ordered(period: Any) -> Any:
    if isinstance(period, dict) and isinstance(period.get("start"), str) and isinstance(period.get("end"), str) \
            and len(period["start"]) == len(period["end"]) == 10 and period["end"] < period["start"]:
        return {**period, "start": period["end"], "end": period["start"]}
    return period


def _key(value: Any) -> str | None:
    try:
        return clean_text(value)  # how the reconciler compares ids
    except TypeError:
        return None


def _unique(items: Any, field: str) -> Any:
    """`items` with each valid `field` value given once: a repeated one is replaced by a fresh one."""
    if not isinstance(items, list):
        return items
    seen: set[str] = set()
    out = []
    for i, item in enumerate(items):
        key = _key(item.get(field)) if isinstance(item, dict) else None
        if key is not None and len(key) <= MAX_ID and key in seen:
            fresh = f"u{i}"
            while fresh in seen:
                fresh += "_"
            item, key = {**item, field: fresh}, fresh
        if key is not None:
            seen.add(key)
        out.append(item)
    return out


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: Any) -> None:
    method, path, body = case.method.upper(), case.path, case.body
    if method == "PUT" and path.endswith("/closures"):
        if isinstance(body, list):
            case.body = [_ordered(p) for p in body]
        elif isinstance(body, dict) and isinstance(body.get("items"), list):
            case.body = {**body, "items": [_ordered(p) for p in body["items"]]}
    elif method == "PUT" and path.endswith("/directory") and isinstance(body, dict):
        case.body = {k: _unique(v, "id") if k in ("persons", "classes", "groups") else v for k, v in body.items()}
    elif method == "POST" and path.endswith("/pronote-ids"):
        if isinstance(body, list):
            case.body = _unique(body, "pronote_id")
        elif isinstance(body, dict) and "items" in body:
            case.body = {**body, "items": _unique(body["items"], "pronote_id")}
