"""Throughput of `spyglass ingest`: text rows vs the raw encoder, and bring-your-own vectors.

(a) Text: the first ``--text-rows`` (20,000) base rows of text100k/texts.jsonl
    (``{"id", "text"}``) are ingested by the CLI into a fresh data dir with
    ``SPYGLASS_ENCODER_THREADS=--threads``; its items/s is compared with the raw
    encoder (``create_encoder("text", threads=--threads)``) on the same texts in
    calls of ``--raw-batch`` (256). Target: CLI >= 90% of raw.
(b) Vectors: the 100,000 x 384 base vectors of text100k written as Parquet
    (``id`` string, ``vector`` list<float32>) and as JSONL (``{"id", "vector"}``)
    and ingested by the CLI into fresh data dirs. Target: >= 50,000 vectors/s.

The CLI runs with its own default ``--batch-size`` unless ``--batch-size`` is
given. Its summary line is printed as is: newer versions print the load rate
(read, encode, durable writes) and the HNSW build time apart; older ones folded
the build into the rate. Each case is also run in-process through the same
pipeline (``spyglass.ingest.pipeline.ingest``) to split load and index build
either way, and ``--profile`` adds a cProfile of the vector load phase. The
wall time of the CLI process (imports, model load, index build) is printed too,
and so is the CPU other processes used meanwhile (a shared machine skews rates).

    .venv/bin/python benchmarks/ingest.py
    .venv/bin/python benchmarks/ingest.py --threads 1 --skip-vectors
    .venv/bin/python benchmarks/ingest.py --skip-text --profile
"""

from __future__ import annotations

import argparse
import inspect
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
from _common import OUT, SPYGLASS, TEXT_SET, CpuWatch, code_version, load_text_set, wait_for_idle

WORK = OUT / "ingest"
CLI_BATCH = 2000  # `spyglass ingest --batch-size` default when this was written (was 256)


def cli_ingest(
    collection: str, path: Path, data_dir: Path, threads: int, batch: int | None
) -> tuple[str, float]:
    """Run ``spyglass ingest`` into a fresh ``data_dir``; (its summary line, wall seconds)."""
    if data_dir.exists():
        shutil.rmtree(data_dir)
    command = [str(SPYGLASS), "ingest", collection, str(path), "--data-dir", str(data_dir)]
    if batch is not None:
        command += ["--batch-size", str(batch)]
    env = {**os.environ, "SPYGLASS_ENCODER_THREADS": str(threads), "COLUMNS": "200"}
    print(f"$ SPYGLASS_ENCODER_THREADS={threads} {' '.join(command)}", flush=True)
    started = time.perf_counter()
    with CpuWatch() as cpu:
        done = subprocess.run(command, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"spyglass ingest failed ({done.returncode}): {done.stderr[-2000:]}")
    summary = done.stdout.strip().splitlines()[-1]
    print(f"  {summary}")
    print(f"  process wall time {wall:.2f} s (includes imports and model load); {cpu}")
    return summary, wall


def cli_rate(summary: str) -> float:
    match = re.search(r"\(([\d,]+) items/s\)", summary)
    if match is None:
        raise SystemExit(f"cannot read the rate in {summary!r}")
    return float(match.group(1).replace(",", ""))


def pipeline_split(
    collection: str, path: Path, data_dir: Path, threads: int, batch: int | None
) -> tuple[int, float, float]:
    """Ingest in-process; (items, load seconds, index-build seconds)."""
    from spyglass.engine import Engine
    from spyglass.ingest.pipeline import ingest
    from spyglass.settings import load_settings
    from spyglass.stores import open_store

    if data_dir.exists():
        shutil.rmtree(data_dir)
    # as the CLI does: the server's per-request max_batch does not bind a local load
    settings = load_settings(
        data_dir=data_dir, encoder_threads=threads, max_batch=max(batch or CLI_BATCH, 1000)
    )
    store = open_store(settings)
    last_batch = [0.0]

    def on_batch(_: int) -> None:
        last_batch[0] = time.perf_counter()

    try:
        engine = Engine(settings, store)
        if "source" in inspect.signature(ingest).parameters:  # newer pipeline: an opened source
            from spyglass.ingest.loaders import open_source

            report = ingest(
                engine,
                collection,
                open_source(path, batch_size=batch or CLI_BATCH),
                on_batch=on_batch,
            )
        else:
            report = ingest(engine, collection, path, on_batch=on_batch)  # type: ignore[arg-type]
        ended = time.perf_counter()
    finally:
        store.close()
    if hasattr(report, "index_seconds"):  # newer pipeline: times the two phases itself
        return report.items, report.seconds, report.index_seconds
    build = ended - last_batch[0]
    # the report's clock (what the CLI prints) minus the index build = the load phase
    return report.items, report.seconds - build, build


