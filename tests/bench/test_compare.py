"""``bench compare``: ratios B/A of two reports of one kind; different kinds are refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from spyglass.bench.compare import compare
from spyglass.errors import ConfigError
from tests.bench.test_load import bench


def step(offered: float, achieved: float, p50: float, p99: float) -> dict[str, Any]:
    return {
        "offered_rate": offered,
        "achieved_rate": achieved,
        "p50_ms": p50,
        "p95_ms": p99 / 2,
        "p99_ms": p99,
        "partial": False,
    }


def load_report(kind: str, scale: float, rates: list[float]) -> dict[str, Any]:
    return {
        "kind": kind,
        "format": 1,
        "created_at": "2026-11-24T00:00:00Z",
        "machine": {"cores": 2, "cpu": "test"},
        "server": {"version": "0.1.0"},
        "collection": {"name": "bench"},
        "steps": [step(r, r * scale, 2 / scale, 10 / scale) for r in rates],
        "result": {"sustainable_rate": 1000 * scale, "users": 500 * scale, "p95_ms": 80.0},
    }


def ann_report(qps: float) -> dict[str, Any]:
    rows = [
        {"ef": ef, "recall": 0.9 + ef / 1000, "qps_1": qps / ef, "qps_all": 2 * qps / ef}
        | {"p50_ms": ef / 100, "p99_ms": ef / 50}
        for ef in (16, 64)
    ]
    return {"kind": "ann", "format": 1, "data": {"path": "/d/fashion"}, "rows": rows}


def write(path: Path, report: dict[str, Any]) -> str:
    path.write_text(json.dumps(report))
    return str(path)


def test_compare_prints_the_ratios_of_matching_steps(tmp_path: Path) -> None:
    a = write(tmp_path / "a.json", load_report("capacity", 1.0, [50, 100, 200]))
    # B ran at slightly different rates (within 2%) and one A did not: 400 has no match
    b = write(tmp_path / "b.json", load_report("capacity", 2.0, [50.5, 99, 400]))
    ran = bench("compare", a, b)
    assert ran.returncode == 0, ran.stderr
    lines = ran.stdout.splitlines()
    assert any("sustainable_rate" in line and "2.000" in line for line in lines)
    assert any("offered 100/s" in line and "p50_ms" in line and "0.500" in line for line in lines)
    assert not any("offered 200/s" in line or "400" in line for line in lines)
    assert lines[0].startswith("A: capacity of bench by spyglass 0.1.0 on 2 cores")


def test_compare_refuses_reports_of_different_kinds(tmp_path: Path) -> None:
    a = write(tmp_path / "a.json", load_report("load", 1.0, [50]))
    b = write(tmp_path / "b.json", ann_report(1000))
    ran = bench("compare", a, b)
    assert ran.returncode == 2
    assert ran.stderr.strip() == "error: cannot compare reports of different kinds: load and ann"
    not_a_report = write(tmp_path / "c.json", {"hello": 1})
    ran = bench("compare", a, not_a_report)
    assert ran.returncode == 2 and "not a spyglass bench report" in ran.stderr


def test_ann_reports_compare_recall_and_qps_per_ef() -> None:
    ratios = {(r.where, r.figure): r.ratio for r in compare(ann_report(1000), ann_report(1500))}
    assert ratios[("ef 16", "qps_1")] == pytest.approx(1.5)
    assert ratios[("ef 64", "qps_all")] == pytest.approx(1.5)
    assert ratios[("ef 64", "recall")] == pytest.approx(1.0)
    with pytest.raises(ConfigError, match="cannot compare"):
        compare(ann_report(1), load_report("capacity", 1.0, [1]))
