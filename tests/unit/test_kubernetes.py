"""deploy/kubernetes: the manifests are the ones deploy/k8s.py renders, valid against the Kubernetes schemas
(kubernetes-validate, offline), runnable (each command a module of ours, probes on routes every service
serves, one image), and each stage scaled by KEDA on the queue it really consumes."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from deploy import k8s
from deploy.nginx import SERVICES
from shared.messages import STAGE_QUEUES

DOCS = {name: list(yaml.safe_load_all((k8s.OUT / name).read_text())) for name in k8s.manifests()}
ALL = [doc for docs in DOCS.values() for doc in docs]


def by_kind(kind: str) -> list[dict[str, Any]]:
    return [d for d in ALL if d["kind"] == kind]


def test_committed_manifests_are_the_rendered_ones() -> None:
    for name, text in k8s.render().items():
        assert (k8s.OUT / name).read_text() == text, f"deploy/kubernetes/{name} is stale: run python -m deploy.k8s"


@pytest.mark.parametrize("doc", [d for d in ALL if not d["apiVersion"].startswith("keda.sh/")],
                         ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_every_object_is_valid_against_the_kubernetes_schema(doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, "1.30", strict=True)


def test_every_service_runs_one_of_our_modules_with_probes_the_app_serves() -> None:
    deployments = {d["metadata"]["name"]: d for d in by_kind("Deployment")}
    assert set(SERVICES) <= set(deployments)
    images = set()
    for name in SERVICES:
        (container,) = deployments[name]["spec"]["template"]["spec"]["containers"]
        module = container["command"][-1]
        assert container["command"][:2] == ["python", "-m"] and importlib.util.find_spec(module), module
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        # A container that dies (or stops answering /healthz) is started again by the kubelet.
        assert deployments[name]["spec"]["template"]["spec"]["restartPolicy"] == "Always"
        images.add(container["image"])
    assert len(images) == 1  # one image for the six services
    (job,) = by_kind("Job")
    assert job["spec"]["template"]["spec"]["containers"][0]["command"] == ["python", "-m", "deploy.migrate"]


def test_health_routes_exist_in_every_service() -> None:
    from shared.observability import ops_router

    async def ready() -> bool:
        return True

    assert {"/healthz", "/readyz"} <= {getattr(r, "path", "") for r in ops_router(ready).routes}


def test_each_stage_scales_on_its_own_queue() -> None:
    deployments = {d["metadata"]["name"] for d in by_kind("Deployment")}
    secrets = {k for s in by_kind("Secret") for k in s["stringData"]}
    scaled = by_kind("ScaledObject")
    queues = {obj["spec"]["triggers"][0]["metadata"]["queueName"] for obj in scaled}
    assert queues == set(STAGE_QUEUES.values())  # the names the stages consume (shared.messages)
    for obj in scaled:
        assert obj["spec"]["scaleTargetRef"]["name"] in deployments
        (trigger,) = obj["spec"]["triggers"]
        assert trigger["type"] == "rabbitmq" and trigger["metadata"]["mode"] == "QueueLength"
        assert trigger["metadata"]["hostFromEnv"] in secrets  # the broker URL the service itself uses
        assert obj["spec"]["minReplicaCount"] >= 1  # a stage is never scaled to zero: it consumes its queue


def test_the_proxy_routes_as_in_docker_compose() -> None:
    (conf,) = [d for d in by_kind("ConfigMap") if d["metadata"]["name"].endswith("-proxy")]
    assert conf["data"]["nginx.conf"] == (Path(k8s.__file__).with_name("nginx.compose.conf")).read_text()
