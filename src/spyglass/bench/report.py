"""Load and capacity reports: one JSON document, and a self-contained HTML page of it.

The JSON (``kind`` "load" or "capacity", ``format`` 1) carries everything two
runs need to be compared (``spyglass bench compare``): the machine, the server
(URL without credentials, version, settings as ``/status`` shows them, secrets
masked by the server), the collection's size, the scenario, every step and the
result. The HTML page shows the same with two plots, achieved throughput and
latency percentiles against the offered rate, drawn here as inline SVG: no
external asset, no plotting library.
"""

from __future__ import annotations

import html
import json
import math
import time
from pathlib import Path
from typing import Any

from spyglass import __version__
from spyglass.bench.machine import machine_info

FORMAT = 1
_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#8c564b", "#d62728", "#9467bd")


def build_report(
    kind: str,
    *,
    server: dict[str, Any],
    collection: dict[str, Any],
    scenario: dict[str, Any],
    steps: list[dict[str, Any]],
    result: dict[str, Any] | None = None,
    partial: bool = False,
    notes: list[str] | None = None,
) -> dict[str, Any]:
    """The report document (see the module docstring)."""
    return {
        "kind": kind,
        "format": FORMAT,
        "spyglass": __version__,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "partial": partial,
        "machine": machine_info(),
        "server": server,
        "collection": collection,
        "scenario": scenario,
        "steps": steps,
        "result": result,
        "notes": notes or [],
    }


def write_report(report: dict[str, Any], base: Path) -> tuple[Path, Path]:
    """Write ``base``.json and ``base``.html; their paths."""
    base.parent.mkdir(parents=True, exist_ok=True)
    json_path, html_path = base.with_name(base.name + ".json"), base.with_name(base.name + ".html")
    json_path.write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n")
    html_path.write_text(report_html(report))
    return json_path, html_path


def headline(report: dict[str, Any]) -> str:
    """One sentence: what the server held (capacity) or the last step (load)."""
    result = report.get("result")
    if result and "checks" in result:
        verdicts = [c["passed"] for c in result["checks"]]
        return (
            f"overload from R = {result['capacity_rate']:,.0f} req/s:"
            f" {verdicts.count(True)} targets met, {verdicts.count(False)} missed,"
            f" {verdicts.count(None)} not measurable"
        )
    if result:
        return (
            f"holds {result['sustainable_rate']:,.0f} req/s, about {result['users']:,.0f} users"
            f" at {result['think_s']:g} s think time, p95 <= {result['p95_target_ms']:g} ms;"
            f" limited by {result['limited_by']}"
        )
    steps = report.get("steps") or []
    if not steps:
        return "no step was measured"
    top = max(steps, key=lambda s: s["achieved_rate"])
    return f"up to {top['achieved_rate']:,.0f} req/s answered 2xx, p50 {_ms(top['p50_ms'])}" + (
        f", p99 {_ms(top['p99_ms'])}" + f" at {_rate(top)} offered"
    )


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f} ms"


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def _server_cell(srv: dict[str, Any]) -> str:
    """The server's figures of a step, short: CPU, its own mean latency, encoder, cache."""
    parts = []
    if srv.get("server_cpu") is not None:
        parts.append(f"server {srv['server_cpu']:.2f} cores")
    if srv.get("others_cpu") is not None:
        parts.append(f"others {srv['others_cpu']:.2f}")
    if srv.get("cpu_busy") is not None:
        parts.append(f"machine {srv['cpu_busy']:.0%} busy")
    if srv.get("server_mean_ms") is not None:
        parts.append(f"server mean {srv['server_mean_ms']:.1f} ms")
    if srv.get("encoder_busy_cores"):
        parts.append(f"encoder {srv['encoder_busy_cores']:.2f} cores")
    if srv.get("cache_hit_ratio") is not None:
        parts.append(f"cache hits {srv['cache_hit_ratio']:.0%}")
    if srv.get("shed"):
        parts.append(f"shed {srv['shed']}")
    return ", ".join(parts) or "-"


def _rate(step: dict[str, Any]) -> str:
    if step.get("offered_rate") is None:
        return f"{step.get('connections')} connections"
    return f"{step['offered_rate']:,.0f}/s"


