"""``spyglass bench overload``: the targets' arithmetic, and the command on a real server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from spyglass.bench.overload import checks, refusal_cost
from tests.bench.test_load import bench, tiny_collection
from tests.e2e.server import running


def row(level: float, ok: int, refused: int, **overrides: Any) -> dict[str, Any]:
    base = {
        "level": level,
        "offered_rate": 100 * level,
        "ok_rate": ok / 10,
        "ok": ok,
        "429": 0,
        "503": refused,
        "other": 0,
        "errors": 0,
        "ok_p50_ms": 2.0,
        "ok_p99_ms": 10.0,
        "refused_p99_ms": 1.0 if refused else None,
        "server_cpu": (ok * 0.002 + refused * 0.00005) / 10,  # 2 ms an answer, 50 µs a refusal
        "generator_behind": False,
        "duration_s": 10.0,
    }
    return base | overrides


def verdicts(rows: list[dict[str, Any]], kind: str = "vector") -> dict[str, bool | None]:
    return {c.target: c.passed for c in checks(rows, kind)}


def test_a_server_that_holds_its_capacity_passes_every_target() -> None:
    rows = [row(0.5, 500, 0), row(1, 1000, 0), row(2, 980, 1020), row(4, 900, 3100)]
    rows.append(row(8, 800, 7200))
    assert set(verdicts(rows).values()) == {True}
    answer, refusal = refusal_cost(rows) or (0.0, 0.0)
    assert answer == pytest.approx(0.002) and refusal == pytest.approx(0.00005)


def test_collapse_slow_admissions_and_errors_fail_their_targets() -> None:
    rows = [row(0.5, 500, 0), row(1, 1000, 0, ok_p99_ms=40.0), row(2, 580, 1400)]
    rows += [row(4, 190, 3000, ok_p99_ms=900.0, errors=12), row(8, 100, 7000, refused_p99_ms=50)]
    got = verdicts(rows)
    assert got["goodput at 2x"] is False and got["goodput at 4x"] is False
    assert got["2xx p99 at 4x"] is False and got["2xx p99 at 1x"] is False
    assert got["refusal p99 at 8x"] is False and got["only 2xx/429/503"] is False
    assert got["goodput at 8x"] is False  # 10% of 1x


def test_heavy_routes_have_stricter_goodput_and_missing_figures_are_not_measurable() -> None:
    rows = [row(1, 1000, 0), row(4, 800, 3000), row(8, 800, 7000)]
    got = verdicts(rows, "heavy")
    assert got["goodput at 4x"] is False  # 80% < 90%
    assert got["goodput at 2x"] is None and got["2xx p99 at 4x"] is None
    remote = [row(1, 1000, 0, server_cpu=None), row(2, 990, 900, server_cpu=None)]
    assert refusal_cost(remote) is None
    assert verdicts(remote)["refusal CPU"] is None


def test_bench_overload_drives_the_levels_and_writes_the_checks(tmp_path: Path) -> None:
    with running(tmp_path / "data", log=tmp_path / "server.log") as server:
        tiny_collection(server.url)
        out = tmp_path / "overload"
        ran = bench(
            "overload", "--url", server.url, "--collection", "tiny", "--rate", "20",
            "--levels", "0.5,1,2", "--step-s", "1", "--out", str(out),
        )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert "bench overload: R = 20 req/s (vector)" in ran.stdout and "PASS" in ran.stdout
    report = json.loads((tmp_path / "overload.json").read_text())
    assert report["kind"] == "overload" and not report["partial"]
    result = report["result"]
    assert result["capacity_rate"] == 20 and result["kind"] == "vector"
    assert [r["level"] for r in result["levels"]] == [0.5, 1, 2]
    assert [r["offered_rate"] for r in result["levels"]] == [10, 20, 40]
    for level in result["levels"]:
        assert level["ok"] > 0 and level["errors"] == 0 and level["ok_p99_ms"] is not None
    targets = {c["target"]: c["passed"] for c in result["checks"]}
    assert targets["only 2xx/429/503"] is True
    assert targets["goodput at 2x"] is not None  # 2x was offered
    assert targets["goodput at 8x"] is None and targets["refusal p99 at 8x"] is None