def profile_load(path: Path, top: int, batch: int | None) -> None:
    """cProfile of the load phase only (read + validate + write), the index build skipped."""
    import cProfile
    import pstats

    from spyglass.engine import Engine
    from spyglass.ingest.loaders import open_source
    from spyglass.ingest.pipeline import ingest
    from spyglass.settings import load_settings
    from spyglass.stores import open_store

    data_dir = WORK / "dir-profile"
    if data_dir.exists():
        shutil.rmtree(data_dir)
    settings = load_settings(
        data_dir=data_dir, encoder_threads=1, max_batch=max(batch or CLI_BATCH, 1000)
    )
    store = open_store(settings)
    store.optimize = lambda name: None  # type: ignore[method-assign]  # load phase only
    try:
        engine = Engine(settings, store)
        profiler = cProfile.Profile()
        profiler.enable()
        ingest(engine, "vectors", open_source(path, batch_size=batch or CLI_BATCH))
        profiler.disable()
    finally:
        store.close()
    print(f"\ncProfile of the load phase of {path.name} (index build skipped):")
    pstats.Stats(profiler).sort_stats("tottime").print_stats(top)


def raw_encoder_rate(texts: list[str], threads: int, batch: int) -> float:
    from spyglass.encoders import create_encoder

    encoder = create_encoder("text", threads=threads)
    encoder.encode(texts[:64])  # warm up
    started = time.perf_counter()
    with CpuWatch() as cpu:
        for start in range(0, len(texts), batch):
            encoder.encode(texts[start : start + batch])
    rate = len(texts) / (time.perf_counter() - started)
    print(f"  raw encoder: {rate:.1f} sentences/s (threads {threads}, calls of {batch}); {cpu}")
    return rate


def text_case(rows: int, threads: int, split: bool, batch: int | None, raw_batch: int) -> list[str]:
    lines = (TEXT_SET / "texts.jsonl").read_bytes().splitlines()[:rows]
    path = WORK / f"texts{rows // 1000}k.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    texts = [orjson.loads(line)["text"] for line in lines]
    print(
        f"\n(a) text: {len(texts):,} rows of {path.name}, encoder threads {threads}, "
        f"CLI batch {batch or 'default'}, raw encoder calls of {raw_batch}"
    )
    summary, wall = cli_ingest("texts", path, WORK / "dir-text", threads, batch)
    rate = cli_rate(summary)
    raw = raw_encoder_rate(texts, threads, raw_batch)
    out = [
        f"text CLI (summary)      {rate:10,.1f} items/s = {rate / raw * 100:5.1f}% of raw "
        f"encoder {raw:,.1f}/s (calls of {raw_batch})  target >= 90%: "
        f"{'PASS' if rate >= 0.9 * raw else 'FAIL'}",
        f"text CLI (process wall) {len(texts) / wall:10,.1f} items/s = "
        f"{len(texts) / wall / raw * 100:5.1f}% of raw",
    ]
    cli_batch = batch or CLI_BATCH
    if cli_batch != raw_batch:  # the CLI's encoder calls are its batches: compare like with like
        same = raw_encoder_rate(texts, threads, cli_batch)
        out.append(
            f"text CLI vs raw encoder in calls of {cli_batch} (the CLI's batch): "
            f"{rate / same * 100:5.1f}% of {same:,.1f}/s"
        )
    if split:
        with CpuWatch() as cpu:
            items, load, build = pipeline_split(
                "texts", path, WORK / "dir-text-split", threads, batch
            )
        print(f"  in-process pipeline run: {cpu}")
        out.append(
            f"text in-process split:  load (read+encode+write) {items / load:,.1f} items/s "
            f"= {items / load / raw * 100:.1f}% of raw ({load:.1f} s), index build {build:.1f} s"
        )
    return out


