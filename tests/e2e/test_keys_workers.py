"""Keys on a real two-worker server with Redis: created and revoked by the CLI while it
runs, limits per key shared by the workers, the bootstrap key from the environment."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.e2e.server import running
from tests.e2e.test_workers import fresh_client

pytestmark = pytest.mark.e2e

ADMIN_KEY = "e2e-operator-key-0123456789abcdef"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "spyglass", *args], capture_output=True, text=True, timeout=60
    )


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_keys_limits_and_revocation_hold_on_every_worker(tmp_path: Path, redis_url: str) -> None:
    data = tmp_path / "data"
    created = cli(
        "keys", "create", "--data-dir", str(data), "--tenant", "acme", "--scopes", "read,write"
    )
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert key.startswith("sg_") and "not shown again" in created.stderr
    env = {
        "SPYGLASS_ADMIN_KEY": ADMIN_KEY,
        "SPYGLASS_REDIS_URL": redis_url,
        "SPYGLASS_RATE_LIMIT_SEARCH": "12/minute",
    }
    with running(data, workers=2, log=tmp_path / "server.log", env=env) as server:
        url = server.url
        with fresh_client() as client:
            assert client.get(f"{url}/collections").status_code == 401
            r = client.put(f"{url}/collections/docs", json={"dim": 2}, headers=bearer(key))
            assert r.status_code == 201
            pids: set[int] = set()
            for _ in range(400):  # until the kernel has handed connections to both workers
                r = client.get(f"{url}/status", headers=bearer(ADMIN_KEY))
                assert r.status_code == 200
                pids.add(r.json()["pid"])
                if len(pids) == 2:
                    break
            assert len(pids) == 2, "the bootstrap key should work on both workers"
            assert client.get(f"{url}/status", headers=bearer(key)).status_code == 403

            statuses = [
                client.post(
                    f"{url}/collections/docs/search",
                    json={"vector": [1, 0], "k": 1},
                    headers=bearer(key),
                ).status_code
                for _ in range(13)
            ]
            assert statuses == [200] * 12 + [429], "one budget per key across both workers"
            # the operator's key has its own budget
            r = client.post(
                f"{url}/collections/docs/search",
                json={"vector": [1, 0], "k": 1},
                headers=bearer(ADMIN_KEY),
            )
            assert r.status_code == 404  # the default tenant has no 'docs': acme's is its own

            listed = cli("keys", "list", "--data-dir", str(data))
            key_id = key.split("_")[1]
            assert key_id in listed.stdout and key not in listed.stdout
            revoked = cli("keys", "revoke", "--data-dir", str(data), key_id)
            assert revoked.returncode == 0, revoked.stderr
            after = {
                client.get(f"{url}/collections", headers=bearer(key)).status_code for _ in range(16)
            }
            assert after == {401}
        log = (tmp_path / "server.log").read_text()
    assert key not in log and ADMIN_KEY not in log
    assert '"tenant": "acme"' in log or '"tenant":"acme"' in log


def test_an_open_server_on_a_public_address_is_refused(tmp_path: Path) -> None:
    refused = cli("serve", "--data-dir", str(tmp_path / "data"), "--host", "0.0.0.0")
    assert refused.returncode == 2
    assert "refusing to serve on 0.0.0.0" in refused.stderr and "--insecure" in refused.stderr


def test_the_banner_of_an_open_loopback_server_says_so(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    with running(tmp_path / "data", log=log) as server:
        assert httpx.get(f"{server.url}/collections").status_code == 200
    assert "OPEN: no API keys exist" in log.read_text()
