"""CPU of a refused request next to the CPU of a vector search, in-process.

The app of ``create_app`` is called straight through ASGI (no sockets, no
uvicorn), so the figures are what Spyglass's own layers cost. A search is
``POST /collections/bench/search`` on a collection of ``--items`` random 64-d
vectors (k=10, HNSW). A refusal is the same request while the search class is
full: one request holds the only slot (its body never arrives) and the queue is
0, so every other search is refused by admission control. CPU is
``time.process_time`` over ``--n`` calls of each, the median of ``--rounds``.

Target (issue 16): a refusal costs at most 5% of a vector search.

    .venv/bin/python benchmarks/refusal_cost.py [--n 5000] [--items 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from _common import code_version

from spyglass.app import create_app
from spyglass.settings import Settings

DIM = 64


def scope(method: str, path: str, body: bytes) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"bench"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


async def call(app: Any, path: str, body: bytes, method: str = "POST") -> int:
    """One request through the ASGI app; its status."""
    status = 0
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            await asyncio.Event().wait()  # never: the client keeps the connection
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope(method, path, body), receive, send)
    return status


async def hold(app: Any, path: str) -> None:
    """A search whose body never arrives: it keeps the class's only slot."""

    async def receive() -> dict[str, Any]:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        pass

    await app(scope("POST", path, b"{}"), receive, send)


async def cpu_per_call(app: Any, path: str, bodies: list[bytes], want: int) -> float:
    started = time.process_time()
    for body in bodies:
        status = await call(app, path, body)
        assert status == want, status
    return (time.process_time() - started) / len(bodies) * 1e6


async def measure(args: argparse.Namespace) -> None:
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as directory:
        settings = Settings(
            data_dir=Path(directory),
            admission_search_in_flight=1,
            admission_search_queue=0,
            cache_max_bytes=0,
            exact_below=0,
        )
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            await put_collection(app, rng, args.items)
            app.state.engine.store.optimize("bench")  # searches walk the HNSW snapshot
            queries = rng.normal(size=(args.n, DIM)).astype(np.float32)
            bodies = [orjson.dumps({"vector": q.tolist(), "k": 10}) for q in queries]
            path = "/collections/bench/search"
            searches, refusals = [], []
            for _ in range(args.rounds):
                searches.append(await cpu_per_call(app, path, bodies, 200))
                holder = asyncio.create_task(hold(app, path))
                await asyncio.sleep(0)
                refusals.append(await cpu_per_call(app, path, bodies, 503))
                holder.cancel()
                await asyncio.gather(holder, return_exceptions=True)
    search, refusal = statistics.median(searches), statistics.median(refusals)
    print(
        f"code {code_version()}; {args.items:,} x {DIM} vectors; {args.n:,} calls x "
        f"{args.rounds} rounds, in-process ASGI"
    )
    print(f"vector search: {search:8.1f} µs CPU per request (median round)")
    print(f"503 refusal:   {refusal:8.1f} µs CPU per request (median round)")
    print(f"refusal / search = {refusal / search:.1%} (target <= 5%)")


async def put_collection(app: Any, rng: np.random.Generator, items: int) -> None:
    created = await call(app, "/collections/bench", orjson.dumps({"dim": DIM}), "PUT")
    assert created in {200, 201}, created
    vectors = rng.normal(size=(items, DIM)).astype(np.float32)
    for start in range(0, items, 1000):
        batch = [{"id": str(i), "vector": vectors[i].tolist()} for i in range(start, start + 1000)]
        body = orjson.dumps({"items": batch})
        assert await call(app, "/collections/bench/items", body) == 200


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--items", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    asyncio.run(measure(parser.parse_args()))


if __name__ == "__main__":
    main()
