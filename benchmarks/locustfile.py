"""Locust users that send the requests of a ``spyglass bench load`` scenario.

For those who prefer Locust (https://locust.io) to ``spyglass bench load``: the same
scenario file (TOML or JSON, see docs/bench.md) and the same payloads, sampled from
the collection through the HTTP API when the test starts. Locust is not a Spyglass
dependency; this file imports only where it is installed::

    pip install locust
    SPYGLASS_COLLECTION=bench SPYGLASS_SCENARIO=scenario.toml \\
        locust -f benchmarks/locustfile.py --host http://127.0.0.1:8080 \\
        --users 100 --spawn-rate 20 --run-time 2m --headless

Environment: ``SPYGLASS_COLLECTION`` (default ``bench``), ``SPYGLASS_SCENARIO`` (a
scenario file; default: the mix the collection's encoder suggests) and
``SPYGLASS_BENCH_KEY`` (an API key, sent as a bearer token).

The difference to keep in mind: Locust is a *closed* loop. Each user sends a request,
waits for its answer, then thinks for the scenario's ``think_s`` before the next, so
a slow server slows the users down and the offered rate falls with it. The scenario's
``rates``, ``step_s`` and ``arrival`` do not apply; choose ``--users`` instead (about
rate x (think_s + response time) users make a rate, by Little's law). Requests are
named by type (``vector``, ``text``, ``color``, ``image``, ``ask``) in Locust's tables.
"""

from __future__ import annotations

import asyncio
import os
import random
from pathlib import Path
from typing import Any

import httpx
from locust import HttpUser, constant, events, task

from spyglass.bench.scenario import (
    RequestMix,
    Scenario,
    collection_info,
    load_scenario,
    sample_requests,
)

COLLECTION = os.environ.get("SPYGLASS_COLLECTION", "bench")
SCENARIO_FILE = os.environ.get("SPYGLASS_SCENARIO")
SCENARIO = load_scenario(Path(SCENARIO_FILE)) if SCENARIO_FILE else Scenario()
KEY = os.environ.get("SPYGLASS_BENCH_KEY")
HEADERS = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {KEY}"} if KEY else {})

_sampled: dict[str, RequestMix] = {}


async def _sample(host: str) -> RequestMix:
    async with httpx.AsyncClient(base_url=host, headers=HEADERS, timeout=30) as client:
        info = await collection_info(client, COLLECTION)
        return await sample_requests(client, info, SCENARIO)


@events.test_start.add_listener
def sample_payloads(environment: Any, **_: Any) -> None:
    """Prepare the scenario's payloads from the collection once, before users start."""
    mix = asyncio.run(_sample(environment.host))
    _sampled["mix"] = mix
    weights = ", ".join(f"{kind} {weight:g}" for kind, weight in mix.weights.items())
    print(f"spyglass: {COLLECTION}: mix {weights}; " + "; ".join(mix.notes))


class SpyglassUser(HttpUser):
    """A user sending the scenario's mix, thinking ``think_s`` between requests."""

    wait_time = constant(SCENARIO.think_s)

    def on_start(self) -> None:
        self.pick = _sampled["mix"].picker(random.Random())

    @task
    def request(self) -> None:
        prepared = self.pick()
        self.client.request(
            prepared.method,
            prepared.path,
            data=prepared.body,
            headers=HEADERS,
            name=prepared.kind,
            timeout=SCENARIO.timeout_s,
        )
