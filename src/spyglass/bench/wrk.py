"""Closed-loop load steps run by ``wrk``, for users who trust it (``--engine wrk``)."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections.abc import Sequence

from spyglass.bench.http import Target
from spyglass.bench.load import StepResult
from spyglass.bench.scenario import Prepared
from spyglass.errors import ConfigError

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
