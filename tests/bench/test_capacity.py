"""``bench capacity`` against a real ``spyglass serve``: a target it meets, one it cannot,
Ctrl-C keeping what was measured, and the attribution read from the server's figures."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from spyglass.bench.capacity import limited_by, listening_pids, parse_metrics
from tests.bench.test_load import bench, tiny_collection
from tests.children import child_env, finish, interruptible
from tests.e2e.server import running

pytestmark = pytest.mark.e2e


def capacity(url: str, out: Path, *extra: str) -> dict[str, object]:
    ran = bench(
        "capacity",
        "--url",
        url,
        "--collection",
        "tiny",
        "--start-rate",
        "20",
        "--step-factor",
        "2",
        "--max-rate",
        "40",
        "--step-s",
        "1",
        "--out",
        str(out),
        *extra,
    )
    assert ran.returncode == 0, ran.stderr
    assert "holds" in ran.stdout
    report: dict[str, object] = json.loads(out.with_name(out.name + ".json").read_text())
    assert report["kind"] == "capacity" and "<svg" in out.with_name(out.name + ".html").read_text()
    return report


def test_capacity_reports_a_target_met_and_one_missed(tmp_path: Path) -> None:
    with running(tmp_path / "data", log=tmp_path / "server.log") as server:
        tiny_collection(server.url)
        met = capacity(server.url, tmp_path / "met", "--p95", "10s", "--think", "1s")
        # no HTTP answer comes back within a microsecond: the target cannot be met
        missed = capacity(server.url, tmp_path / "missed", "--p95", "0.001ms", "--refine", "1")
    result = met["result"]
    assert isinstance(result, dict)
    steps = met["steps"]
    assert isinstance(steps, list) and [s["offered_rate"] for s in steps] == [20, 40]
    assert result["sustainable_rate"] == steps[-1]["achieved_rate"] > 0
    assert result["limited_by"].startswith("not reached")
    assert result["think_s"] == 1.0 and result["p95_target_ms"] == 10_000
    # Little's law: users = rate x (think + response time)
    expected = result["sustainable_rate"] * (1.0 + result["response_ms"] / 1000)
    assert result["users"] == pytest.approx(expected, abs=0.1)

    result = missed["result"]
    assert isinstance(result, dict)
    assert result["sustainable_rate"] == 0 and result["users"] == 0
    steps = missed["steps"]
    assert isinstance(steps, list) and [s["offered_rate"] for s in steps] == [20, 5]  # 20 / 2^2
    assert "p95" in result["limited_by"] and "0.001 ms" in result["limited_by"]


@pytest.mark.timeout(900)  # a busy machine: the ceilings below, not pytest's default
def test_ctrl_c_stops_and_writes_a_partial_report(tmp_path: Path) -> None:
    scenario = tmp_path / "scenario.toml"
    scenario.write_text("pool = 5\nrates = [20]\nstep_s = 60\narrival = 'constant'\n")
    with running(tmp_path / "data", log=tmp_path / "server.log") as server:
        tiny_collection(server.url)
        argv = [sys.executable, "-m", "spyglass", "bench", "load", "--url", server.url]
        argv += ["--collection", "tiny", "--scenario", str(scenario)]
        argv += ["--out", str(tmp_path / "partial")]
        process = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=child_env(),
            preexec_fn=interruptible,
        )
        try:
            searched = 0.0
            for _ in range(600):  # until the step is under way (bounded; not a timing assertion)
                metrics = parse_metrics(httpx.get(f"{server.url}/metrics").text)
                searched = metrics["spyglass_http_request_duration_seconds_count"]
                if searched >= 40:  # sampling makes ~15 requests; the step 20 a second
                    break
                time.sleep(0.1)
            assert searched >= 40
            process.send_signal(signal.SIGINT)
            stdout, stderr = finish(process)
        finally:
            process.kill()
    assert process.returncode == 130, f"{stdout}\n{stderr}"
    assert "interrupted" in stderr and "wrote" in stdout
    report = json.loads((tmp_path / "partial.json").read_text())
    assert report["partial"] is True
    (step,) = report["steps"]
    assert step["partial"] is True and step["offered_rate"] == 20
    assert 0 < step["sent"] < 20 * 60 and step["status"]["2xx"] > 0


def test_the_probe_finds_the_server_processes(tmp_path: Path) -> None:
    with running(tmp_path / "data", workers=2, log=tmp_path / "server.log") as server:
        port = int(server.url.rsplit(":", 1)[1])
        pids = listening_pids(port)
    assert server.process.pid in pids and len(pids) == 3  # the supervisor and 2 workers


def test_limited_by_names_shedding_rate_limits_and_cpu() -> None:
    base = {
        "status": {"2xx": 90, "429": 0, "503": 0, "other": 0, "errors": 0},
        "p95_ms": 250.0,
        "dropped": 0,
        "generator_behind": False,
        "generator_cpu": 0.2,
    }
    shed = {**base, "status": {**base["status"], "503": 10}, "server": {"shed": 10}}  # type: ignore[dict-item]
    assert limited_by(shed, 100).startswith("admission control: 10 requests shed")
    limited = {**base, "status": {**base["status"], "429": 3}, "server": {}}  # type: ignore[dict-item]
    assert limited_by(limited, 100).startswith("rate limiting: 3")
    encoder = {**base, "server": {"cpu_busy": 0.97, "cores": 2, "server_cpu": 1.7}}
    encoder["server"]["encoder_busy_cores"] = 1.2  # type: ignore[index]
    assert limited_by(encoder, 100).startswith("CPU in the encoder (p95 250 ms > 100 ms")
    http = {**base, "server": {"cpu_busy": 0.95, "cores": 2, "server_cpu": 1.6, "workers": 2}}
    assert limited_by(http, 100).startswith("CPU outside the encoder")
    idle = {**base, "server": {"cpu_busy": 0.3, "cores": 2}}
    assert limited_by(idle, 100).startswith("unknown (p95 250 ms > 100 ms with the CPU only 30%")
    assert "/metrics not readable" in limited_by({**base, "server": {}}, 100)
    dropped = {**base, "dropped": 7, "server": {}}
    assert limited_by(dropped, 100).startswith("the load generator: 7 requests dropped")
