"""Capacity: the highest rate a server holds within a p95 target, and what limits it.

:func:`find_capacity` ramps the offered rate by ``step_factor`` until a step's
p95 crosses the target or anything but a 2xx comes back, then narrows the gap
between the last step that held and the first that did not (``refine`` more
steps, geometric midpoints). The sustainable rate is what the best passing step
achieved; the users it serves follow from Little's law,
``users = rate x (think time + mean response time)``.

:class:`ServerProbe` reads the server around each step through its own API:
``/metrics`` (Prometheus text; needs a key with the admin scope unless
``metrics_public``) for request time, encoder time, shed and rate-limited
requests and cache hits, and ``/status`` (admin) for the version and settings.
When the server is on this machine (a loopback URL) it also reads how busy the
CPU was from ``/proc/stat``. :func:`limited_by` turns those figures into a
simple, honest attribution, and says "unknown" when they do not point anywhere.
"""

from __future__ import annotations

import math
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from spyglass.bench.load import Generator, StepResult

#: Prometheus series summed over their labels (meta routes left out) for each step.
SERIES = (
    "spyglass_http_request_duration_seconds_sum",
    "spyglass_http_request_duration_seconds_count",
    "spyglass_encoder_batch_duration_seconds_sum",
    "spyglass_encoder_batch_duration_seconds_count",
    "spyglass_encoder_batch_size_sum",
    "spyglass_http_shed_total",
    "spyglass_http_rate_limited_total",
    "spyglass_cache_hits_total",
    "spyglass_cache_misses_total",
)
_META_ROUTES = ('route="/metrics"', 'route="/status"', 'route="/readyz"', 'route="/livez"')
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
#: Share of the CPU (the machine's, or the server's workers') from which a step whose p95
#: crossed the target counts as limited by CPU: queueing grows well before 100%.
BUSY = 0.7


def parse_metrics(text: str) -> dict[str, float]:
    """Sum each series of :data:`SERIES` over its labels (the meta routes left out)."""
    sums = dict.fromkeys(SERIES, 0.0)
    for line in text.splitlines():
        if not line.startswith("spyglass_") or any(r in line for r in _META_ROUTES):
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in sums:
            try:
                sums[name] += float(line.rsplit(" ", 1)[1])
            except ValueError:
                continue
    return sums


def cpu_jiffies() -> tuple[int, int, int, int] | None:
    """(busy in processes, busy in interrupts, stolen, total) jiffies of the whole machine
    from /proc/stat, or None off Linux.

    Interrupt time (the kernel's network work for loopback traffic, mostly) is charged
    to no process, and steal is time a virtual machine's host gave to someone else, so
    both are kept apart from what processes used.
    """
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    except (OSError, ValueError):
        return None
    fields += [0] * (8 - len(fields))
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return user + nice + system, irq + softirq, steal, sum(fields[:8])


