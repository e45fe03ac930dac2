"""CPU of a refused request next to the CPU of a vector search, over HTTP (issue 16, target 3).

A one-worker ``spyglass serve`` is pinned to one core and the load generator (this
script) to another. The server's CPU (user + system, from /proc) is read around
each phase, minus what it burns idle over the same time:

1. searches: ``--search-rate`` vector searches/s for ``--seconds`` s, below capacity,
   on the 100k x 64 set that ``benchmarks/overload_pinned.sh`` makes;
2. refusals: the only search slot is held by a request whose body never comes (no
   queue), and ``--refusal-rate`` searches/s are all refused with 503.

Phase 2 runs first: with no queue, some searches of phase 1 find the slot taken and
are refused too, and their share is taken out at the cost phase 2 measured.

Target: a refusal costs at most 5% of a vector search.

    .venv/bin/python benchmarks/refusal_cost_http.py [--seconds 20] [--server-cpu 1 --client-cpu 0]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import sys
from pathlib import Path

import httpx
from _common import Server, code_version, proc_cpu

from spyglass.bench.http import Target
from spyglass.bench.load import Generator
from spyglass.bench.scenario import Scenario, collection_info, sample_requests

DATA = Path(__file__).resolve().parent / "out/overload/data"


async def phase(
    generator: Generator, pid: int, rate: float, seconds: float
) -> tuple[float, dict[str, int]]:
    """Server CPU seconds over one step at ``rate``, and the statuses it answered."""
    before = proc_cpu(pid)
    step = await generator.step(rate, seconds)
    used = proc_cpu(pid) - before
    return used, step.status


async def measure(args: argparse.Namespace, url: str, pid: int) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        info = await collection_info(client, "bench")
        mix = await sample_requests(client, info, Scenario(mix={"vector": 1.0}))
    target = Target.from_url(url)
    generator = Generator(target, mix.picker(random.Random(0)), timeout_s=30)
    try:
        await generator.step(args.search_rate, 2)  # warm up: connections, threads, caches
        idle_before = proc_cpu(pid)
        await asyncio.sleep(args.seconds)
        idle = (proc_cpu(pid) - idle_before) / args.seconds
        port = int(url.rsplit(":", 1)[1])
        holder = socket.create_connection(("127.0.0.1", port))
        wire = target.wire(mix.picker(random.Random(1))())
        holder.sendall(wire[:-5])  # the body never completes: the slot stays taken
        await asyncio.sleep(0.5)
        used, statuses = await phase(generator, pid, args.refusal_rate, args.seconds)
        holder.close()
        assert statuses["503"] == sum(statuses.values()), statuses
        refusal_us = (used - idle * args.seconds) / statuses["503"] * 1e6
        await asyncio.sleep(0.5)
        # with no queue, searches that find the slot busy are refused: their share is
        # taken out at the refusal's cost just measured
        used, statuses = await phase(generator, pid, args.search_rate, args.seconds)
        ok, refused = statuses["2xx"], statuses["503"]
        assert ok + refused == sum(statuses.values()), statuses
        search_us = ((used - idle * args.seconds) * 1e6 - refused * refusal_us) / ok
    finally:
        await generator.aclose()
    print(
        f"code {code_version()}; 100,000 x 64 vectors; server on cpu {args.server_cpu}, "
        f"generator on cpu {args.client_cpu}; {args.seconds:g} s a phase; idle "
        f"{idle * 1000:.1f} ms CPU/s subtracted"
    )
    print(
        f"vector search: {search_us:7.1f} µs CPU per request at {args.search_rate:g}/s"
        f" ({refused} of {ok + refused} found the slot taken and were refused)"
    )
    print(f"503 refusal:   {refusal_us:7.1f} µs CPU per request at {args.refusal_rate:g}/s")
    print(f"refusal / search = {refusal_us / search_us:.1%} (target <= 5%)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--search-rate", type=float, default=300)
    parser.add_argument("--refusal-rate", type=float, default=2000)
    parser.add_argument("--server-cpu", type=int, default=1)
    parser.add_argument("--client-cpu", type=int, default=0)
    args = parser.parse_args()
    if not DATA.is_dir():
        sys.exit(f"{DATA} is missing: run benchmarks/overload_pinned.sh once to make it")
    env = {
        "SPYGLASS_ADMISSION_SEARCH_IN_FLIGHT": "1",
        "SPYGLASS_ADMISSION_SEARCH_QUEUE": "0",
        "SPYGLASS_CACHE_MAX_BYTES": "0",
    }
    with Server(DATA, 1, cpus=str(args.server_cpu), log_level="info", **env) as server:
        assert server.proc is not None  # taskset execs the server: its pid is the worker's
        os.sched_setaffinity(0, {args.client_cpu})
        asyncio.run(measure(args, f"http://127.0.0.1:{server.port}", server.proc.pid))


if __name__ == "__main__":
    main()
