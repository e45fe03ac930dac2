"""A real two-worker server driven far past its capacity answers only 200 or 503.

Capacity is made tiny (one search at a time per worker, no queue) so that 64
clients sending at once are far past it on any machine, however fast; every
refusal must be a 503 problem with ``Retry-After``, nothing times out or resets.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import httpx
import pytest

from tests.bench.test_load import tiny_collection
from tests.e2e.server import running

pytestmark = pytest.mark.e2e

CLIENTS = 64
EACH = 25


async def flood(url: str) -> list[httpx.Response]:
    rng = random.Random(1)
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as http:

        async def client() -> list[httpx.Response]:
            answers = []
            for _ in range(EACH):
                body = {"vector": [rng.gauss(0, 1) for _ in range(8)], "k": 5}
                answers.append(await http.post("/collections/tiny/search", json=body))
            return answers

        results = await asyncio.gather(*(client() for _ in range(CLIENTS)))
    return [answer for answers in results for answer in answers]


def test_past_capacity_only_200_and_503_with_retry_after(tmp_path: Path) -> None:
    env = {"SPYGLASS_ADMISSION_SEARCH_IN_FLIGHT": "1", "SPYGLASS_ADMISSION_SEARCH_QUEUE": "0"}
    with running(tmp_path / "data", workers=2, log=tmp_path / "server.log", env=env) as server:
        tiny_collection(server.url)
        answers = asyncio.run(flood(server.url))
        metrics = httpx.get(f"{server.url}/metrics").text
    statuses = [a.status_code for a in answers]
    assert len(statuses) == CLIENTS * EACH
    assert set(statuses) <= {200, 503}
    assert statuses.count(200) > 0 and statuses.count(503) > 0
    for refused in (a for a in answers if a.status_code == 503):
        assert refused.headers["retry-after"] == "1"
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["type"] == "urn:spyglass:problem:unavailable"
    shed = sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("spyglass_admission_shed_total{") and 'route_class="search"' in line
    )
    assert shed == statuses.count(503)