def _x(step: dict[str, Any]) -> float:
    """A step's place on the plots' x axis: its offered rate, else (wrk) what it achieved."""
    offered = step.get("offered_rate")
    return float(offered if offered is not None else step["achieved_rate"])


def report_html(report: dict[str, Any]) -> str:
    """The report as one HTML page with inline SVG plots."""
    steps = sorted(report.get("steps") or [], key=_x)
    closed = any(s.get("offered_rate") is None for s in steps)
    xlabel = "achieved rate (req/s, closed loop)" if closed else "offered rate (req/s)"
    plots = ""
    if steps:
        xs = [_x(s) for s in steps]
        achieved = [(x, float(s["achieved_rate"])) for x, s in zip(xs, steps, strict=True)]
        series = [("achieved", _COLORS[0], achieved)]
        plots += svg_plot("Throughput", xlabel, "2xx answers/s", series, diagonal=not closed)
        lines = []
        for i, (key, label) in enumerate(
            (
                ("p50_ms", "p50"),
                ("p90_ms", "p90"),
                ("p95_ms", "p95"),
                ("p99_ms", "p99"),
                ("p999_ms", "p99.9"),
            )
        ):
            points = [(x, s[key]) for x, s in zip(xs, steps, strict=True) if s.get(key)]
            lines.append((label, _COLORS[i + 1], points))
        target = (report.get("result") or {}).get("p95_target_ms")
        plots += svg_plot("Latency", xlabel, "ms (log)", lines, log_y=True, hline=target)
    e = html.escape
    rows = "".join(
        "<tr>"
        + "".join(
            f"<td>{e(str(v))}</td>"
            for v in (
                _rate(s),
                f"{s['achieved_rate']:,.1f}",
                s["sent"],
                _cell(s["p50_ms"]),
                _cell(s["p90_ms"]),
                _cell(s.get("p95_ms")),
                _cell(s["p99_ms"]),
                _cell(s["p999_ms"]),
                " / ".join(str(s["status"][k]) for k in ("2xx", "429", "503", "other", "errors")),
                _cell(s.get("generator_lag_p99_ms")),
                ("BEHIND " if s.get("generator_behind") else "")
                + ("partial" if s.get("partial") else ""),
                _server_cell(s.get("server") or {}),
            )
        )
        + "</tr>"
        for s in steps
    )
    server = report.get("server") or {}
    settings = server.get("settings")
    facts = {
        "machine": report.get("machine"),
        "server": {k: v for k, v in server.items() if k != "settings"},
        "collection": report.get("collection"),
        "scenario": report.get("scenario"),
        "result": report.get("result"),
    }
    warn = [n for n in report.get("notes") or []]
    if report.get("partial"):
        warn.insert(0, "Partial report: the run was interrupted.")
    if any(s.get("generator_behind") for s in steps):
        warn.append("The generator was behind in some steps: latencies include its own delay.")
    name = (report.get("collection") or {}).get("name")
    where = str(server.get("url"))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Spyglass bench {e(report["kind"])}: {e(str(name))}</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
