"""The reverse proxy's configuration: `deploy/nginx.conf.template` rendered for distributed mode (the
supervisor's loopback upstreams) or for docker-compose (`deploy/nginx.compose.conf`, its host names).
One routing by path prefix for both, so clients see the same contract at one base URL."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

SERVICES = ("dropzone", "validator", "thresholds", "reconciler", "scheduler", "notifier")
TEMPLATE = Path(__file__).with_name("nginx.conf.template")
COMPOSE_CONF = Path(__file__).with_name("nginx.compose.conf")
COMPOSE_SERVICE_PORT = 8000


def render_nginx_conf(*, listen: str, servers: Mapping[str, Sequence[str]], max_upload_mb: int, pid_file: str,
                      error_log: str, access_log: str, temp_dir: str, user: str | None = None,
                      instance_metrics: Mapping[str, str] | None = None, template: str | None = None) -> str:
    """deploy/nginx.conf.template with its {{placeholders}} filled.

    `servers` maps each service to its upstream addresses ("127.0.0.1:8101", "validator:8000");
    `instance_metrics` maps an extra instance name ("validator-2") to its address, served at
    /metrics/<instance>."""
    text = template if template is not None else TEMPLATE.read_text(encoding="utf-8")
    values = {
        "user_directive": f"user {user};" if user else "# (no `user`: workers run as the invoking user)",
        "pid_file": pid_file,
        "error_log": error_log,
        "access_log": access_log,
        "temp_dir": temp_dir,
        "listen": listen,
        # The services' own cap is EDT_MAX_UPLOAD_MB + 1 MiB (multipart slack); stay just above it.
        "client_max_body_size": f"{max_upload_mb + 2}m",
        "instance_metrics": "\n".join(
            f"        location = /metrics/{name} {{ proxy_pass http://{address}/metrics; }}"
            for name, address in (instance_metrics or {}).items()),
    }
    for service in SERVICES:
        addresses = list(servers.get(service, ()))
        if not addresses:
            raise ValueError(f"no upstream address for {service}")
        values[f"servers:{service}"] = "\n".join(
            f"        server {address} max_fails=1 fail_timeout=2s;" for address in addresses)
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", value)
    if "{{" in text:
        start = text.index("{{")
        raise ValueError(f"unfilled placeholder in nginx template: {text[start:text.index('}}', start) + 2]}")
    return text


def render_compose_conf() -> str:
    """The proxy configuration of docker-compose.yml: same template, compose host names."""
    header = ("# GENERATED from deploy/nginx.conf.template by `python -m deploy.distributed --render-compose`;\n"
              "# do not edit by hand (tests/unit/test_compose.py checks that it is up to date).\n"
              "# client_max_body_size follows the default EDT_MAX_UPLOAD_MB (100).\n")
    return header + render_nginx_conf(
        listen=str(COMPOSE_SERVICE_PORT),
        servers={s: [f"{s}:{COMPOSE_SERVICE_PORT}"] for s in SERVICES},
        max_upload_mb=100, pid_file="/tmp/nginx.pid", error_log="/dev/stderr", access_log="/dev/stdout",
        temp_dir="/tmp", user="nginx")