def listening_pids(port: int) -> list[int]:
    """Processes holding a socket that listens on ``port`` (a server's master and workers).

    Linux only (``/proc``); an empty list elsewhere or when nothing is found.
    """
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{fields[9]}]")
    pids = []
    for entry in Path("/proc").iterdir() if inodes else ():
        if entry.name.isdigit() and entry.name != str(os.getpid()):
            try:
                if any(os.readlink(fd) in inodes for fd in (entry / "fd").iterdir()):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def process_cpu_s(pids: list[int]) -> float:
    """CPU seconds (user + system) used so far by ``pids``, from /proc/<pid>/stat."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


class ServerProbe:
    """The server's own view of a step: ``/metrics`` deltas and, when local, CPU busy."""

    def __init__(self, client: httpx.AsyncClient, url: str) -> None:
        self.client = client
        parts = urlsplit(url)
        self.local = parts.hostname in _LOOPBACK
        port = parts.port or (443 if parts.scheme == "https" else 80)
        self.pids = listening_pids(port) if self.local else []
        self.workers: int | None = None
        self.metrics_readable: bool | None = None

    async def describe(self) -> dict[str, Any]:
        """``{"version", "settings", "workers"}`` as far as the key lets us read them."""
        out: dict[str, Any] = {"version": None, "settings": None}
        try:
            status = await self.client.get("/status")
            if status.status_code == 200:
                data = status.json()
                out["version"], out["settings"] = data.get("version"), data.get("settings")
                self.workers = (out["settings"] or {}).get("workers")
            if out["version"] is None:
                api = await self.client.get("/openapi.json")
                if api.status_code == 200:
                    out["version"] = api.json().get("info", {}).get("version")
                else:
                    out["version"] = status.headers.get("server")
        except (httpx.HTTPError, ValueError):
            pass
        return out

    async def snapshot(self) -> dict[str, Any]:
        """Counters now: the metric sums (if readable) and the CPU jiffies (if local)."""
        snap: dict[str, Any] = {
            "cpu": cpu_jiffies() if self.local else None,
            "server_cpu": process_cpu_s(self.pids) if self.pids else None,
            "metrics": None,
        }
        if self.metrics_readable is not False:
            try:
                answer = await self.client.get("/metrics")
            except httpx.HTTPError:
                answer = None
            self.metrics_readable = answer is not None and answer.status_code == 200
            if answer is not None and self.metrics_readable:
                snap["metrics"] = parse_metrics(answer.text)
        return snap

    def delta(
        self, before: dict[str, Any], after: dict[str, Any], seconds: float
    ) -> dict[str, Any]:
        """What the server did between two snapshots ``seconds`` apart."""
        out: dict[str, Any] = {}
        if before["cpu"] and after["cpu"]:
            busy, irq, steal, total = (
                b - a for a, b in zip(before["cpu"], after["cpu"], strict=True)
            )
            if total > 0:
                out["cpu_busy"] = round((busy + irq + steal) / total, 3)
                out["cores"] = cores = os.cpu_count() or 1
                out["irq_cpu"] = round(cores * irq / total, 3)  # cores in interrupts
                out["steal_cpu"] = round(cores * steal / total, 3)  # cores the host took
                out["process_cpu"] = round(cores * busy / total, 3)  # cores in processes
        if before["server_cpu"] is not None and seconds > 0:
            used = after["server_cpu"] - before["server_cpu"]
            out["server_cpu"] = round(used / seconds, 3)  # cores the server's processes used
        if self.workers:
            out["workers"] = self.workers
        if before["metrics"] is not None and after["metrics"] is not None:
            d = {k: after["metrics"][k] - before["metrics"][k] for k in SERIES}
            requests = d["spyglass_http_request_duration_seconds_count"]
            lookups = d["spyglass_cache_hits_total"] + d["spyglass_cache_misses_total"]
            encoder_s = d["spyglass_encoder_batch_duration_seconds_sum"]
            request_s = d["spyglass_http_request_duration_seconds_sum"]
            out.update(
                requests=int(requests),
                server_mean_ms=round(1000 * request_s / requests, 3) if requests else None,
                encoder_busy_cores=round(encoder_s / seconds, 3) if seconds > 0 else None,
                encoder_share=round(encoder_s / request_s, 3) if request_s > 0 else None,
                encoder_calls=int(d["spyglass_encoder_batch_duration_seconds_count"]),
                encoder_inputs=int(d["spyglass_encoder_batch_size_sum"]),
                shed=int(d["spyglass_http_shed_total"]),
                rate_limited=int(d["spyglass_http_rate_limited_total"]),
                cache_hit_ratio=round(d["spyglass_cache_hits_total"] / lookups, 3)
                if lookups
                else None,
            )
        return out


async def measured_step(
    generator: Generator, probe: ServerProbe | None, rate: float, duration: float
) -> StepResult:
    """One generator step with the server's figures for it in ``server``."""
    before = await probe.snapshot() if probe else None
    step = await generator.step(rate, duration)
    if probe is not None and before is not None:
        srv = step.server = probe.delta(before, await probe.snapshot(), step.duration_s)
        if None not in (srv.get("process_cpu"), srv.get("server_cpu"), step.generator_cpu):
            busy = srv["process_cpu"] - srv["server_cpu"] - (step.generator_cpu or 0)
            srv["others_cpu"] = round(max(0.0, busy), 3)  # other processes: a shared machine
    return step


def passes(step: StepResult, p95_ms: float) -> bool:
    """Whether a step holds: every request answered 2xx within the p95 target."""
    s = step.status
    return (
        not step.partial
        and step.dropped == 0
        and s["2xx"] > 0
        and s["429"] + s["503"] + s["other"] + s["errors"] == 0
        and step.p95_ms is not None
        and step.p95_ms <= p95_ms
    )


async def find_capacity(
    run: Callable[[float], Awaitable[StepResult]],
    *,
    p95_ms: float,
    start_rate: float,
    step_factor: float,
    max_rate: float,
    refine: int = 2,
) -> tuple[StepResult | None, StepResult | None]:
    """Ramp ``run(rate)`` until a step fails; (best passing step, first failing step)."""
    best: StepResult | None = None
    failed: StepResult | None = None
    rate = start_rate
    while rate <= max_rate * 1.0001:
        step = await run(rate)
        if not passes(step, p95_ms):
            failed = step
            break
        best = step
        rate *= step_factor
    for _ in range(refine if failed is not None else 0):
        assert failed is not None and failed.offered_rate is not None
        high = failed.offered_rate
        low = best.offered_rate if best is not None and best.offered_rate else None
        rate = math.sqrt(low * high) if low else high / step_factor**2
        if low and high / rate < 1.05:
            break
        step = await run(round(rate, 2))
        if passes(step, p95_ms):
            best = step
        else:
            failed = step
    return best, failed


