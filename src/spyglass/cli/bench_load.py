"""``spyglass bench load``, ``capacity`` and ``compare``: load a running server.

Thin: the scenario and the sampled requests are :mod:`spyglass.bench.scenario`,
the open-loop generator :mod:`spyglass.bench.load`, the ramp and the server's
figures :mod:`spyglass.bench.capacity`, the reports :mod:`spyglass.bench.report`
and :mod:`spyglass.bench.compare`. This module parses the options, shows a live
table on stderr while the steps run, and writes ``<out>.json`` and ``<out>.html``.
Ctrl-C stops the step in progress and still writes what was measured (a partial
report), then exits 130.
"""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import httpx
from rich.console import Console, Group
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from spyglass.errors import ConfigError

console = Console()
errors = Console(stderr=True)


def install(group: click.Group) -> None:
    """Add the ``load``, ``capacity`` and ``compare`` commands to ``group``."""
    group.add_command(load_command)
    group.add_command(capacity_command)
    group.add_command(compare_command)


def duration(text: str, name: str) -> float:
    """``"100ms"``, ``"0.5s"``, ``"2m"`` or plain seconds, in seconds; ``ConfigError`` else."""
    found = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(ms|s|m)?\s*", text)
    if not found:
        raise ConfigError(f"{name}: {text!r} is not a duration such as 100ms, 0.5s or 2m")
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, None: 1.0}[found.group(2)]
    return float(found.group(1)) * scale


def numbers(text: str, name: str) -> list[float]:
    """``"50,100,200"`` as positive numbers; ``ConfigError`` else."""
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise ConfigError(f"{name}: {text!r} is not a comma-separated list of numbers") from exc
    if not values or min(values) <= 0:
        raise ConfigError(f"{name}: give positive numbers, not {text!r}")
    return values


#: ``--start-rate``: where a capacity ramp begins (``capacity`` and ``overload``).
start_rate_option = click.option(
    "--start-rate",
    type=click.FloatRange(0.1),
    default=50.0,
    show_default=True,
    help="The capacity ramp's first offered rate (req/s).",
)


