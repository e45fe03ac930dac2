"""``spyglass bench ann`` through the real CLI, on the real Fashion-MNIST 900 set."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from spyglass.stores.embedded import EmbeddedStore
from tests.children import child_env, finish, interruptible
from tests.cli.test_cli import assert_user_error, spyglass
from tests.conftest import SHARED_DATA

FASHION = SHARED_DATA / "ann_fashion_mnist900"
REPORT = "ann-ann_fashion_mnist900-{store}.json"
KEYS = {
    "kind",
    "format",
    "spyglass",
    "created_at",
    "machine",
    "data",
    "store",
    "index",
    "build_s",
    "index_bytes",
    "rss_mb",
    "rows",
    "faiss",
}


def check_report(report: dict[str, Any], store: str, efs: list[int]) -> None:
    assert KEYS <= set(report)
    assert (report["kind"], report["format"], report["store"]) == ("ann", 1, store)
    assert {"cpu", "cores", "memory_gb", "python", "platform"} <= set(report["machine"])
    assert report["data"] == {
        "path": str(FASHION),
        "base": 800,
        "queries": 100,
        "dim": 784,
        "metric": "l2",
        "k": 10,
        "ground_truth": "groundtruth_euclidean.ivecs",
    }
    assert report["index"] == {"m": 16, "ef_construction": 200}
    assert report["build_s"] > 0 and report["index_bytes"] > 0 and report["rss_mb"] > 0
    assert [row["ef"] for row in report["rows"]] == efs
    assert [row["ef"] for row in report["faiss"]] == efs
    for row in report["rows"]:
        assert set(row) == {"ef", "recall", "qps_1", "qps_all", "p50_ms", "p99_ms"}
        assert row["qps_1"] > 0 and row["qps_all"] > 0 and 0 < row["p50_ms"] <= row["p99_ms"]
    # a quality check, not a timing: HNSW at a wide beam finds the true neighbours
    assert report["rows"][-1]["recall"] >= 0.9
    assert report["faiss"][-1]["recall"] >= 0.9


def test_bench_ann_on_fashion_writes_report_table_and_plots(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = spyglass(
        "bench", "ann", "--data", FASHION, "--ef", "128,16", "--seconds", "0", "--out", out
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "groundtruth_euclidean.ivecs" in result.stdout and "FAISS" in result.stdout

    report = json.loads((out / REPORT.format(store="embedded")).read_text())
    check_report(report, "embedded", [16, 128])
    assert report["partial"] is False

    png = out / "ann-ann_fashion_mnist900-embedded.png"
    with Image.open(png) as image:
        image.verify()
        assert image.format == "PNG" and image.size[0] > 300 and image.size[1] > 200
    svg = ET.parse(out / "ann-ann_fashion_mnist900-embedded.svg").getroot()
    assert svg.tag.endswith("svg")


def test_a_bad_data_path_or_ef_list_is_one_line_and_exit_2(tmp_path: Path) -> None:
    missing = spyglass("bench", "ann", "--data", tmp_path / "nowhere", "--out", tmp_path)
    assert missing.returncode == 2
    assert_user_error(missing, "nowhere", "does not exist")

    bad_ef = spyglass("bench", "ann", "--data", FASHION, "--ef", "16,lots", "--out", tmp_path)
    assert bad_ef.returncode == 2
    assert_user_error(bad_ef, "--ef")
    assert not list(tmp_path.glob("*.json"))


@pytest.mark.timeout(900)  # a busy machine: the ceilings below, not pytest's default
def test_ctrl_c_writes_what_was_measured_and_drops_the_collection(tmp_path: Path) -> None:
    store, out = tmp_path / "store", tmp_path / "out"
    process = subprocess.Popen(
        [sys.executable, "-m", "spyglass", "bench", "ann", "--data", str(FASHION)]
        + ["--store", str(store), "--ef", "16", "--seconds", "600", "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(),
        preexec_fn=interruptible,
    )
    try:
        assert process.stderr is not None
        phases = []
        for line in process.stderr:  # phase lines, as stderr is a pipe; ends if it exits
            phases.append(line)
            if line.startswith("sweep ef"):  # built and measured: the sweep runs 600 s
                break
        assert process.poll() is None, "".join(phases)
        process.send_signal(signal.SIGINT)
        stdout, stderr = finish(process)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr and "interrupted" in stderr
    report = json.loads((out / REPORT.format(store="embedded")).read_text())
    assert report["partial"] is True and report["build_s"] > 0
    assert report["index_bytes"] > 0 and report["rows"] == [] and report["faiss"] == []
    reopened = EmbeddedStore(store)
    try:
        assert reopened.list_collections() == []  # the bench collection is gone
    finally:
        reopened.close()


@pytest.mark.pg
def test_bench_ann_on_postgresql(tmp_path: Path, pg_database: tuple[str, str]) -> None:
    url = pg_database[0]
    out = tmp_path / "out"
    result = spyglass(
        "bench", "ann", "--data", FASHION, "--store", url, "--ef", "64", "--seconds", "0",
        "--out", out,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    check_report(
        json.loads((out / REPORT.format(store="postgresql")).read_text()), "postgresql", [64]
    )
