"""Past one machine: two stateless ``spyglass serve`` instances on one PostgreSQL primary
with a streaming replica, and one Redis. A write through one is read through the other,
and keys made or revoked by the CLI hold on both."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.server import running
from tests.e2e.test_keys_workers import bearer, cli
from tests.pgcluster import Cluster

pytestmark = [pytest.mark.e2e, pytest.mark.pg]


def test_two_instances_share_collections_and_keys(
    tmp_path: Path, pg_cluster: Cluster, pg_database: tuple[str, str], redis_url: str
) -> None:
    primary, replica = pg_database
    created = cli(
        "keys", "create", "--store", primary, "--tenant", "acme", "--scopes", "read,write"
    )
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    env = {
        "SPYGLASS_STORE": primary,
        "SPYGLASS_STORE_REPLICAS": replica,
        "SPYGLASS_REDIS_URL": redis_url,
    }
    with (
        running(tmp_path / "a", workers=1, log=tmp_path / "a.log", env=env) as one,
        running(tmp_path / "b", workers=2, log=tmp_path / "b.log", env=env) as two,
        httpx.Client(timeout=30) as client,
    ):
        auth = bearer(key)
        r = client.put(f"{one.url}/collections/docs", json={"dim": 2, "metric": "l2"}, headers=auth)
        assert r.status_code == 201, r.text
        r = client.post(
            f"{one.url}/collections/docs/items",
            json={"items": [{"id": "a", "vector": [1.0, 0.0]}, {"id": "b", "vector": [0.0, 1.0]}]},
            headers=auth,
        )
        assert r.status_code == 200, r.text
        version = r.json()["version"]
        r = client.post(
            f"{two.url}/collections/docs/search",
            json={"vector": [0.1, 0.9], "k": 1, "after_version": version},
            headers=auth,
        )
        assert r.status_code == 200, r.text
        assert r.json()["hits"][0]["id"] == "b"
        assert client.get(f"{two.url}/collections/docs", headers=auth).json()["count"] == 2
        assert client.get(f"{two.url}/readyz").status_code == 200

        listed = cli("keys", "list", "--store", primary)
        assert key.split("_")[1] in listed.stdout
        revoked = cli("keys", "revoke", key.split("_")[1], "--store", primary)
        assert revoked.returncode == 0, revoked.stderr
        refused = {one.url: False, two.url: False}
        for _ in range(300):  # workers re-check the keys about once a second (bounded wait)
            for url in refused:
                status = client.get(f"{url}/collections", headers=auth).status_code
                refused[url] = status == 401
            if all(refused.values()):
                break
            time.sleep(0.05)
        assert refused == {one.url: True, two.url: True}
    assert "postgresql://" in (tmp_path / "a.log").read_text()
