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

HTTP is a small HTTP/1.1 keep-alive client on asyncio streams (uvloop when
installed): each outstanding request has its own connection, taken from an idle
pool or opened for it, so nothing queues inside the generator. On a 2-core
machine the generator shares the CPU with the server; this client costs a
fraction of what a general-purpose one does. A request is never retried.
"""

from __future__ import annotations

import asyncio
import base64
import random
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np

from spyglass.bench.scenario import Prepared
from spyglass.errors import ConfigError

ERROR = -1  # the status recorded for a transport error (refused, reset, timeout)
DROPPED = -2  # not sent: max_outstanding requests were already in flight
IDLE_S = 2.0  # idle connections older than this are closed, not reused (servers time them out)


@dataclass(frozen=True)
class Target:
    """Where requests go: host, port, TLS, and the headers every request carries."""

    host: str
    port: int
    tls: bool
    prefix: str  # the URL's path, put before every request's path
    authorization: str | None  # the Authorization header's value, if any
    public_url: str  # the URL without credentials, for reports
    headers: bytes  # the header lines every request carries

    @classmethod
    def from_url(cls, url: str, key: str | None = None) -> Target:
        """A target for ``url`` (http or https); ``key`` is sent as a bearer token."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"--url must be an http:// or https:// URL, not {url!r}")
        tls = parts.scheme == "https"
        port = parts.port or (443 if tls else 80)
        host_header = parts.hostname if parts.port is None else f"{parts.hostname}:{port}"
        headers = [f"Host: {host_header}", "Content-Type: application/json"]
        authorization = None
        if key:
            authorization = f"Bearer {key}"
        elif parts.username is not None:
            basic = f"{parts.username}:{parts.password or ''}".encode()
            authorization = f"Basic {base64.b64encode(basic).decode()}"
        if authorization:
            headers.append(f"Authorization: {authorization}")
        netloc = host_header if ":" not in parts.hostname else f"[{parts.hostname}]:{port}"
        prefix = parts.path.rstrip("/")
        public = urlunsplit((parts.scheme, netloc, prefix, "", ""))
        wire_headers = ("\r\n".join(headers) + "\r\n").encode()
        return cls(parts.hostname, port, tls, prefix, authorization, public, wire_headers)

    def wire(self, request: Prepared) -> bytes:
        """``request`` as the bytes sent on the connection."""
        head = f"{request.method} {self.prefix}{request.path} HTTP/1.1\r\n"
        head += f"Content-Length: {len(request.body)}\r\n"
        return head.encode() + self.headers + b"\r\n" + request.body


class _Connection:
    __slots__ = ("reader", "writer", "idle_since")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.idle_since = 0.0


