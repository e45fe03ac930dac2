"""``bench compare``: the ratios B/A of two reports' headline figures.

Both reports must be of one kind. Load and capacity reports are compared on the
result (sustainable rate, users) and, step by step at matching offered rates
(within 2%; wrk steps by connections), on achieved rate and latency
percentiles. ANN reports (``kind: ann``) are compared row by row at matching
``ef``: recall, queries/s on one thread and on all, p50 and p99.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spyglass.errors import ConfigError

_STEP_FIGURES = ("achieved_rate", "p50_ms", "p95_ms", "p99_ms")
_ANN_FIGURES = ("recall", "qps_1", "qps_all", "p50_ms", "p99_ms")


@dataclass(frozen=True)
class Ratio:
    """One compared figure: where it is, its value in A and in B, and B/A."""

    where: str
    figure: str
    a: float | None
    b: float | None

    @property
    def ratio(self) -> float | None:
        if self.a is None or self.b is None or self.a == 0:
            return None
        return self.b / self.a


def read_report(path: Path) -> dict[str, Any]:
    """A report file; ``ConfigError`` when it is not one."""
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    except ValueError as exc:
        raise ConfigError(f"{path} is not JSON: {exc}") from exc
    if not isinstance(data, dict) or "kind" not in data or "format" not in data:
        raise ConfigError(f"{path} is not a spyglass bench report (no kind and format)")
    if data["format"] != 1:
        raise ConfigError(f"{path}: report format {data['format']} is not supported (1 is)")
    return data


def compare(a: dict[str, Any], b: dict[str, Any]) -> list[Ratio]:
    """The figures of ``a`` and ``b`` side by side; ``ConfigError`` for different kinds."""
    if a["kind"] != b["kind"]:
        raise ConfigError(f"cannot compare reports of different kinds: {a['kind']} and {b['kind']}")
    if a["kind"] == "ann":
        build = [Ratio("index", "build_s", a.get("build_s"), b.get("build_s"))]
        rows = _rows(a, b, "rows", "ef", _ANN_FIGURES, lambda r: float(r["ef"]), exact=True)
        return build + rows
    out: list[Ratio] = []
    ra, rb = a.get("result") or {}, b.get("result") or {}
    for figure in ("sustainable_rate", "users", "p95_ms"):
        if figure in ra or figure in rb:
            out.append(Ratio("result", figure, ra.get(figure), rb.get(figure)))
    return out + _rows(a, b, "steps", "offered", _STEP_FIGURES, _step_key, exact=False)


def _step_key(step: dict[str, Any]) -> float:
    offered = step.get("offered_rate")
    return float(offered) if offered is not None else -float(step.get("connections") or 0)


def _rows(
    a: dict[str, Any],
    b: dict[str, Any],
    field: str,
    label: str,
    figures: tuple[str, ...],
    key: Any,
    *,
    exact: bool,
) -> list[Ratio]:
    out: list[Ratio] = []
    rows_b = [(key(r), r) for r in b.get(field) or [] if not r.get("partial")]
    for row in a.get(field) or []:
        if row.get("partial"):
            continue
        k = key(row)
        match = next(
            (
                r
                for kb, r in rows_b
                if kb == k or (not exact and k > 0 and kb > 0 and abs(kb / k - 1) <= 0.02)
            ),
            None,
        )
        if match is None:
            continue
        if label == "ef":
            where = f"ef {k:g}"
        else:
            where = f"{-k:g} connections" if k < 0 else f"offered {k:g}/s"
        for figure in figures:
            if figure in row or figure in match:
                out.append(Ratio(where, figure, row.get(figure), match.get(figure)))
    return out


def describe(report: dict[str, Any]) -> str:
    """One line naming a report's run: kind, version, machine, collection, date."""
    machine = report.get("machine") or {}
    server = report.get("server") or {}
    if "data" in report:  # ann: the data set's file or folder
        name = Path(str(report["data"].get("path"))).name
    else:
        name = str((report.get("collection") or {}).get("name"))
    version = server.get("version") or report.get("spyglass")
    return (
        f"{report['kind']} of {name} by spyglass {version} on {machine.get('cores')} cores"
        f" ({machine.get('cpu')}), {report.get('created_at')}"
    )
