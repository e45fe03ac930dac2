"""The HTTP API on the PostgreSQL store with a replica: read-your-writes through the
cache, and a database that cannot serve answers 503 problem+json."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import psycopg
import pytest

from spyglass.app import create_app
from tests.conftest import test_settings as make_settings
from tests.pgcluster import Cluster
from tests.routes.helpers import create, problem

pytestmark = pytest.mark.pg


@pytest.fixture
async def pg_client(
    tmp_path: Path, pg_cluster: Cluster, pg_database: tuple[str, str]
) -> AsyncIterator[httpx.AsyncClient]:
    primary, replica = pg_database
    settings = make_settings(
        tmp_path / "data",
        store=primary,
        store_replicas=replica,
        replica_wait_s=0.1,
        store_timeout_s=1,
        store_statement_timeout_s=0.5,
    )
    app = create_app(settings)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://spyglass") as c:
                yield c
    finally:
        with psycopg.connect(pg_cluster.replica.url, autocommit=True) as conn:
            conn.execute("SELECT pg_wal_replay_resume()")


async def test_read_your_writes_through_the_cache(
    pg_client: httpx.AsyncClient, pg_cluster: Cluster
) -> None:
    await create(pg_client, "v", dim=2, metric="l2")
    first = await pg_client.post(
        "/collections/v/items", json={"items": [{"id": "far", "vector": [5.0, 5.0]}]}
    )
    assert first.status_code == 200
    pg_cluster.wait_for_replica()
    query = {"vector": [1.0, 1.0], "k": 1}
    assert (await pg_client.post("/collections/v/search", json=query)).json()["hits"][0][
        "id"
    ] == "far"

    with psycopg.connect(pg_cluster.replica.url, autocommit=True) as conn:
        conn.execute("SELECT pg_wal_replay_pause()")
    written = await pg_client.post(
        "/collections/v/items", json={"items": [{"id": "near", "vector": [1.0, 1.1]}]}
    )
    version = written.json()["version"]

    lagging = await pg_client.post("/collections/v/search", json=query)
    assert lagging.json()["hits"][0]["id"] == "far"  # the replica (or its cache entry)
    fresh = await pg_client.post("/collections/v/search", json={**query, "after_version": version})
    assert fresh.json()["hits"][0]["id"] == "near"
    batch = await pg_client.post(
        "/collections/v/search/batch", json={"queries": [{**query, "after_version": version}]}
    )
    assert batch.json()["results"][0][0]["id"] == "near"
    bad = await pg_client.post("/collections/v/search", json={**query, "after_version": -1})
    problem(bad, 422, "after_version")


async def test_a_stuck_database_is_a_503_problem(
    pg_client: httpx.AsyncClient, pg_database: tuple[str, str]
) -> None:
    await create(pg_client, "v", dim=2, metric="l2")
    with psycopg.connect(pg_database[0]) as holder:
        holder.execute("SELECT 1 FROM spyglass_collections WHERE name = 'v' FOR UPDATE")
        stuck = await pg_client.post(
            "/collections/v/items", json={"items": [{"id": "x", "vector": [1.0, 1.0]}]}
        )
    body = problem(stuck, 503)
    assert "statement" in body["detail"]
    assert stuck.headers["retry-after"] == "1"
    again = await pg_client.post(
        "/collections/v/items", json={"items": [{"id": "x", "vector": [1.0, 1.0]}]}
    )
    assert again.status_code == 200