class Client:
    """HTTP/1.1 keep-alive connections to one target; ``send`` returns the status code."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.idle: list[_Connection] = []
        self.opened = 0
        self._ssl = ssl.create_default_context() if target.tls else None

    async def send(self, wire: bytes, timeout: float) -> int:
        """Send one request and read the whole answer; ``ERROR`` on any transport failure."""
        conn = self._idle()
        try:
            async with asyncio.timeout(timeout):
                if conn is None:
                    reader, writer = await asyncio.open_connection(
                        self.target.host, self.target.port, ssl=self._ssl, limit=2**20
                    )
                    conn = _Connection(reader, writer)
                    self.opened += 1
                conn.writer.write(wire)
                if len(wire) > 65536:
                    await conn.writer.drain()
                status, keep = await _read_answer(conn.reader)
        except (OSError, EOFError, TimeoutError, ValueError, asyncio.IncompleteReadError):
            if conn is not None:
                conn.writer.close()
            return ERROR
        except asyncio.CancelledError:
            if conn is not None:
                conn.writer.close()
            raise
        if keep:
            conn.idle_since = time.perf_counter()
            self.idle.append(conn)
        else:
            conn.writer.close()
        return status

    def _idle(self) -> _Connection | None:
        now = time.perf_counter()
        while self.idle:
            conn = self.idle.pop()
            if now - conn.idle_since < IDLE_S and not conn.reader.at_eof():
                return conn
            conn.writer.close()
        return None

    async def aclose(self) -> None:
        """Close every idle connection and wait until they are closed."""
        idle, self.idle = self.idle, []
        for conn in idle:
            conn.writer.close()
        for conn in idle:
            try:
                await conn.writer.wait_closed()
            except OSError:
                pass


async def _read_answer(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Read one response; (status, whether the connection can be reused)."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    lower = head.lower()
    keep = b"\r\nconnection: close" not in lower and not head.startswith(b"HTTP/1.0")
    if b"\r\ntransfer-encoding: chunked" in lower:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                while await reader.readuntil(b"\r\n") != b"\r\n":
                    pass
                return status, keep
            await reader.readexactly(size + 2)
    at = lower.find(b"\r\ncontent-length:")
    if at >= 0:
        end = lower.index(b"\r\n", at + 2)
        await reader.readexactly(int(lower[at + 17 : end]))
    elif status not in (204, 304) and not 100 <= status < 200:
        await reader.read()  # delimited by the end of the connection
        keep = False
    return status, keep


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


_WRK_SCRIPT = """
local reqs = {%(reqs)s}
local order = {%(order)s}
local at = 0
s2xx, s429, s503, sother = 0, 0, 0, 0
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) at = math.random(#order) end
function request() at = at %% #order + 1; return reqs[order[at]] end
function response(status, headers, body)
  if status >= 200 and status < 300 then s2xx = s2xx + 1
  elseif status == 429 then s429 = s429 + 1
  elseif status == 503 then s503 = s503 + 1
  else sother = sother + 1 end
end
function done(summary, latency, requests)
  local c = {0, 0, 0, 0}
  for _, t in ipairs(threads) do
    c[1] = c[1] + t:get("s2xx"); c[2] = c[2] + t:get("s429")
    c[3] = c[3] + t:get("s503"); c[4] = c[4] + t:get("sother")
  end
  local e = summary.errors
  io.write(string.format('SPYGLASS-WRK {"requests": %%d, "duration_us": %%d, "s2xx": %%d, ' ..
    '"s429": %%d, "s503": %%d, "other": %%d, "errors": %%d, "mean": %%f, "max": %%f, ' ..
    '"p50": %%f, "p90": %%f, "p95": %%f, "p99": %%f, "p999": %%f}\\n',
    summary.requests, summary.duration, c[1], c[2], c[3], c[4],
    e.connect + e.read + e.write + e.timeout, latency.mean, latency.max,
    latency:percentile(50), latency:percentile(90), latency:percentile(95),
    latency:percentile(99), latency:percentile(99.9)))
end
"""


def _lua_string(data: bytes) -> str:
    """``data`` as a Lua string literal (escaped, so CR LF survive)."""
    out = []
    for byte in data:
        char = chr(byte)
        if char in '"\\' or not 32 <= byte < 127:
            out.append(f"\\{byte:03d}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def wrk_step(
    target: Target,
    requests: Sequence[Prepared],
    *,
    connections: int,
    duration: float,
    timeout_s: float,
    threads: int = 2,
) -> StepResult:
    """A closed-loop step run by ``wrk``: ``connections`` connections, each sending its next
    request as soon as the previous one is answered, cycling through ``requests``.

    There is no offered rate (``offered_rate`` is None), no generator lag and, as
    in any closed loop, a slow server slows the senders down: read the figures as
    "what N busy clients get", not as latency at a given arrival rate.
    """
    import json
    import shutil
    import subprocess
    import tempfile

    exe = shutil.which("wrk")
    if exe is None:
        raise ConfigError("--engine wrk: wrk is not installed (apt-get install wrk)")
    distinct: list[Prepared] = []
    index: dict[int, int] = {}
    for request in requests:
        if id(request) not in index:
            index[id(request)] = len(distinct) + 1  # Lua counts from 1
            distinct.append(request)
    lua = _WRK_SCRIPT % {
        "reqs": ",\n".join(_lua_string(target.wire(r)) for r in distinct),
        "order": ",".join(str(index[id(r)]) for r in requests),
    }
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        script.write(lua)
        script.flush()
        scheme = "https" if target.tls else "http"
        argv = [exe, f"-t{min(threads, connections)}", f"-c{connections}", f"-d{duration:g}s"]
        argv += [f"--timeout={timeout_s:g}s", "-s", script.name]
        argv.append(f"{scheme}://{target.host}:{target.port}/")
        ran = subprocess.run(argv, capture_output=True, text=True, check=False)
    line = next((x for x in ran.stdout.splitlines() if x.startswith("SPYGLASS-WRK ")), None)
    if line is None:
        raise ConfigError(f"wrk failed: {(ran.stderr or ran.stdout).strip()[:300]}")
    data = json.loads(line.removeprefix("SPYGLASS-WRK "))
    seconds = data["duration_us"] / 1e6
    ms = {key: round(data[key] / 1000, 3) for key in ("mean", "max", "p50", "p90", "p95", "p99")}
    return StepResult(
        offered_rate=None,
        achieved_rate=round(data["s2xx"] / seconds, 2),
        duration_s=round(seconds, 3),
        sent=data["requests"] + data["errors"],
        answered=data["requests"],
        dropped=0,
        mean_ms=ms["mean"],
        p50_ms=ms["p50"],
        p90_ms=ms["p90"],
        p95_ms=ms["p95"],
        p99_ms=ms["p99"],
        p999_ms=round(data["p999"] / 1000, 3),
        max_ms=ms["max"],
        status={
            "2xx": data["s2xx"],
            "429": data["s429"],
            "503": data["s503"],
            "other": data["other"],
            "errors": data["errors"],
        },
        generator_lag_p99_ms=None,
        generator_behind=False,
        generator_cpu=None,
        engine="wrk",
        connections=connections,
    )