def capacity_result(
    best: StepResult | None,
    failed: StepResult | None,
    *,
    p95_ms: float,
    think_s: float,
    max_rate: float,
    steps: list[StepResult] | None = None,
) -> dict[str, Any]:
    """The report's ``result``: sustainable rate, users by Little's law, what limits it.

    The attribution reads the first failing step above the best one; shedding or rate
    limiting seen in any higher step of ``steps`` is added to it.
    """
    rate = best.achieved_rate if best is not None else 0.0
    response_s = (best.mean_ms or 0.0) / 1000 if best is not None else 0.0
    if failed is not None:
        why = limited_by(failed.as_dict(), p95_ms)
        for step in steps or []:
            shed = step.server.get("shed") or step.status["503"]
            if step is not failed and shed and not why.startswith("admission"):
                why += f"; at {step.offered_rate:g}/s admission control shed {shed} (503)"
                break
    elif best is not None:
        why = f"not reached: p95 held up to the highest rate tried ({max_rate:g}/s, --max-rate)"
    else:
        why = "unknown: no step ran"
    return {
        "sustainable_rate": rate,
        "users": round(rate * (think_s + response_s), 1),
        "think_s": think_s,
        "response_ms": round(response_s * 1000, 3),
        "p95_target_ms": p95_ms,
        "p95_ms": best.p95_ms if best is not None else None,
        "limited_by": why,
    }


def limited_by(step: dict[str, Any], p95_ms: float) -> str:
    """Why ``step`` (the first that failed) failed, from its status counts and the server's
    own figures; "unknown" when they point nowhere."""
    s, srv = step["status"], step.get("server") or {}
    behind = (
        f"; the generator was behind too (lag p99 {step['generator_lag_p99_ms']:.0f} ms)"
        if step.get("generator_behind") and not step.get("dropped")
        else ""
    )
    if step.get("dropped"):
        return (
            f"the load generator: {step['dropped']} requests dropped at max_outstanding"
            " (generator overload; raise it or run the generator on another machine)"
        )
    if srv.get("shed") or (s["503"] and "shed" not in srv):
        n = srv.get("shed") or s["503"]
        return f"admission control: {n} requests shed with 503 (the admission_* settings){behind}"
    if s["429"]:
        return f"rate limiting: {s['429']} requests answered 429{behind}"
    if s["errors"]:
        return f"transport errors: {s['errors']} requests refused, reset or timed out{behind}"
    if s["other"]:
        return f"errors: {s['other']} answers other than 2xx, 429 or 503{behind}"
    crossed = f"p95 {step['p95_ms']:.0f} ms > {p95_ms:g} ms" if step.get("p95_ms") else "latency"
    cpu, enc, used = srv.get("cpu_busy"), srv.get("encoder_busy_cores"), srv.get("server_cpu")
    gen = step.get("generator_cpu")
    cores = srv.get("cores") or 1
    server_max = min(cores, srv["workers"]) if srv.get("workers") else cores
    if (cpu is not None and cpu >= BUSY) or (used is not None and used >= BUSY * server_max):
        load = [f"server processes {used:.2f} cores" if used is not None else ""]
        load.append(f"generator {gen:.2f}" if gen is not None else "")
        load.append(f"machine {cpu:.0%} of {cores} cores busy" if cpu is not None else "")
        if srv.get("workers"):
            load.append(f"{srv['workers']} workers")
        for key, name in (("others_cpu", "other processes"), ("irq_cpu", "interrupts")):
            if (srv.get(key) or 0) > 0.1:
                load.append(f"{name} {srv[key]:.2f}")
        if (srv.get("steal_cpu") or 0) > 0.1:
            load.append(f"stolen by the host {srv['steal_cpu']:.2f}")
        spent = ", ".join(part for part in load if part)
        busy = used if used is not None else (cpu or 0) * cores
        if enc is not None and busy and enc >= 0.5 * busy:
            return f"CPU in the encoder ({crossed}; encoder {enc:.2f} cores; {spent}){behind}"
        share = f"; encoder {enc:.2f} cores" if enc else ""
        return f"CPU outside the encoder: HTTP, search, JSON ({crossed}; {spent}{share}){behind}"
    if cpu is not None:
        return f"unknown ({crossed} with the CPU only {cpu:.0%} busy){behind}"
    if srv.get("encoder_share") is not None and srv["encoder_share"] >= 0.5:
        share = srv["encoder_share"]
        return f"the encoder ({crossed}; {share:.0%} of the server's request time){behind}"
    if not srv:
        return f"unknown ({crossed}; /metrics not readable with this key){behind}"
    return f"unknown ({crossed}){behind}"