def target_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The options ``load`` and ``capacity`` share: where, what, and how to mix requests."""
    options = [
        click.option("--url", required=True, help="The server, e.g. http://127.0.0.1:8080."),
        click.option("--collection", required=True, help="The collection to search."),
        click.option(
            "--scenario",
            "scenario_path",
            type=click.Path(path_type=Path, dir_okay=False),
            default=None,
            help="Scenario file (TOML or JSON): mix, k, rates, step_s, think_s... (docs/bench.md).",
        ),
        click.option(
            "--key",
            envvar="SPYGLASS_BENCH_KEY",
            default=None,
            help="API key (env SPYGLASS_BENCH_KEY); an admin key also reads /metrics and /status.",
        ),
        click.option(
            "--mix", default=None, help="Request mix, e.g. text=0.7,vector=0.3 (over the file's)."
        ),
        click.option("--step-s", type=click.FloatRange(0.1), default=None, help="Seconds a step."),
        click.option(
            "--out",
            type=click.Path(path_type=Path, dir_okay=False),
            default=None,
            help="Report path without suffix: writes OUT.json and OUT.html.",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@click.command(name="load")
@target_options
@click.option(
    "--rates", default=None, help="Offered rates (req/s), e.g. 50,100,200: one step each."
)
@click.option(
    "--arrival",
    type=click.Choice(["poisson", "constant"]),
    default=None,
    help="Arrival times: Poisson or evenly spaced (default: the scenario's, poisson).",
)
@click.option(
    "--engine",
    type=click.Choice(["open-loop", "wrk"]),
    default="open-loop",
    show_default=True,
    help="wrk: closed loop, N connections each waiting for its answer (no offered rate).",
)
@click.option("--connections", default=None, help="--engine wrk: connections, e.g. 16,64.")
def load_command(
    url: str,
    collection: str,
    scenario_path: Path | None,
    key: str | None,
    mix: str | None,
    step_s: float | None,
    out: Path | None,
    rates: str | None,
    arrival: str | None,
    engine: str,
    connections: str | None,
) -> None:
    """Offer a rising request rate to a running server, open loop, and report each step.

    Requests leave on a schedule of intended send times and latency counts from
    those times, so a slow server cannot hide its queueing. Payloads are sampled
    from COLLECTION through the HTTP API. Each step records achieved 2xx/s,
    p50/p90/p95/p99/p99.9, status counts and the generator's own lag.
    """
    from spyglass.bench.scenario import parse_mix

    update: dict[str, Any] = {}
    if rates:
        update["rates"] = numbers(rates, "--rates")
    if connections:
        update["connections"] = [int(c) for c in numbers(connections, "--connections")]
    if arrival:
        update["arrival"] = arrival
    if mix:
        update["mix"] = parse_mix(mix)
    if step_s:
        update["step_s"] = step_s
    run = Run(url, key, collection, _scenario(scenario_path, update))
    sc = run.scenario

    async def steps() -> None:
        if engine == "wrk":
            for n in sc.connections:
                await run.wrk(n)
        else:
            for rate in sc.rates:
                await run.step(rate)

    run.execute(steps, {"engine": engine})
    report = run.report("load", None)
    _finish(report, out or Path("bench-load"), run.interrupted)


@click.command(name="capacity")
@target_options
@click.option("--p95", "p95", default="100ms", show_default=True, help="Latency target of p95.")
@click.option("--think", default=None, help="Think time per user, e.g. 0.5s (Little's law).")
@start_rate_option
@click.option(
    "--step-factor",
    type=click.FloatRange(1.01),
    default=1.5,
    show_default=True,
    help="Each step offers this times the last one's rate.",
)
@click.option(
    "--max-rate",
    type=click.FloatRange(0.1),
    default=100_000.0,
    show_default=True,
    help="Stop ramping past this rate (req/s).",
)
@click.option(
    "--refine",
    type=click.IntRange(0),
    default=2,
    show_default=True,
    help="Extra steps between the last rate that held and the first that did not.",
)
def capacity_command(
    url: str,
    collection: str,
    scenario_path: Path | None,
    key: str | None,
    mix: str | None,
    step_s: float | None,
    out: Path | None,
    p95: str,
    think: str | None,
    start_rate: float,
    step_factor: float,
    max_rate: float,
    refine: int,
) -> None:
    """Find the highest rate the server holds with p95 <= target and only 2xx answers.

    Ramps the offered rate by --step-factor from --start-rate until a step fails,
    then refines between the last good and the first bad rate. Reports the
    sustainable rate, the users it serves at the think time (users = rate x
    (think + response time)) and what limited it, read from the server's /metrics
    and /status when the key allows (admin).
    """
    from spyglass.bench.capacity import capacity_result, find_capacity
    from spyglass.bench.scenario import parse_mix

    update: dict[str, Any] = {}
    if mix:
        update["mix"] = parse_mix(mix)
    if step_s:
        update["step_s"] = step_s
    if think:
        update["think_s"] = duration(think, "--think")
    p95_ms = duration(p95, "--p95") * 1000
    run = Run(url, key, collection, _scenario(scenario_path, update))
    found: dict[str, Any] = {}

    async def steps() -> None:
        found["steps"] = await find_capacity(
            run.step,
            p95_ms=p95_ms,
            start_rate=start_rate,
            step_factor=step_factor,
            max_rate=max_rate,
            refine=refine,
        )

    ramp = {"p95_ms": p95_ms, "start_rate": start_rate, "step_factor": step_factor}
    run.execute(steps, {**ramp, "max_rate": max_rate, "refine": refine})
    result = None
    if "steps" in found:
        best, failed = found["steps"]
        think_s = run.scenario.think_s
        result = capacity_result(
            best,
            failed,
            p95_ms=p95_ms,
            think_s=think_s,
            max_rate=max_rate,
            steps=run.generator.steps,
        )
    report = run.report("capacity", result)
    _finish(report, out or Path("bench-capacity"), run.interrupted)


@click.command(name="compare")
@click.argument("a", type=click.Path(path_type=Path, dir_okay=False))
@click.argument("b", type=click.Path(path_type=Path, dir_okay=False))
def compare_command(a: Path, b: Path) -> None:
    """Print B/A for the headline figures of two reports of one kind (load, capacity, ann)."""
    from spyglass.bench.compare import compare, describe, read_report

    first, second = read_report(a), read_report(b)
    ratios = compare(first, second)
    table = Table("where", "figure", "A", "B", "B/A", title=f"A: {a.name}  B: {b.name}")
    for r in ratios:
        ratio = "-" if r.ratio is None else f"{r.ratio:.3f}"
        table.add_row(r.where, r.figure, _num(r.a), _num(r.b), ratio)
    console.print(f"A: {describe(first)}", soft_wrap=True, highlight=False)
    console.print(f"B: {describe(second)}", soft_wrap=True, highlight=False)
    console.print(table if ratios else "no figures in common (different rates or ef values)")


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:,.3f}".rstrip("0").rstrip(".")


def _scenario(path: Path | None, update: dict[str, Any]) -> Any:
    """The scenario file's (or the default) scenario with the command line's values over it."""
    from pydantic import ValidationError

    from spyglass.bench.scenario import Scenario, load_scenario

    scenario = load_scenario(path) if path else Scenario()
    try:
        return Scenario.model_validate({**scenario.model_dump(), **update})
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigError(f"--{str(first['loc'][0]).replace('_', '-')}: {first['msg']}") from exc


@dataclass
class Run:
    """One load or capacity run: setup (server, collection, sampled requests), steps, report."""

    url: str
    key: str | None
    collection_name: str
    scenario: Any
    server: dict[str, Any] = field(default_factory=dict)
    collection: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    mix: dict[str, Any] = field(default_factory=dict)
    generator: Any = None
    interrupted: bool = False

    def __post_init__(self) -> None:
        from spyglass.bench.http import Target

        self.target = Target.from_url(self.url, self.key)
        self.probe: Any = None
        self.requests: list[Any] = []

    def execute(self, steps: Callable[[], Awaitable[None]], params: dict[str, Any]) -> None:
        """Set up, then run ``steps`` under a live display; Ctrl-C keeps what was measured."""
        self.params = params
        try:
            with asyncio.Runner(loop_factory=_loop_factory()) as runner:
                runner.run(self._main(steps))
        except KeyboardInterrupt:
            self.interrupted = True
            if self.generator is None:
                errors.print("interrupted before any step ran")
                raise SystemExit(130) from None

    async def _main(self, steps: Callable[[], Awaitable[None]]) -> None:
        from spyglass.bench.capacity import ServerProbe
        from spyglass.bench.load import Generator
        from spyglass.bench.scenario import collection_info, sample_requests

        sc = self.scenario
        headers = {"Authorization": self.target.authorization} if self.target.authorization else {}
        async with httpx.AsyncClient(
            base_url=self.target.public_url, headers=headers, timeout=30
        ) as client:
            with errors.status(f"sampling {self.collection_name} at {self.target.public_url}"):
                info = await collection_info(client, self.collection_name)
                self.collection = dict(info.__dict__)
                self.probe = ServerProbe(client, self.target.public_url)
                self.server = {"url": self.target.public_url, **await self.probe.describe()}
                mix = await sample_requests(client, info, sc)
            self.notes += mix.notes
            self.mix = {
                k: {"weight": w, "payloads": len(mix.pools[k])} for k, w in mix.weights.items()
            }
            pick = mix.picker(random.Random(sc.seed))
            self.requests = [pick() for _ in range(500)]
            self.generator = Generator(
                self.target,
                pick,
                arrival=sc.arrival,
                timeout_s=sc.timeout_s,
                max_outstanding=sc.max_outstanding,
                lag_limit_ms=sc.lag_limit_ms,
                seed=sc.seed,
            )
            from rich.live import Live

            try:
                with Live(_Display(self), console=errors, refresh_per_second=4, transient=True):
                    await steps()
            finally:
                await self.generator.aclose()

    async def step(self, rate: float) -> Any:
        from spyglass.bench.capacity import measured_step

        step = await measured_step(self.generator, self.probe, rate, self.scenario.step_s)
        if step.generator_behind:
            errors.print(
                f"[bold yellow]warning: the generator fell behind at {rate:g}/s (lag p99"
                f" {step.generator_lag_p99_ms} ms, {step.dropped} dropped): its latencies"
                " include the generator's own delay[/]",
                soft_wrap=True,
            )
        others = step.server.get("others_cpu")
        if others is not None and others > 0.2:
            errors.print(
                f"[yellow]note: other processes used {others:.2f} cores during the {rate:g}/s"
                " step (a shared machine: the server had less)[/]",
                soft_wrap=True,
            )
        return step

    async def wrk(self, connections: int) -> Any:
        from spyglass.bench.wrk import wrk_step

        before = await self.probe.snapshot()
        step = await asyncio.to_thread(
            wrk_step,
            self.target,
            self.requests,
            connections=connections,
            duration=self.scenario.step_s,
            timeout_s=self.scenario.timeout_s,
        )
        step.server = self.probe.delta(before, await self.probe.snapshot(), step.duration_s)
        self.generator.steps.append(step)
        return step

    def report(self, kind: str, result: dict[str, Any] | None) -> dict[str, Any]:
        from spyglass.bench.report import build_report

        steps = self.generator.steps if self.generator else []
        scenario = {**self.scenario.model_dump(), **self.params, "requests": self.mix}
        return build_report(
            kind,
            server=self.server,
            collection=self.collection,
            scenario=scenario,
            steps=[s.as_dict() for s in steps],
            result=result,
            partial=self.interrupted,
            notes=self.notes,
        )


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


class _Display:
    """The live view: a row per finished step, a bar and counters for the running one."""

    def __init__(self, run: Run) -> None:
        self.run = run

    def __rich__(self) -> Group:
        generator = self.run.generator
        table = steps_table([s.as_dict() for s in generator.steps])
        live = generator.live
        line = Text(
            f"{live.rate:g}/s offered: {live.elapsed:.0f}/{live.duration:.0f} s, sent {live.sent},"
            f" in flight {live.in_flight}, answered {live.answered} ({live.ok} 2xx),"
            f" errors {live.errors}, dropped {live.dropped}"
        )
        bar = ProgressBar(
            total=max(live.duration, 1e-9), completed=min(live.elapsed, live.duration)
        )
        return Group(table, line, bar)


def steps_table(steps: list[dict[str, Any]], title: str | None = None) -> Table:
    """Finished steps: offered and achieved rate, percentiles (ms), statuses, generator lag."""
    table = Table(
        "offered",
        "2xx/s",
        "sent",
        "p50",
        "p95",
        "p99",
        "p99.9",
        "not 2xx",
        "lag99",
        "note",
        title=title,
        caption="latencies in ms from the intended send time; lag99: the generator's own",
    )
    for s in steps:
        offered = (
            f"{s['connections']} conn" if s["offered_rate"] is None else f"{s['offered_rate']:g}/s"
        )
        bad = ", ".join(
            f"{k} {s['status'][k]}" for k in ("429", "503", "other", "errors") if s["status"][k]
        )
        if s.get("dropped"):
            bad += f", dropped {s['dropped']}"
        notes = [
            word
            for word, on in (("BEHIND", s["generator_behind"]), ("partial", s["partial"]))
            if on
        ]
        cache = (s.get("server") or {}).get("cache_hit_ratio")
        if cache is not None:
            notes.append(f"cache {cache:.0%}")
        table.add_row(
            offered,
            f"{s['achieved_rate']:,.0f}",
            str(s["sent"]),
            *(_ms(s.get(k)) for k in ("p50_ms", "p95_ms", "p99_ms", "p999_ms")),
            bad.strip(", ") or "-",
            _ms(s["generator_lag_p99_ms"]),
            " ".join(notes),
        )
    return table


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def _finish(report: dict[str, Any], base: Path, interrupted: bool) -> None:
    from spyglass.bench.report import headline, write_report

    json_path, html_path = write_report(report, base)
    console.print(steps_table(report["steps"], title=f"bench {report['kind']}"))
    for note in report["notes"]:
        console.print(f"note: {note}", soft_wrap=True, highlight=False)
    console.print(headline(report), soft_wrap=True, highlight=False)
    console.print(f"wrote {json_path} and {html_path}", soft_wrap=True, highlight=False)
    if interrupted:
        errors.print("interrupted: the report holds what was measured before Ctrl-C")
        raise SystemExit(130)
