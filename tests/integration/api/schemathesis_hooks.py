"""Schemathesis hooks for the contract test (loaded through SCHEMATHESIS_HOOKS).

A closure period ends on or after its start: JSON Schema cannot compare two fields, so the OpenAPI says
it in words and generated periods are put in order before they are sent, in every phase. Nothing else
is changed: no check is relaxed and no failure filtered.
"""

from __future__ import annotations

from typing import Any

import schemathesis


def _ordered(period: Any) -> Any:
    if isinstance(period, dict) and isinstance(period.get("start"), str) and isinstance(period.get("end"), str) \
            and len(period["start"]) == len(period["end"]) == 10 and period["end"] < period["start"]:
        return {**period, "start": period["end"], "end": period["start"]}
    return period


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: Any) -> None:
    if case.method.upper() != "PUT" or not case.path.endswith("/closures"):
        return
    body = case.body
    if isinstance(body, list):
        case.body = [_ordered(p) for p in body]
    elif isinstance(body, dict) and isinstance(body.get("items"), list):
        case.body = {**body, "items": [_ordered(p) for p in body["items"]]}
