"""The open-loop load generator: requests leave on a schedule, whatever the server does.

Each step offers a rate: a schedule of *intended* send times (evenly spaced, or
Poisson arrivals) is fixed before the step starts, and each request's latency is
measured from its intended time, not from when it actually left. A server that
falls behind therefore shows its queueing in the latency instead of slowing the
generator down and hiding it (no coordinated omission): a server that takes
50 ms per request, one at a time, shows a p50 of at least 50 ms at any rate,
and far more when offered twice what it can serve.

The generator checks itself. Its *lag* is when it actually got to a request
minus the intended time; a step whose lag p99 is above ``lag_limit_ms`` is
flagged ``generator_behind`` (its latencies then include the generator's own
delay). Requests still in flight are capped at ``max_outstanding`` as a safety
valve: a request that would go past it is dropped and counted as generator
overload, never silently.

HTTP goes through the small keep-alive client of :mod:`spyglass.bench.http` (uvloop
when installed); :mod:`spyglass.bench.wrk` runs closed-loop steps with wrk instead.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from spyglass.bench.http import ERROR, Client, Target
from spyglass.bench.scenario import Prepared

DROPPED = -2  # not sent: max_outstanding requests were already in flight


def schedule(rate: float, duration: float, arrival: str, rng: random.Random) -> list[float]:
    """Intended send times (seconds from the step's start) of ``rate`` per second."""
    if arrival == "constant":
        return [i / rate for i in range(int(rate * duration + 1e-9))]
    times, t = [], rng.expovariate(rate)
    while t < duration:
        times.append(t)
        t += rng.expovariate(rate)
    return times


@dataclass
class Live:
    """Counters of the step in progress, read by a display while it runs."""

    rate: float = 0.0
    duration: float = 0.0
    elapsed: float = 0.0
    sent: int = 0
    answered: int = 0
    ok: int = 0
    errors: int = 0
    dropped: int = 0
    in_flight: int = 0
    peak: int = 0  # most requests in flight at once: the connections the step needed


@dataclass
class StepResult:
    """One step's figures, as they appear in the report's ``steps``."""

    offered_rate: float | None
    achieved_rate: float
    duration_s: float
    sent: int
    answered: int
    dropped: int
    mean_ms: float | None
    p50_ms: float | None
    p90_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    p999_ms: float | None
    max_ms: float | None
    status: dict[str, int]
    generator_lag_p99_ms: float | None
    generator_behind: bool
    generator_cpu: float | None
    by_kind: dict[str, dict[str, Any]] = field(default_factory=dict)
    engine: str = "open-loop"
    connections: int | None = None
    partial: bool = False
    server: dict[str, Any] = field(default_factory=dict)
    ok_p50_ms: float | None = None
    """Latency of the 2xx answers alone (what admitted requests saw)."""
    ok_p99_ms: float | None = None
    refused_p99_ms: float | None = None
    """Latency of the 429 and 503 answers alone (how fast refusals came)."""

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def step_result(
    *,
    rate: float,
    duration: float,
    elapsed: float,
    kinds: Sequence[str],
    statuses: Sequence[int],
    latencies: Sequence[float],
    lags: Sequence[float],
    lag_limit_ms: float,
    cpu: float | None,
    connections: int,
    partial: bool = False,
) -> StepResult:
    """Figures of a step from per-request records (latency in seconds, NaN if unanswered)."""
    status = np.asarray(statuses, dtype=np.int64)
    lat = np.asarray(latencies, dtype=np.float64) * 1000
    answered = status > 0
    ok = int(np.count_nonzero((status >= 200) & (status < 300)))
    counts = {
        "2xx": ok,
        "429": int(np.count_nonzero(status == 429)),
        "503": int(np.count_nonzero(status == 503)),
        "other": 0,
        "errors": int(np.count_nonzero(status == ERROR)),
    }
    counts["other"] = int(np.count_nonzero(answered)) - ok - counts["429"] - counts["503"]
    pct = _percentiles(lat[answered])
    ok_pct = _percentiles(lat[(status >= 200) & (status < 300)])
    refused_pct = _percentiles(lat[(status == 429) | (status == 503)])
    lag = np.asarray(lags, dtype=np.float64) * 1000
    lag_p99 = float(np.percentile(lag, 99)) if len(lag) else None
    dropped = int(np.count_nonzero(status == DROPPED))
    by_kind: dict[str, dict[str, Any]] = {}
    names = np.asarray(kinds)
    for kind in sorted(set(kinds)):
        mine = names == kind
        p = _percentiles(lat[mine & answered])
        by_kind[kind] = {
            "sent": int(np.count_nonzero(mine & (status != DROPPED))),
            "2xx": int(np.count_nonzero(mine & (status >= 200) & (status < 300))),
            "p50_ms": p["p50_ms"],
            "p99_ms": p["p99_ms"],
        }
    return StepResult(
        offered_rate=rate,
        achieved_rate=round(ok / elapsed, 2) if elapsed > 0 else 0.0,
        duration_s=round(elapsed, 3),
        sent=len(status) - dropped,
        answered=int(np.count_nonzero(answered)),
        dropped=dropped,
        status=counts,
        generator_lag_p99_ms=None if lag_p99 is None else round(lag_p99, 3),
        generator_behind=dropped > 0 or (lag_p99 is not None and lag_p99 > lag_limit_ms),
        generator_cpu=cpu,
        by_kind=by_kind,
        connections=connections,
        partial=partial,
        mean_ms=pct["mean_ms"],
        p50_ms=pct["p50_ms"],
        p90_ms=pct["p90_ms"],
        p95_ms=pct["p95_ms"],
        p99_ms=pct["p99_ms"],
        p999_ms=pct["p999_ms"],
        max_ms=pct["max_ms"],
        ok_p50_ms=ok_pct["p50_ms"],
        ok_p99_ms=ok_pct["p99_ms"],
        refused_p99_ms=refused_pct["p99_ms"],
    )


def _percentiles(ms: np.ndarray) -> dict[str, float | None]:
    names = ("p50_ms", "p90_ms", "p95_ms", "p99_ms", "p999_ms")
    if not len(ms):
        return {name: None for name in (*names, "mean_ms", "max_ms")}
    values = np.percentile(ms, [50, 90, 95, 99, 99.9])
    out: dict[str, float | None] = {
        name: round(float(value), 3) for name, value in zip(names, values, strict=True)
    }
    out["mean_ms"] = round(float(ms.mean()), 3)
    out["max_ms"] = round(float(ms.max()), 3)
    return out


class Generator:
    """Runs steps against one target with one request mix; keeps every finished step.

    ``steps`` holds the results so far, also after a cancelled (Ctrl-C) step,
    which is recorded with ``partial`` set, so a caller can still report them.
    """

    def __init__(
        self,
        target: Target,
        pick: Callable[[], Prepared],
        *,
        arrival: str = "poisson",
        timeout_s: float = 10.0,
        max_outstanding: int = 4000,
        lag_limit_ms: float = 10.0,
        seed: int = 0,
    ) -> None:
        self.target = target
        self.client = Client(target)
        self.pick = pick
        self.arrival = arrival
        self.timeout_s = timeout_s
        self.max_outstanding = max_outstanding
        self.lag_limit_ms = lag_limit_ms
        self.rng = random.Random(seed)
        self.steps: list[StepResult] = []
        self.live = Live()
        self._wires: dict[int, bytes] = {}

    def _wire(self, request: Prepared) -> bytes:
        wire = self._wires.get(id(request))
        if wire is None:
            wire = self._wires[id(request)] = self.target.wire(request)
        return wire

    async def step(self, rate: float, duration: float) -> StepResult:
        """Offer ``rate`` requests/s for ``duration`` s, wait for the answers, record the step."""
        offsets = schedule(rate, duration, self.arrival, self.rng)
        n = len(offsets)
        kinds: list[str] = [""] * n
        statuses = [0] * n
        latencies = [float("nan")] * n
        lags = [0.0] * n
        live = self.live = Live(rate=rate, duration=duration)
        client, timeout = self.client, self.timeout_s
        pending: set[asyncio.Task[None]] = set()
        cpu0 = time.process_time()
        start = time.perf_counter() + 0.005
        last = start

        async def one(i: int, intended: float, wire: bytes) -> None:
            nonlocal last
            live.in_flight += 1
            live.peak = max(live.peak, live.in_flight)
            status = await client.send(wire, timeout)
            done = time.perf_counter()
            live.in_flight -= 1
            statuses[i] = status
            if status > 0:
                latencies[i] = done - intended
                live.answered += 1
                live.ok += 200 <= status < 300
                last = max(last, done)
            else:
                live.errors += 1

        issued = 0
        try:
            for i, offset in enumerate(offsets):
                intended = start + offset
                delay = intended - time.perf_counter()
                if delay > 0 or i % 32 == 31:  # when behind, still let answers be read
                    await asyncio.sleep(max(delay, 0.0))
                issued = i + 1
                lags[i] = time.perf_counter() - intended
                request = self.pick()
                kinds[i] = request.kind
                live.elapsed = time.perf_counter() - start
                if live.in_flight >= self.max_outstanding:
                    statuses[i] = DROPPED
                    live.dropped += 1
                    continue
                task = asyncio.create_task(one(i, intended, self._wire(request)))
                pending.add(task)
                task.add_done_callback(pending.discard)
                live.sent += 1
            if pending:
                await asyncio.gather(*pending)
        except asyncio.CancelledError:
            for task in pending:
                task.cancel()
            records = (kinds[:issued], statuses[:issued], latencies[:issued], lags[:issued])
            self.steps.append(self._result(rate, duration, start, last, *records, cpu0, True))
            raise
        records = (kinds, statuses, latencies, lags)
        result = self._result(rate, duration, start, last, *records, cpu0, False)
        self.steps.append(result)
        return result

    def _result(
        self,
        rate: float,
        duration: float,
        start: float,
        last: float,
        kinds: list[str],
        statuses: list[int],
        latencies: list[float],
        lags: list[float],
        cpu0: float,
        partial: bool,
    ) -> StepResult:
        now = time.perf_counter()
        wall = max(now - start, 1e-9)
        elapsed = wall if partial else max(duration, last - start)
        cpu = round((time.process_time() - cpu0) / wall, 3)
        return step_result(
            rate=rate,
            duration=duration,
            elapsed=elapsed,
            kinds=kinds,
            statuses=statuses,
            latencies=latencies,
            lags=lags,
            lag_limit_ms=self.lag_limit_ms,
            cpu=cpu,
            connections=self.live.peak,
            partial=partial,
        )

    async def aclose(self) -> None:
        """Close the generator's connections."""
        await self.client.aclose()
