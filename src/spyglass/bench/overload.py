"""``spyglass bench overload``: does the server keep serving its capacity past it?

The capacity R is found first (the highest rate whose p95 holds with only 2xx
answers, as ``bench capacity`` finds it); then the generator offers 0.5, 1, 2, 4
and 8 times R, open loop, one step per level. Each level reports 2xx/s, the
429, 503, error and timeout counts, the latency of the 2xx answers and of the
refusals (from the intended send time), and the server's CPU when it is local.

The targets (issue 16), each PASS or FAIL, or n/a when the figure is missing:

- goodput: 2xx/s at 2x, 4x and 8x as a share of 2xx/s at 1x, at least 90%, 75%
  and 50% for cheap requests (vector search, ``--kind vector``) and 90%, 90% and
  85% for encoder-bound ones (``--kind heavy``);
- admitted stay fast: 2xx p99 at 4x at most 2x the 2xx p99 at 0.5x; at 1x, 3x;
- refusals are fast: their p99 at 8x under 10 ms; and cheap: the server CPU a
  refusal costs, fitted over the levels (CPU seconds = a x 2xx + b x refusals,
  least squares), at most 5% of what an answer costs (``b / a``);
- only 2xx, 429 and 503 reach the client at any level: no errors or timeouts.

A level at which the generator fell behind its schedule is marked: its figures
say more about the generator than the server (run it on other cores).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from spyglass.bench.load import StepResult

LEVELS = (0.5, 1.0, 2.0, 4.0, 8.0)
GOODPUT = {
    "vector": {2.0: 0.90, 4.0: 0.75, 8.0: 0.50},
    "heavy": {2.0: 0.90, 4.0: 0.90, 8.0: 0.85},
}
REFUSAL_P99_MS = 10.0
REFUSAL_SHARE = 0.05


@dataclass
class Check:
    """One target: what it asks, what was measured, and whether it holds (None: n/a)."""

    target: str
    want: str
    got: str
    passed: bool | None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def level_row(level: float, step: StepResult) -> dict[str, Any]:
    """The figures of one level, as the table and the report show them."""
    s = step.status
    cpu = step.server.get("server_cpu")
    return {
        "level": level,
        "offered_rate": step.offered_rate,
        "ok_rate": step.achieved_rate,
        "ok": s["2xx"],
        "429": s["429"],
        "503": s["503"],
        "other": s["other"],
        "errors": s["errors"] + step.dropped,
        "ok_p50_ms": step.ok_p50_ms,
        "ok_p99_ms": step.ok_p99_ms,
        "refused_p99_ms": step.refused_p99_ms,
        "server_cpu": cpu,
        "generator_behind": step.generator_behind,
        "duration_s": step.duration_s,
    }


def refusal_cost(rows: list[dict[str, Any]]) -> tuple[float, float] | None:
    """Server CPU seconds per answer and per refusal, fitted over the levels; None when
    the server's CPU is unknown or the levels cannot separate the two."""
    usable = [r for r in rows if r["server_cpu"] is not None and r["duration_s"]]
    if len(usable) < 2:
        return None
    x = np.array([[r["ok"], r["429"] + r["503"]] for r in usable], dtype=np.float64)
    y = np.array([r["server_cpu"] * r["duration_s"] for r in usable], dtype=np.float64)
    if np.linalg.matrix_rank(x) < 2:
        return None
    (answer, refusal), *_ = np.linalg.lstsq(x, y, rcond=None)
    if answer <= 0:
        return None
    return float(answer), float(max(refusal, 0.0))


def checks(rows: list[dict[str, Any]], kind: str) -> list[Check]:
    """Every target of the module docstring against ``rows`` (one per level)."""
    at = {r["level"]: r for r in rows}
    out: list[Check] = []
    base = at.get(1.0)
    for level, share in GOODPUT[kind].items():
        row = at.get(level)
        if base is None or row is None or not base["ok_rate"]:
            out.append(Check(f"goodput at {level:g}x", f">= {share:.0%} of 1x", "n/a", None))
            continue
        got = row["ok_rate"] / base["ok_rate"]
        out.append(
            Check(f"goodput at {level:g}x", f">= {share:.0%} of 1x", f"{got:.0%}", got >= share)
        )
    calm = at.get(0.5)
    for level, factor in ((4.0, 2.0), (1.0, 3.0)):
        row = at.get(level)
        want = f"<= {factor:g} x p99 at 0.5x"
        if calm is None or row is None or not calm["ok_p99_ms"] or row["ok_p99_ms"] is None:
            out.append(Check(f"2xx p99 at {level:g}x", want, "n/a", None))
            continue
        ratio = row["ok_p99_ms"] / calm["ok_p99_ms"]
        got = f"{row['ok_p99_ms']:.1f} ms = {ratio:.2f} x {calm['ok_p99_ms']:.1f} ms"
        out.append(Check(f"2xx p99 at {level:g}x", want, got, ratio <= factor))
    top = at.get(8.0)
    if top is None or top["refused_p99_ms"] is None:
        out.append(Check("refusal p99 at 8x", f"< {REFUSAL_P99_MS:g} ms", "n/a", None))
    else:
        p99 = top["refused_p99_ms"]
        out.append(
            Check(
                "refusal p99 at 8x",
                f"< {REFUSAL_P99_MS:g} ms",
                f"{p99:.1f} ms",
                p99 < REFUSAL_P99_MS,
            )
        )
    cost = refusal_cost(rows)
    if cost is None:
        out.append(Check("refusal CPU", f"<= {REFUSAL_SHARE:.0%} of an answer", "n/a", None))
    else:
        answer, refusal = cost
        share = refusal / answer
        got = f"{refusal * 1e6:.0f} µs vs {answer * 1e6:.0f} µs = {share:.1%}"
        out.append(
            Check(
                "refusal CPU", f"<= {REFUSAL_SHARE:.0%} of an answer", got, share <= REFUSAL_SHARE
            )
        )
    bad = sum(r["errors"] + r["other"] for r in rows)
    out.append(
        Check("only 2xx/429/503", "no errors, timeouts or other statuses", f"{bad}", bad == 0)
    )
    return out
