"""``spyglass bench overload``: find the capacity R, then offer 0.5x to 8x of it.

The figures and the targets are :mod:`spyglass.bench.overload`'s; the steps are
``bench load``'s open-loop generator (:class:`spyglass.cli.bench_load.Run`), so
the report is the same JSON and HTML, with the levels and the checks in its
``result``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.table import Table

from spyglass.cli.bench_load import (
    Run,
    _finish,
    _scenario,
    console,
    duration,
    numbers,
    start_rate_option,
)
from spyglass.cli.bench_load import target_options as _target_options
from spyglass.errors import ConfigError


@click.command(name="overload")
@_target_options
@click.option("--p95", "p95", default="100ms", show_default=True, help="p95 target that sets R.")
@click.option(
    "--rate",
    type=click.FloatRange(0.1),
    default=None,
    help="Take R (req/s) as given instead of finding it.",
)
@click.option(
    "--levels",
    default="0.5,1,2,4,8",
    show_default=True,
    help="Multiples of R to offer, one step each.",
)
@click.option(
    "--kind",
    type=click.Choice(["auto", "vector", "heavy"]),
    default="auto",
    show_default=True,
    help="Goodput targets: vector (cheap requests) or heavy (encoder-bound); auto: vector"
    " when the mix is vector searches only.",
)
@start_rate_option
def overload_command(
    url: str,
    collection: str,
    scenario_path: Path | None,
    key: str | None,
    mix: str | None,
    step_s: float | None,
    out: Path | None,
    p95: str,
    rate: float | None,
    levels: str,
    kind: str,
    start_rate: float,
) -> None:
    """Does the server keep serving its capacity past it? Find R, offer multiples of it.

    R is the highest rate with p95 <= --p95 and only 2xx answers (as bench capacity
    finds it) unless --rate gives it. Each level of --levels is then offered for
    --step-s seconds, open loop. Prints a table per level (2xx/s, refusals, errors,
    2xx p50/p99, refusal p99, server CPU) and PASS/FAIL for each target: goodput at
    2x/4x/8x, admitted p99 against 0.5x, refusal p99 and CPU, only 2xx/429/503.
    """
    from spyglass.bench.capacity import find_capacity
    from spyglass.bench.overload import checks, level_row
    from spyglass.bench.scenario import parse_mix

    update: dict[str, Any] = {}
    if mix:
        update["mix"] = parse_mix(mix)
    if step_s:
        update["step_s"] = step_s
    multiples = numbers(levels, "--levels")
    p95_ms = duration(p95, "--p95") * 1000
    run = Run(url, key, collection, _scenario(scenario_path, update))
    found: dict[str, Any] = {"levels": []}

    async def steps() -> None:
        capacity = rate
        if capacity is None:
            best, _ = await find_capacity(
                run.step, p95_ms=p95_ms, start_rate=start_rate, step_factor=1.5, max_rate=1e5
            )
            if best is None:
                raise ConfigError(
                    f"no rate held p95 <= {p95} with only 2xx answers, down to {start_rate:g}/s"
                    " (--start-rate)"
                )
            capacity = best.achieved_rate
        found["rate"] = capacity
        for level in multiples:
            found["levels"].append((level, await run.step(round(capacity * level, 2))))

    run.execute(steps, {"p95_ms": p95_ms, "levels": multiples, "rate": rate})
    rows = [level_row(level, step) for level, step in found["levels"]]
    chosen = kind
    if chosen == "auto":
        chosen = "vector" if set(run.mix) == {"vector"} else "heavy"
    result = None
    if "rate" in found:
        result = {
            "capacity_rate": found["rate"],
            "kind": chosen,
            "levels": rows,
            "checks": [c.as_dict() for c in checks(rows, chosen)],
        }
        console.print(levels_table(result))
    report = run.report("overload", result)
    _finish(report, out or Path("bench-overload"), run.interrupted)


def levels_table(result: dict[str, Any]) -> Table:
    """The levels, then the checks, as one table each."""
    table = Table(
        "level",
        "offered/s",
        "2xx/s",
        "429",
        "503",
        "errors",
        "2xx p50",
        "2xx p99",
        "refused p99",
        "server cores",
        title=f"bench overload: R = {result['capacity_rate']:,.0f} req/s ({result['kind']})",
        caption="latencies in ms from the intended send time",
    )
    for r in result["levels"]:
        table.add_row(
            f"{r['level']:g}x" + (" BEHIND" if r["generator_behind"] else ""),
            f"{r['offered_rate']:,.0f}",
            f"{r['ok_rate']:,.0f}",
            str(r["429"]),
            str(r["503"]),
            str(r["errors"] + r["other"]),
            *(_ms(r[k]) for k in ("ok_p50_ms", "ok_p99_ms", "refused_p99_ms")),
            "-" if r["server_cpu"] is None else f"{r['server_cpu']:.2f}",
        )
    verdicts = Table("target", "wanted", "measured", "")
    for c in result["checks"]:
        verdict = {True: "PASS", False: "FAIL", None: "n/a"}[c["passed"]]
        verdicts.add_row(c["target"], c["want"], c["got"], verdict)
    outer = Table.grid()
    outer.add_row(table)
    outer.add_row(verdicts)
    return outer


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"
