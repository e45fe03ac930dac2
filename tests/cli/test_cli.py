"""The ``spyglass`` command as a user runs it: real processes, real files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from spyglass.cli.main import cli

COMMANDS = sorted(cli.commands)


def spyglass(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "spyglass", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )


def assert_user_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 or lines[0].startswith("Usage:"), result.stderr
    for needle in needles:
        assert needle in result.stderr, (needle, result.stderr)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: str) -> None:
    result = spyglass(command, "--help")
    assert result.returncode == 0
    assert "Usage: " in result.stdout and "--help" in result.stdout


def test_ingest_jsonl_vectors_then_search_with_a_filter(tmp_path: Path) -> None:
    rows = [
        {"id": f"v{i}", "vector": [float(i), 1.0, 0.5], "color": "red" if i % 2 else "blue"}
        for i in range(50)
    ]
    source = tmp_path / "rows.jsonl"
    source.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    data = tmp_path / "data"
    result = spyglass("ingest", "vecs", source, "--data-dir", data, "--metric", "l2")
    assert result.returncode == 0, result.stderr
    assert "50 items into vecs" in result.stdout and "items/s" in result.stdout

    listed = spyglass("collections", "--data-dir", data)
    assert "vecs" in listed.stdout and "50" in listed.stdout

    found = spyglass(
        "search",
        "vecs",
        "[10, 1, 0.5]",
        "-k",
        "3",
        "--filter",
        '{"color": "blue"}',
        "--json",
        "--data-dir",
        data,
    )
    assert found.returncode == 0, found.stderr
    hits = json.loads(found.stdout)
    assert [h["id"] for h in hits] == ["v10", "v12", "v8"]  # v8 and v12 tie: by id
    assert all(h["payload"]["color"] == "blue" for h in hits)


def test_ingest_parquet_and_csv(tmp_path: Path) -> None:
    vectors = np.random.default_rng(0).normal(size=(30, 4)).astype(np.float32)
    table = pa.table({"id": [f"p{i}" for i in range(30)], "vector": list(vectors), "n": range(30)})
    pq.write_table(table, tmp_path / "rows.parquet")
    data = tmp_path / "data"
    assert spyglass("ingest", "pq", tmp_path / "rows.parquet", "--data-dir", data).returncode == 0
    found = spyglass(
        "search", "pq", json.dumps(vectors[7].tolist()), "-k", "1", "--json", "--data-dir", data
    )
    assert json.loads(found.stdout)[0] == {
        "id": "p7",
        "score": pytest.approx(1.0, abs=1e-4),
        "payload": {"n": 7},
    }

    (tmp_path / "rows.csv").write_text('id,vector,kind\nc1,"[1, 0, 0, 0]",a\nc2,"[0, 1, 0, 0]",b\n')
    assert spyglass("ingest", "csv", tmp_path / "rows.csv", "--data-dir", data).returncode == 0
    found = spyglass("search", "csv", "[0, 1, 0, 0]", "-k", "1", "--json", "--data-dir", data)
    assert json.loads(found.stdout)[0]["payload"] == {"kind": "b"}


def test_ingest_a_folder_of_text_and_search_it(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "bees.md").write_text("# Bees\n\nHoneybees make honey from the nectar of flowers.\n")
    (docs / "ships.txt").write_text("Container ships carry goods across the oceans.\n")
    data = tmp_path / "data"
    result = spyglass("ingest", "notes", docs, "--data-dir", data)
    assert result.returncode == 0, result.stderr
    assert "2 items into notes" in result.stdout
    again = spyglass("ingest", "notes", docs, "--data-dir", data)
    assert "0 items" in again.stdout and "2 unchanged and skipped" in again.stdout
    found = spyglass("search", "notes", "where does honey come from", "--json", "--data-dir", data)
    hits = json.loads(found.stdout)
    assert len(hits) == 2 and hits[0]["id"] == "bees.md#0"
    assert hits[0]["payload"]["source"] == "bees.md"
    table = spyglass("search", "notes", "cargo vessels", "--data-dir", data)
    assert table.returncode == 0 and "ships.txt#0" in table.stdout


def test_user_mistakes_are_one_line_and_a_non_zero_exit(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert_user_error(
        spyglass("ingest", "x", tmp_path / "missing.jsonl", "--data-dir", data), "missing.jsonl"
    )
    (tmp_path / "bad.jsonl").write_text('{"id": "a", "vector": [1, 2]}\n{"id": "b", "vector": \n')
    assert_user_error(spyglass("ingest", "x", tmp_path / "bad.jsonl", "--data-dir", data), "line 2")
    assert_user_error(spyglass("search", "nope", "hello", "--data-dir", data), "nope")
    assert_user_error(
        spyglass("search", "x", "hello", "--filter", "{bad", "--data-dir", data), "--filter"
    )
    assert_user_error(spyglass("search", "x", "hello", "-k", "0", "--data-dir", data), "-k")
    assert_user_error(spyglass("serve", "--workers", "-1", "--data-dir", data), "workers")
    assert_user_error(spyglass("serve", "--port", "http"), "--port")
    (tmp_path / "conf.toml").write_text('colour = "blue"\n')
    assert_user_error(spyglass("serve", "--config", tmp_path / "conf.toml"), "colour")
    assert_user_error(spyglass("frobnicate"), "frobnicate")


def test_settings_come_from_the_config_file_and_environment(tmp_path: Path) -> None:
    config = tmp_path / "spyglass.toml"
    config.write_text(f'data_dir = "{tmp_path / "from-file"}"\nmax_k = 7\n')
    (tmp_path / "rows.jsonl").write_text('{"id": "a", "vector": [1, 0]}\n')
    result = spyglass("ingest", "c", tmp_path / "rows.jsonl", "--config", config)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "from-file" / "spyglass.db").exists()
    too_many = spyglass("search", "c", "[1, 0]", "-k", "8", "--config", config)
    assert_user_error(too_many, "7")


def test_ingest_into_a_quantized_collection(tmp_path: Path) -> None:
    rows = [{"id": f"v{i}", "vector": [float(i % 7), 1.0, float(i % 3)]} for i in range(6000)]
    source = tmp_path / "rows.jsonl"
    source.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    data = tmp_path / "data"
    result = spyglass("ingest", "q", source, "--data-dir", data, "--quantization", "sq8")
    assert result.returncode == 0, result.stderr
    listed = spyglass("collections", "--data-dir", data)
    assert "sq8; 6,000 indexed" in listed.stdout, listed.stdout
    assert "recall" in listed.stdout
    refused = spyglass("ingest", "b", source, "--data-dir", data, "--quantization", "binary")
    assert_user_error(refused, "index.quantization 'binary' is not available")
    again = spyglass("ingest", "q", source, "--data-dir", data, "--quantization", "pq")
    assert_user_error(again, "exists with quantization 'sq8', not 'pq'")


def test_ingest_a_folder_of_images_and_search_by_color(tmp_path: Path) -> None:
    from tests.conftest import SHARED_DATA

    photos = SHARED_DATA / "photos" / "color"
    data = tmp_path / "data"
    result = spyglass("ingest", "pics", photos, "--encoder", "color", "--data-dir", data)
    assert result.returncode == 0, result.stderr
    count = len(list(photos.iterdir()))
    assert f"{count} items into pics" in result.stdout
    listed = spyglass("collections", "--data-dir", data)
    [row] = [line.split() for line in listed.stdout.splitlines() if "pics" in line]
    assert {"color", "1152", "l2", str(count)} <= set(row)
    found = spyglass("search", "pics", "x", "--json", "--data-dir", data)
    assert found.returncode == 1 and "takes colors or image, not text" in found.stderr
