"""deploy/kubernetes/: valid against the Kubernetes API schemas (kubernetes-validate,
strict: no field the API does not know), and consistent with itself and with Spyglass:
probes on the container's port, selectors that select the pods, the HPA on the
Deployment, settings that exist."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.conftest import (
    DEPLOY,
    POSTGRES_CONNECTIONS,
    primary_connections,
    settings_from_environment,
)
from tests.deploy.test_dockerfile import DOCKERFILE, env_values, stages

MANIFESTS = DEPLOY / "kubernetes"
# The oldest and the newest release that kubernetes-validate ships schemas for and that
# the Kubernetes project still supports.
VERSIONS = ("1.35.0", "1.37.0")


def manifests() -> dict[str, dict[str, Any]]:
    """Every object in deploy/kubernetes, by kind (one object of each kind)."""
    objects: dict[str, dict[str, Any]] = {}
    for path in sorted(MANIFESTS.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            assert document["kind"] not in objects, f"two {document['kind']}s"
            objects[document["kind"]] = document
    return objects


def validate(binary: Path, version: str, *files: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(binary), "--strict", "--kubernetes-version", version, *map(str, files)],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("version", VERSIONS)
def test_manifests_validate_strictly(kubernetes_validate: Path, version: str) -> None:
    files = sorted(MANIFESTS.glob("*.yaml"))
    result = validate(kubernetes_validate, version, *files)
    assert result.returncode == 0, result.stdout + result.stderr
    for path in files:  # each file was checked, none passed over as an unknown kind
        assert f"{path} passed" in result.stdout + result.stderr


def test_kubernetes_validate_fails_a_manifest_it_should(
    kubernetes_validate: Path, tmp_path: Path
) -> None:
    """The schemas and the exit status are real: a misspelt probe field fails --strict."""
    bad = tmp_path / "deployment.yaml"
    bad.write_text(
        (MANIFESTS / "deployment.yaml").read_text().replace("periodSeconds", "periodSecond")
    )
    result = validate(kubernetes_validate, VERSIONS[-1], bad)
    assert result.returncode != 0
    assert "periodSecond" in result.stdout + result.stderr


def test_every_kind_is_there() -> None:
    assert set(manifests()) == {
        "ConfigMap",
        "Secret",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
    }


def test_probes_use_livez_and_readyz_on_the_container_port() -> None:
    objects = manifests()
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    (port,) = container["ports"]
    settings = settings_from_environment(objects["ConfigMap"]["data"])
    assert port["containerPort"] == settings.port
    image_port = env_values(stages(DOCKERFILE.read_text())[-1])["SPYGLASS_PORT"]
    assert settings.port == int(image_port), "the image's port and the pods' agree"
    probes = {
        kind: container[kind]["httpGet"]
        for kind in ("startupProbe", "livenessProbe", "readinessProbe")
    }
    assert probes["startupProbe"]["path"] == "/livez"
    assert probes["livenessProbe"]["path"] == "/livez"
    assert probes["readinessProbe"]["path"] == "/readyz"
    for probe in probes.values():
        assert probe["port"] in (port["name"], port["containerPort"])
    service_port = objects["Service"]["spec"]["ports"][0]["targetPort"]
    assert service_port in (port["name"], port["containerPort"])


def test_the_pods_take_their_settings_from_the_configmap_and_the_secret() -> None:
    objects = manifests()
    (container,) = objects["Deployment"]["spec"]["template"]["spec"]["containers"]
    sources = {
        next(iter(source)): next(iter(source.values()))["name"] for source in container["envFrom"]
    }
    assert sources == {
        "configMapRef": objects["ConfigMap"]["metadata"]["name"],
        "secretRef": objects["Secret"]["metadata"]["name"],
    }
    secret = objects["Secret"]["stringData"]
    assert {"SPYGLASS_ADMIN_KEY", "SPYGLASS_STORE"} <= set(secret)
    assert secret["SPYGLASS_STORE"].startswith("postgresql://")
    config = objects["ConfigMap"]["data"]
    assert not {"SPYGLASS_ADMIN_KEY", "SPYGLASS_STORE", "SPYGLASS_STORE_REPLICAS"} & set(config)
    # The Secret's placeholders are not settings that would run: an empty admin key
    # stops Spyglass at start-up, so it cannot go to production by mistake.
    with pytest.raises(ValueError, match="admin_key"):
        settings_from_environment({**config, **secret})
    key = "k8s-test-key-0123456789abcdef"
    settings = settings_from_environment({**config, **secret, "SPYGLASS_ADMIN_KEY": key})
    assert settings.store and settings.store.startswith("postgresql://")
    assert settings.redis_url and settings.redis_url.startswith("redis://")
    assert settings.host == "0.0.0.0"


def test_workers_match_the_cpu_limit() -> None:
    objects = manifests()
    (container,) = objects["Deployment"]["spec"]["template"]["spec"]["containers"]
    settings = settings_from_environment(objects["ConfigMap"]["data"])
    resources = container["resources"]
    assert set(resources) == {"requests", "limits"}
    for bound in resources.values():
        assert {"cpu", "memory"} <= set(bound)
    cpu = str(resources["limits"]["cpu"])
    cores = int(cpu[:-1]) / 1000 if cpu.endswith("m") else float(cpu)
    assert settings.workers == cores


def test_connections_fit_in_postgresql_at_the_most_pods() -> None:
    """At maxReplicas, plus the surge of a rolling update, every worker's pools still fit in
    PostgreSQL's default max_connections."""
    objects = manifests()
    settings = settings_from_environment(objects["ConfigMap"]["data"])
    surge = objects["Deployment"]["spec"]["strategy"]["rollingUpdate"]["maxSurge"]
    pods = objects["HorizontalPodAutoscaler"]["spec"]["maxReplicas"] + surge
    assert primary_connections(pods, settings) <= POSTGRES_CONNECTIONS


def test_hpa_pdb_and_service_select_the_deployment_and_its_pods() -> None:
    objects = manifests()
    deployment = objects["Deployment"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod_labels.items()
    assert "replicas" not in deployment["spec"], "the HPA owns the replica count"

    hpa = objects["HorizontalPodAutoscaler"]
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": deployment["apiVersion"],
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    assert 2 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]

    pdb = objects["PodDisruptionBudget"]["spec"]
    assert pdb["selector"]["matchLabels"] == selector
    assert pdb["minAvailable"] < hpa["spec"]["minReplicas"], "a drain can always proceed"
    assert objects["Service"]["spec"]["selector"].items() <= pod_labels.items()
