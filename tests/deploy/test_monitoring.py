"""deploy/prometheus.yml and deploy/grafana/spyglass-dashboard.json: promtool accepts the
scrape config and parses every dashboard query, and every metric a query names is one
that a real Spyglass /metrics exposes, so renaming a metric breaks this test."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.deploy.conftest import DEPLOY

DASHBOARD = DEPLOY / "grafana" / "spyglass-dashboard.json"
# Grafana's interval variable is not PromQL; promtool reads the queries with it replaced.
RATE_INTERVAL = "$__rate_interval"

# Suffixes of the samples each metric type is exposed as (the text format, and
# OpenMetrics' _created where prometheus-client adds it).
SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "info": ("_info",),
    "unknown": ("",),
}
PROMQL_WORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless"}
    | {"bool", "offset", "inf", "nan"}
)


def promtool_run(promtool: Path, *args: str, stdin: str | None = None) -> str:
    result = subprocess.run(
        [str(promtool), *args], input=stdin, capture_output=True, text=True, timeout=60
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return output


def exposed_sample_names(exposition: str) -> set[str]:
    """Every sample name that the metric families of a /metrics text can produce."""
    names: set[str] = set()
    for family in text_string_to_metric_families(exposition):
        names.update(family.name + suffix for suffix in SUFFIXES[family.type])
        names.update(sample.name for sample in family.samples)
    return names


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (not its functions, labels or keywords)."""
    if match := re.fullmatch(r"\s*label_values\(\s*([\w:]+)\s*,\s*\w+\s*\)\s*", expr):
        return {match.group(1)}
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings (label values, regexes)
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # range selectors
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    names = set()
    for match in re.finditer(r"(?<![\w.])([A-Za-z_:][\w:]*)\b(\s*\()?", expr):
        word, call = match.group(1), match.group(2)
        if call is None and word.lower() not in PROMQL_WORDS:
            names.add(word)
    return names


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def panel_queries() -> list[tuple[str, str]]:
    """(where, expr) of every panel target."""
    return [
        (f"panel {panel['id']} {target['refId']}", target["expr"])
        for panel in dashboard()["panels"]
        for target in panel.get("targets", [])
    ]


def template_queries() -> list[tuple[str, str]]:
    return [
        (f"variable {variable['name']}", variable["query"]["query"])
        for variable in dashboard()["templating"]["list"]
        if variable["type"] == "query"
    ]


@pytest.fixture
async def exposition(client: httpx.AsyncClient) -> str:
    """A real scrape of an in-process Spyglass after some traffic."""
    assert (await client.put("/collections/docs", json={"dim": 2})).status_code == 201
    r = await client.post(
        "/collections/docs/items", json={"items": [{"id": "a", "vector": [1, 0]}]}
    )
    assert r.status_code == 200
    r = await client.post("/collections/docs/search", json={"vector": [1, 0], "k": 1})
    assert r.status_code == 200
    r = await client.get("/metrics")
    assert r.status_code == 200
    return r.text


def test_promtool_accepts_the_scrape_config(promtool: Path) -> None:
    output = promtool_run(promtool, "check", "config", str(DEPLOY / "prometheus.yml"))
    assert "SUCCESS" in output


def test_promtool_fails_a_config_it_should(promtool: Path, tmp_path: Path) -> None:
    """promtool and its exit status are real: a bad duration fails the same check."""
    bad = tmp_path / "prometheus.yml"
    bad.write_text((DEPLOY / "prometheus.yml").read_text().replace("15s", "15 seconds"))
    result = subprocess.run(
        [str(promtool), "check", "config", str(bad)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "15 seconds" in result.stdout + result.stderr


def test_dashboard_queries_are_promql_that_promtool_parses(promtool: Path, tmp_path: Path) -> None:
    queries = panel_queries()
    rules = {
        "groups": [
            {
                "name": "spyglass-dashboard",
                "rules": [
                    {
                        "record": f"dashboard:query_{n}",
                        "expr": expr.replace(RATE_INTERVAL, "5m"),
                    }
                    for n, (_, expr) in enumerate(queries)
                ],
            }
        ]
    }
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump(rules))
    output = promtool_run(promtool, "check", "rules", str(path))
    assert f"SUCCESS: {len(queries)} rules found" in output

    broken = {"groups": [{"name": "x", "rules": [{"record": "x:y", "expr": "sum(rate(a[5m])"}]}]}
    path.write_text(yaml.safe_dump(broken))
    result = subprocess.run(
        [str(promtool), "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0, "promtool should refuse an unbalanced expression"


async def test_every_dashboard_metric_is_one_spyglass_exposes(exposition: str) -> None:
    exposed = exposed_sample_names(exposition)
    used: set[str] = set()
    for where, expr in panel_queries() + template_queries():
        names = metric_names(expr)
        assert names, f"{where}: no metric in {expr!r}"
        missing = names - exposed
        assert not missing, f"{where}: {sorted(missing)} are not in Spyglass's /metrics"
        used |= names
    # What the dashboard is for: traffic, latency from the histogram, 429s, 503s, cache,
    # collections.
    assert {
        "spyglass_http_requests_total",
        "spyglass_http_request_duration_seconds_bucket",
        "spyglass_http_rate_limited_total",
        "spyglass_http_shed_total",
        "spyglass_cache_hits_total",
        "spyglass_cache_misses_total",
        "spyglass_collection_items",
    } <= used
    quantiles = re.findall(r"histogram_quantile\((0\.\d+),", DASHBOARD.read_text())
    assert {"0.50", "0.95", "0.99"} <= set(quantiles)


def test_metric_name_extraction_sees_through_promql() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (le, route) (rate(spyglass_x_bucket{route=~"a|b",'
        ' le!="+Inf"}[$__rate_interval]))) / on (route) group_left sum(spyglass_y) > 1e-9'
    )
    assert metric_names(expr) == {"spyglass_x_bucket", "spyglass_y"}
    assert metric_names("label_values(spyglass_z, route)") == {"spyglass_z"}


def test_dashboard_panels_use_its_datasource_variable() -> None:
    board = dashboard()
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        for target in panel["targets"]:
            for variable in re.findall(r"\$(\w+)", target["expr"]):
                assert variable in variables or variable == "__rate_interval", variable


async def test_spyglass_metrics_pass_promtool_lint(promtool: Path, exposition: str) -> None:
    promtool_run(promtool, "check", "metrics", stdin=exposition)