def write_vector_files(base: np.ndarray) -> tuple[Path, Path]:
    ids = [f"b{i}" for i in range(len(base))]
    parquet = WORK / f"vectors{len(base) // 1000}k.parquet"
    jsonl = WORK / f"vectors{len(base) // 1000}k.jsonl"
    if not parquet.exists():
        offsets = pa.array(np.arange(0, base.size + 1, base.shape[1], dtype=np.int32))
        vectors = pa.ListArray.from_arrays(offsets, pa.array(base.reshape(-1)))
        pq.write_table(pa.table({"id": ids, "vector": vectors}), parquet)
    if not jsonl.exists():
        with jsonl.open("wb") as handle:
            for item_id, row in zip(ids, base, strict=True):
                handle.write(
                    orjson.dumps({"id": item_id, "vector": row}, option=orjson.OPT_SERIALIZE_NUMPY)
                    + b"\n"
                )
    return parquet, jsonl


def vector_case(count: int, split: bool, profile: bool, batch: int | None) -> list[str]:
    base = load_text_set(texts=False).base[:count]
    parquet, jsonl = write_vector_files(base)
    out = []
    for path in (parquet, jsonl):
        kind = path.suffix.lstrip(".")
        print(
            f"\n(b) vectors: {len(base):,} x {base.shape[1]} from {path.name} "
            f"({path.stat().st_size / 2**20:.0f} MiB)"
        )
        summary, wall = cli_ingest("vectors", path, WORK / f"dir-{kind}", 1, batch)
        rate = cli_rate(summary)
        out.append(
            f"{kind:7} CLI (summary)  {rate:10,.0f} vectors/s  target >= 50,000/s: "
            f"{'PASS' if rate >= 50_000 else 'FAIL'}   (process wall "
            f"{len(base) / wall:,.0f}/s)"
        )
        if split:
            with CpuWatch() as cpu:
                items, load, build = pipeline_split(
                    "vectors", path, WORK / f"dir-{kind}-split", 1, batch
                )
            print(f"  in-process pipeline run: {cpu}")
            out.append(
                f"{kind:7} in-process split: load (read+write) {items / load:10,.0f} "
                f"vectors/s ({load:.1f} s), index build {build:.1f} s "
                f"-> {items / (load + build):,.0f}/s overall"
            )
        if profile:
            profile_load(path, 25, batch)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="encoder threads, both sides")
    parser.add_argument("--text-rows", type=int, default=20_000)
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help=f"spyglass ingest --batch-size (default: the CLI's, {CLI_BATCH})",
    )
    parser.add_argument("--raw-batch", type=int, default=256, help="raw encoder call size")
    parser.add_argument("--vectors", type=int, default=100_000)
    parser.add_argument("--skip-text", action="store_true")
    parser.add_argument("--skip-vectors", action="store_true")
    parser.add_argument("--no-split", action="store_true", help="skip the in-process runs")
    parser.add_argument(
        "--profile", action="store_true", help="cProfile the load phase of the vector files"
    )
    args = parser.parse_args()
    print(f"code under test: {code_version()}", flush=True)
    wait_for_idle()
    WORK.mkdir(parents=True, exist_ok=True)
    load_text_set(texts=False)  # fail early when text100k is missing
    lines = []
    if not args.skip_text:
        lines += text_case(
            args.text_rows, args.threads, not args.no_split, args.batch_size, args.raw_batch
        )
    if not args.skip_vectors:
        lines += vector_case(args.vectors, not args.no_split, args.profile, args.batch_size)
    print("\nsummary:")
    for line in lines:
        print("  " + line)


if __name__ == "__main__":
    main()
