"""A real `spyglass serve --workers 2` driven at 1x, 2x and 4x its capacity: does it stay up?

Capacity is found first: wrk runs 5 s at 1, 2, 4, ... 64 connections, and the
capacity concurrency is the fewest connections that reach 90% of the best
throughput (more only queue: wrk is a closed loop, every connection always has
one request out). Each level then runs wrk with 1x, 2x and 4x that many
connections for ``--duration`` seconds (60) and reports:

- status counts (a wrk Lua script counts every response by status);
- p50/p99 of *admitted* requests, seen by a probe that sends one search every
  200 ms on its own connection during the level (503s and 429s are fast, so
  wrk's own latency would flatter the server);
- the server's RSS (VmRSS summed over master and workers), sampled every second;
- after the load stops, how long until a probe search is answered within twice
  the unloaded p50 again.

Targets (issue 4): only 2xx/429/503 at any level; admitted p99 at 4x no worse than
2x the unloaded p99; RSS bounded; back to normal within 1 s. The result cache is
off (`SPYGLASS_CACHE_MAX_BYTES=0`), or the rotating bodies would measure the cache.

    .venv/bin/python benchmarks/overload.py [--duration 60] [--base-connections 64]
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import subprocess
import threading
import time
from pathlib import Path

from _common import COLLECTION, OUT, TEXT_STORE, Server, code_version, load_text_set, wait_for_idle
from http_search import LUA, parse_wrk

COUNTING = """
counts = {}
function response(status, headers, body)
  counts[status] = (counts[status] or 0) + 1
end
local threads = {}
function setup(thread)
  table.insert(threads, thread)
end
function done(summary, latency, requests)
  local total = {}
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("counts")) do
      total[status] = (total[status] or 0) + n
    end
  end
  for status, n in pairs(total) do
    io.write(string.format("STATUS %d %d\\n", status, n))
  end
end
"""


class Probe(threading.Thread):
    """One search every ``interval`` seconds on its own connection; records (status, ms)."""

    def __init__(self, port: int, body: str, interval: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.port, self.body, self.interval = port, body, interval
        self.samples: list[tuple[int, float]] = []
        self.stop = threading.Event()

    def one(self) -> tuple[int, float]:
        started = time.perf_counter()
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(
                "POST",
                f"/collections/{COLLECTION}/search",
                body=self.body,
                headers={"content-type": "application/json"},
            )
            status = conn.getresponse().status
        except OSError:
            status = 0
        finally:
            conn.close()
        return status, (time.perf_counter() - started) * 1000

    def run(self) -> None:
        while not self.stop.wait(self.interval):
            self.samples.append(self.one())


def rss_mib(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def status_counts(wrk_output: str) -> dict[int, int]:
    """Responses by status, from the counting script's ``STATUS`` lines."""
    rows = (line.split()[1:3] for line in wrk_output.splitlines() if line.startswith("STATUS "))
    return {int(status): int(n) for status, n in rows}


