"""The product at its base URL in embedded mode (the distributed twin is tests/e2e/test_one_product.py):
readiness checks the database and the broker — a RabbitMQ vhost taken away makes it 503 until it is back —,
the API document and its pages with assets from the installed packages."""

from __future__ import annotations

import time
from typing import Any

import httpx

from tests.integration.conftest import Stack, rabbitmqctl

SERVICES = {"dropzone", "validator", "thresholds", "reconciler", "scheduler", "notifier"}


def get(stack: Stack, path: str) -> httpx.Response:
    return httpx.get(f"{stack.url}{path}", timeout=15, trust_env=False)


def wait_readyz(stack: Stack, status: int, within: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        r = get(stack, "/readyz")
        if r.status_code == status:
            return dict(get(stack, "/ops/readyz").json())
        assert time.monotonic() < deadline, f"/readyz stayed {r.status_code}"
        time.sleep(0.2)


def test_readiness_and_documents_of_the_embedded_product(stack: Stack) -> None:
    assert get(stack, "/readyz").json() == {"status": "ready"}
    product = get(stack, "/ops/readyz").json()
    assert product["status"] == "ready" and product["database"] == product["broker"] == "ok"
    assert set(product["services"]) == SERVICES
    assert get(stack, "/ops/healthz").json()["status"] == "ok"
    document = get(stack, "/openapi.json").json()
    assert len(document["paths"]) >= 39 and "/api/v1/sites/{site}/changes" in document["paths"]
    for page, asset in (("/docs", "/docs/assets/swagger-ui-bundle.js"), ("/redoc", "/docs/assets/redoc.standalone.js")):
        html = get(stack, page)
        assert html.status_code == 200 and asset in html.text and "https://" not in html.text
        assert get(stack, asset).status_code == 200


def test_readiness_follows_the_broker(rabbit_stack: Stack) -> None:
    stack = rabbit_stack
    vhost = stack.settings.broker_url.rsplit("/", 1)[1]
    assert wait_readyz(stack, 200)["broker"] == "ok"
    rabbitmqctl("delete_vhost", vhost)  # our private vhost: the broker closes this process's connection
    try:
        down = wait_readyz(stack, 503)
        assert down["broker"] == "down" and down["status"] == "not ready"
    finally:
        rabbitmqctl("add_vhost", vhost)
        rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    assert wait_readyz(stack, 200, within=60)["broker"] == "ok"  # the robust connection came back