td, th {{ border: 1px solid #ccc; padding: 2px 6px; text-align: right; font-size: 12px; }}
pre {{ background: #f6f6f6; padding: 0.5em; overflow-x: auto; font-size: 12px; }}
.warn {{ color: #a40; font-weight: bold; }} svg {{ margin: 0.5em 1em 0.5em 0; }}
</style></head><body>
<h1>Spyglass bench {e(report["kind"])}</h1>
<p><b>{e(headline(report))}</b></p>
{"".join(f'<p class="warn">{e(w)}</p>' for w in warn)}
<p>{e(report["created_at"])}, Spyglass {e(str(server.get("version")))} at {e(where)}</p>
<div>{plots}</div>
<h2>Steps</h2>
<table><tr><th>offered</th><th>achieved 2xx/s</th><th>sent</th><th>p50 ms</th><th>p90 ms</th>
<th>p95 ms</th><th>p99 ms</th><th>p99.9 ms</th><th>2xx / 429 / 503 / other / errors</th>
<th>generator lag p99 ms</th><th>flags</th><th>server</th></tr>{rows}</table>
<p>Latency counts from each request's intended send time (open loop), over every answer.</p>
<h2>Run</h2><pre>{e(json.dumps(facts, indent=1))}</pre>
<details><summary>Server settings</summary><pre>{e(json.dumps(settings, indent=1))}</pre></details>
</body></html>
"""


def _ticks(low: float, high: float, log: bool) -> list[float]:
    if log:
        return [
            10.0**p for p in range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1)
        ]
    span = high - low or 1.0
    step = 10 ** math.floor(math.log10(span / 5))
    step *= next(m for m in (1, 2, 5, 10) if span / (step * m) <= 6)
    return [low + i * step for i in range(int(span / step) + 2) if low + i * step <= high + 1e-9]


def svg_plot(
    title: str,
    xlabel: str,
    ylabel: str,
    series: list[tuple[str, str, list[tuple[float, float]]]],
    *,
    log_y: bool = False,
    diagonal: bool = False,
    hline: float | None = None,
) -> str:
    """A line plot as an ``<svg>`` element: each series a polyline with dots and a legend."""
    width, height, left, right, top, bottom = 520, 340, 64, 110, 30, 46
    points = [p for _, _, pts in series for p in pts]
    if not points:
        return ""
    xmax = max(p[0] for p in points) * 1.05 or 1.0
    ys = [p[1] for p in points] + ([hline] if hline else [])
    if log_y:
        ylo = 10 ** math.floor(math.log10(max(min(ys), 1e-3)))
        yhi = 10 ** math.ceil(math.log10(max(max(ys), ylo * 10)))
    else:
        ylo, yhi = 0.0, max(max(ys), xmax if diagonal else 0.0) * 1.05 or 1.0
    pw, ph = width - left - right, height - top - bottom

    def sx(x: float) -> float:
        return left + pw * x / xmax

    def sy(y: float) -> float:
        if log_y:
            frac = (math.log10(max(y, ylo)) - math.log10(ylo)) / (math.log10(yhi / ylo))
        else:
            frac = (y - ylo) / (yhi - ylo)
        return top + ph * (1 - frac)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
        f'<text x="{left}" y="18" font-size="14" font-weight="bold">{html.escape(title)}</text>',
        f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>',
    ]
    for tick in _ticks(0.0, xmax, False):
        x = sx(tick)
        out.append(
            f'<line x1="{x:.1f}" y1="{top + ph}" x2="{x:.1f}" y2="{top + ph + 4}" stroke="#999"/>'
        )
        out.append(f'<text x="{x:.1f}" y="{top + ph + 16}" text-anchor="middle">{tick:g}</text>')
    for tick in _ticks(ylo, yhi, log_y):
        y = sy(tick)
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + pw}" y2="{y:.1f}" stroke="#eee"/>')
        out.append(f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end">{tick:g}</text>')
    out.append(
        f'<text x="{left + pw / 2}" y="{height - 8}" text-anchor="middle">'
        f"{html.escape(xlabel)}</text>"
    )
    out.append(
        f'<text transform="translate(14 {top + ph / 2}) rotate(-90)" '
        f'text-anchor="middle">{html.escape(ylabel)}</text>'
    )
    if diagonal:
        end = min(xmax, yhi)
        out.append(
            f'<line x1="{sx(0)}" y1="{sy(0)}" x2="{sx(end):.1f}" y2="{sy(end):.1f}" '
            'stroke="#bbb" stroke-dasharray="4 3"/>'
        )
    if hline:
        y = sy(hline)
        out.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{left + pw}" y2="{y:.1f}" '
            'stroke="#d62728" stroke-dasharray="6 3"/>'
        )
        out.append(
            f'<text x="{left + 4}" y="{y - 4:.1f}" fill="#d62728">p95 target {hline:g} ms</text>'
        )
    for i, (name, color, pts) in enumerate(series):
        coords = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts)
        out.append(f'<polyline points="{coords}" fill="none" stroke="{color}" stroke-width="2"/>')
        out += [
            f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.5" fill="{color}"/>' for x, y in pts
        ]
        ly = top + 12 + 16 * i
        out.append(
            f'<line x1="{left + pw + 10}" y1="{ly}" x2="{left + pw + 30}" y2="{ly}" '
            f'stroke="{color}" stroke-width="2"/>'
        )
        out.append(f'<text x="{left + pw + 34}" y="{ly + 4}">{html.escape(name)}</text>')
    out.append("</svg>")
    return "\n".join(out)
