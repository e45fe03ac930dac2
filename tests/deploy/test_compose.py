"""deploy/compose.yaml through Docker Compose v2's own loader (`docker compose config`).

No Docker engine is needed for `config`: compose interpolates the variables, validates
the file against the compose specification and prints the resolved model, which the
tests below then read (N Spyglass replicas on pgvector and Redis, nginx in front).
"""

from __future__ import annotations

import ipaddress
import json
import re
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from tests.deploy.conftest import (
    DEPLOY,
    POSTGRES_CONNECTIONS,
    primary_connections,
    settings_from_environment,
)
from tests.deploy.test_dockerfile import DOCKERFILE, env_values, stages

COMPOSE = DEPLOY / "compose.yaml"
ADMIN_KEY = "compose-test-key-0123456789abcdef"
SECRETS = {"SPYGLASS_ADMIN_KEY": ADMIN_KEY, "POSTGRES_PASSWORD": "compose-test-password"}


def compose(
    binary: Path, tmp_path: Path, *args: str, secrets: dict[str, str], file: Path = COMPOSE
) -> subprocess.CompletedProcess[str]:
    """Run compose on `file` with these variables only (not the caller's, nor a deploy/.env)."""
    env_file = tmp_path / "test.env"
    env_file.write_text("".join(f"{name}={value}\n" for name, value in secrets.items()))
    return subprocess.run(
        [str(binary), "--file", str(file), "--env-file", str(env_file), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )


@pytest.fixture
def model(docker_compose: Path, tmp_path: Path) -> dict[str, Any]:
    """The compose model as Compose resolves it."""
    result = compose(docker_compose, tmp_path, "config", "--format", "json", secrets=SECRETS)
    assert result.returncode == 0, result.stderr
    resolved: dict[str, Any] = json.loads(result.stdout)
    return resolved


def test_compose_validates_the_file(docker_compose: Path, tmp_path: Path) -> None:
    result = compose(docker_compose, tmp_path, "config", "--quiet", secrets=SECRETS)
    assert result.returncode == 0, result.stderr


def test_compose_fails_a_file_it_should(docker_compose: Path, tmp_path: Path) -> None:
    """The loader and its exit status are real: a misspelt key fails validation."""
    bad = tmp_path / "compose.yaml"
    bad.write_text(COMPOSE.read_text().replace("stop_grace_period:", "stop_grace_periods:"))
    result = compose(docker_compose, tmp_path, "config", "--quiet", secrets=SECRETS, file=bad)
    assert result.returncode != 0
    assert "stop_grace_periods" in result.stderr


@pytest.mark.parametrize("missing", sorted(SECRETS))
def test_compose_refuses_to_run_without_each_secret(
    docker_compose: Path, tmp_path: Path, missing: str
) -> None:
    secrets = {**SECRETS, missing: ""}
    result = compose(docker_compose, tmp_path, "config", "--quiet", secrets=secrets)
    assert result.returncode != 0
    assert f"required variable {missing} is missing a value" in result.stderr


def test_spyglass_replicas_run_on_pgvector_and_redis(model: dict[str, Any]) -> None:
    services = model["services"]
    spyglass = services["spyglass"]
    assert spyglass["deploy"]["replicas"] >= 2
    assert "ports" not in spyglass, "clients reach the instances through nginx only"
    assert services["postgres"]["image"] == "pgvector/pgvector:pg17"
    assert services["redis"]["image"].startswith("redis:")
    assert services["nginx"]["image"].startswith("nginx:")
    for dependency in ("postgres", "redis"):
        assert spyglass["depends_on"][dependency]["condition"] == "service_healthy"
        assert services[dependency]["healthcheck"]["test"]
    assert services["nginx"]["depends_on"]["spyglass"]["condition"] == "service_healthy"

    build = spyglass["build"]
    assert (Path(build["context"]) / build["dockerfile"]).resolve() == DOCKERFILE.resolve()


def test_spyglass_environment_is_valid_settings(model: dict[str, Any]) -> None:
    env = model["services"]["spyglass"]["environment"]
    settings = settings_from_environment(env)
    assert settings.admin_key is not None and settings.admin_key.get_secret_value() == ADMIN_KEY
    store = urlsplit(env["SPYGLASS_STORE"])
    postgres = model["services"]["postgres"]["environment"]
    assert store.scheme == "postgresql" and store.hostname == "postgres"
    assert store.username == postgres["POSTGRES_USER"]
    assert store.password == SECRETS["POSTGRES_PASSWORD"] == postgres["POSTGRES_PASSWORD"]
    assert store.path == "/" + postgres["POSTGRES_DB"]
    assert settings.store == env["SPYGLASS_STORE"]
    assert settings.redis_url and urlsplit(settings.redis_url).hostname == "redis"
    spyglass = model["services"]["spyglass"]["deploy"]
    assert settings.workers == int(spyglass["resources"]["limits"]["cpus"]), "a worker per core"
    assert primary_connections(spyglass["replicas"], settings) <= POSTGRES_CONNECTIONS
    assert settings.metrics_public, "Prometheus scrapes the instances without a key"


def test_nginx_fronts_the_spyglass_service(model: dict[str, Any]) -> None:
    nginx = model["services"]["nginx"]
    mounts = {m["target"]: Path(m["source"]) for m in nginx["volumes"]}
    assert mounts["/etc/nginx/nginx.conf"] == DEPLOY / "nginx.conf"
    conf = (DEPLOY / "nginx.conf").read_text()
    image_port = env_values(stages(DOCKERFILE.read_text())[-1])["SPYGLASS_PORT"]
    upstream = re.search(r"upstream spyglass \{(.*?)\}", conf, re.S)
    assert upstream is not None
    assert re.findall(r"^\s*server\s+(\S+)", upstream.group(1), re.M) == [f"spyglass:{image_port}"]
    assert [p["target"] for p in nginx["ports"]] == [80]
    assert "listen 80;" in conf

    # The proxy that Spyglass believes about X-Forwarded-For is nginx, and only nginx.
    address = ipaddress.ip_address(nginx["networks"]["default"]["ipv4_address"])
    subnet = model["networks"]["default"]["ipam"]["config"][0]["subnet"]
    assert address in ipaddress.ip_network(subnet)
    trusted = model["services"]["spyglass"]["environment"]["SPYGLASS_TRUSTED_PROXIES"]
    assert trusted == str(address)


def test_mounted_files_exist_and_prometheus_scrapes_every_replica(model: dict[str, Any]) -> None:
    for name, service in model["services"].items():
        for mount in service.get("volumes", []):
            if mount["type"] == "bind":
                assert Path(mount["source"]).exists(), f"{name}: {mount['source']}"
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "spyglass"]
    (sd,) = job["dns_sd_configs"]
    image_port = env_values(stages(DOCKERFILE.read_text())[-1])["SPYGLASS_PORT"]
    assert sd["names"] == ["spyglass"] and sd["type"] == "A" and sd["port"] == int(image_port)
