"""deploy/prometheus.yml scrapes every service where nginx exposes its metrics, and every query of the Grafana
dashboard (deploy/grafana/) names only metrics the services export (shared/observability declares them all)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY

import shared.observability  # noqa: F401 - declares every metric family
from deploy.nginx import SERVICES, TEMPLATE

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = sorted((ROOT / "deploy" / "grafana").glob("*.json"))
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",), "info": ("_info",)}
# PromQL words that are not metric names.
PROMQL = {"sum", "max", "min", "avg", "count", "rate", "irate", "increase", "histogram_quantile", "by", "without",
          "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "offset", "topk", "bottomk",
          "abs", "clamp_min", "clamp_max", "delta", "deriv", "label_replace", "vector", "scalar", "time", "bool"}


def exported() -> set[str]:
    names = set()
    for family in REGISTRY.collect():
        for suffix in SUFFIXES.get(family.type, ("",)):
            names.add(family.name + suffix)
    return names


def metric_names(expr: str) -> set[str]:
    text = re.sub(r'"[^"]*"', "", expr)
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", text)  # grouping labels
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges
    words = set(re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", text))
    return {w for w in words if w not in PROMQL}


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for panel in dashboard["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))  # collapsed rows
    return out


@pytest.mark.parametrize("path", DASHBOARDS, ids=[p.name for p in DASHBOARDS])
def test_every_panel_queries_metrics_the_services_export(path: Path) -> None:
    dashboard = json.loads(path.read_text(encoding="utf-8"))
    known = exported()
    queried: set[str] = set()
    for panel in panels(dashboard):
        assert panel.get("targets"), panel["title"]
        for target in panel["targets"]:
            names = metric_names(target["expr"])
            assert names, (panel["title"], target["expr"])
            unknown = {n for n in names if n not in known}
            assert not unknown, (panel["title"], target["expr"], unknown)
            queried |= names
    # The families the issue asks for are all on the dashboard.
    for family in ("edt_stage_messages_in_total", "edt_stage_messages_out_total", "edt_stage_duration_seconds_bucket",
                   "edt_stage_failures_total", "edt_stage_retries_total", "edt_stage_dead_lettered_total",
                   "edt_queue_ready_messages", "edt_queue_unacked_messages", "edt_queue_consumers",
                   "edt_queue_oldest_message_age_seconds", "edt_imports", "edt_webdav_requests_total",
                   "edt_webdav_bytes_total"):
        assert family in queried, family


def test_the_checker_sees_a_wrong_name() -> None:
    assert metric_names('sum by (stage) (rate(edt_nope_total{stage="x"}[5m]))') == {"edt_nope_total"}
    assert "edt_nope_total" not in exported()


def test_prometheus_scrapes_each_service_where_nginx_serves_its_metrics() -> None:
    config = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    nginx = TEMPLATE.read_text()
    for service in SERVICES:
        job = jobs[f"edt-{service}"]
        assert job["metrics_path"] == f"/metrics/{service}"
        assert f"location = /metrics/{service} " in nginx
        (static,) = job["static_configs"]
        assert static["labels"] == {"service": service}
