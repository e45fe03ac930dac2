"""Latency of ``POST /collections/{name}/ask`` with the extractive answerer, on a real server.

Starts ``spyglass serve --workers 2`` with one document source, the 39 paragraph files
of ``../shared/data/rag_squad_normans/paragraphs_txt`` (ingested before /readyz turns
ready, as ``serve --config`` does), then asks the 104 questions of ``queries.jsonl``
(answerable and not) over HTTP, ``k`` 5, hybrid retrieval, no LLM. Prints p50/p95/p99
of the whole request as the client sees it, one client at a time and then with
``--concurrency`` clients, and how many answers abstained. The query cache is off, so
every request retrieves and scores.

    .venv/bin/python benchmarks/ask_latency.py
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

from _common import OUT, SHARED_DATA, Server, code_version, wait_for_idle

DATA = SHARED_DATA / "rag_squad_normans"


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2, help="passes over the questions")
    args = parser.parse_args()
    print(f"code under test: {code_version()}", flush=True)
    wait_for_idle()
    questions = [json.loads(line)["text"] for line in (DATA / "queries.jsonl").open()]
    data_dir = OUT / "ask-latency"
    shutil.rmtree(data_dir, ignore_errors=True)
    sources = json.dumps([{"path": str(DATA / "paragraphs_txt"), "collection": "normans"}])
    env = {"SPYGLASS_SOURCES": sources, "SPYGLASS_CACHE_MAX_BYTES": "0"}
    started = time.perf_counter()
    with Server(data_dir, args.workers, **env) as server:
        print(f"ready after {time.perf_counter() - started:.1f} s (ingest included)", flush=True)

        def ask(question: str) -> tuple[float, bool]:
            began = time.perf_counter()
            status, raw = server.request(
                "POST", "/collections/normans/ask", {"question": question, "k": 5}
            )
            took = (time.perf_counter() - began) * 1000
            if status != 200:
                raise SystemExit(f"/ask answered {status}: {raw[:300]!r}")
            return took, bool(json.loads(raw)["abstained"])

        ask(questions[0])  # warm
        for clients in (1, args.concurrency):
            work = questions * args.rounds
            began = time.perf_counter()
            with ThreadPoolExecutor(clients) as pool:
                results = list(pool.map(ask, work))
            wall = time.perf_counter() - began
            times = [t for t, _ in results]
            abstained = sum(a for _, a in results) / len(results)
            print(
                f"{clients} client(s): {len(results)} asks in {wall:.1f} s"
                f" ({len(results) / wall:.1f}/s), p50 {statistics.median(times):.0f} ms,"
                f" p95 {percentile(times, 0.95):.0f} ms, p99 {percentile(times, 0.99):.0f} ms;"
                f" abstained {abstained:.0%}",
                flush=True,
            )


if __name__ == "__main__":
    main()