def capacity_concurrency(port: int, script: Path) -> int:
    """The fewest wrk connections that reach 90% of the best throughput (200s) seen."""
    curve: dict[int, float] = {}
    for connections in (1, 2, 4, 8, 16, 32, 64):
        command = [
            "wrk", "-t2" if connections > 1 else "-t1", f"-c{connections}", "-d5s",
            "--latency", "-s", str(script), f"http://127.0.0.1:{port}",
        ]  # fmt: skip
        output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        curve[connections] = status_counts(output).get(200, 0) / 5
        time.sleep(1)
    best = max(curve.values())
    chosen = min(c for c, rps in curve.items() if rps >= 0.9 * best)
    shown = ", ".join(f"{c}: {rps:.0f}/s" for c, rps in curve.items())
    print(f"throughput by connections: {shown}; capacity at {chosen} connections", flush=True)
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=60, help="seconds per level")
    parser.add_argument(
        "--base-connections", type=int, default=0, help="1x concurrency (0: measure it)"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SETTING=VALUE",
        help="a server setting to try, e.g. --set admission_search_in_flight=8",
    )
    parser.add_argument(
        "--nice",
        action="store_true",
        help="run wrk at nice 19, so the load generator gets only the CPU the server leaves",
    )
    args = parser.parse_args()
    env = {"SPYGLASS_CACHE_MAX_BYTES": "0"}
    for pair in args.set:
        name, _, value = pair.partition("=")
        env[f"SPYGLASS_{name.upper()}"] = value
    print(f"server settings: {env}", flush=True)
    print(f"code under test: {code_version()}", flush=True)
    wait_for_idle()
    data = load_text_set(texts=False)
    bodies = [json.dumps({"vector": [float(x) for x in v], "k": 10}) for v in data.query[:100]]
    script = OUT / "wrk_overload.lua"
    quoted = ",\n".join(f"  [==[{body}]==]" for body in bodies)
    script.write_text(LUA % (quoted, COLLECTION) + COUNTING, encoding="utf-8")

    with Server(TEXT_STORE, 2, **env) as server:
        pids = server.pids()
        probe = Probe(server.port, bodies[0])
        for _ in range(20):  # warm the page cache and both workers' views first
            probe.one()
        unloaded = [probe.one()[1] for _ in range(100)]
        base_p50, base_p99 = statistics.median(unloaded), percentile(unloaded, 0.99)
        print(f"unloaded probe: p50 {base_p50:.1f} ms, p99 {base_p99:.1f} ms", flush=True)
        base = args.base_connections or capacity_concurrency(server.port, script)
        rows = []
        for factor in (1, 2, 4):
            connections = base * factor
            probe = Probe(server.port, bodies[1])
            rss: list[float] = []
            command = [
                *(["nice", "-n", "19"] if args.nice else []),
                "wrk", "-t2", f"-c{connections}", f"-d{args.duration}s", "--latency",
                "-s", str(script), f"http://127.0.0.1:{server.port}",
            ]  # fmt: skip
            wrk = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
            probe.start()
            while wrk.poll() is None:
                rss.append(rss_mib(pids))
                time.sleep(1)
            probe.stop.set()
            probe.join()
            output = wrk.stdout.read() if wrk.stdout else ""
            stopped = time.perf_counter()
            recovered = float("nan")
            while time.perf_counter() - stopped < 30:
                status, ms = probe.one()
                if status == 200 and ms <= 2 * base_p50:
                    recovered = (time.perf_counter() - stopped) * 1000
                    break
            counts = status_counts(output)
            result = parse_wrk(output)
            admitted = [ms for status, ms in probe.samples if status == 200]
            rows.append(
                (factor, connections, result.requests_per_s, counts, admitted, rss, recovered)
            )
            print(
                f"{factor}x ({connections} connections): {result.requests_per_s:.0f} answers/s,"
                f" statuses {dict(sorted(counts.items()))}; probe: {len(admitted)} admitted of"
                f" {len(probe.samples)}, p50 {percentile(admitted, 0.5):.1f} ms,"
                f" p99 {percentile(admitted, 0.99):.1f} ms; RSS {min(rss):.0f}-{max(rss):.0f} MiB;"
                f" normal again {recovered:.0f} ms after the load stopped",
                flush=True,
            )

    print("\nsummary:")
    for factor, _connections, _rps, counts, admitted, rss, recovered in rows:
        allowed = set(counts) <= {200, 429, 503}
        p99 = percentile(admitted, 0.99)
        print(
            f"  {factor}x: only 2xx/429/503: {'PASS' if allowed else 'FAIL'};"
            f" admitted p99 {p99:.1f} ms vs 2 x unloaded p99 {2 * base_p99:.1f} ms:"
            f" {'PASS' if p99 <= 2 * base_p99 else 'FAIL'};"
            f" RSS {min(rss):.0f}-{max(rss):.0f} MiB; recovery {recovered:.0f} ms:"
            f" {'PASS' if recovered <= 1000 else 'FAIL'}"
        )


if __name__ == "__main__":
    main()
