"""Throughput and latency of the raw ``text`` encoder, without the server around it.

Encodes about 2,000 real sentences (the SQuAD "Normans" paragraphs of the shared
data, split into sentences and repeated to the wanted count) in calls of 1, 32
and 64 sentences and prints sentences per second for each, plus the latency of
one single-sentence call (p50, p95). Used to choose the default number of
onnxruntime threads and to catch slow-downs in tokenising, padding or pooling.

    .venv/bin/python benchmarks/encoder_throughput.py --threads 1
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from spyglass.encoders.text import TextEncoder

SHARED_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
CORPUS = SHARED_DATA / "rag_squad_normans" / "corpus.jsonl"
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def load_sentences(path: Path, count: int) -> list[str]:
    """``count`` sentences of the corpus' paragraphs, cycling when it has fewer."""
    sentences: list[str] = []
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            text = json.loads(line)["text"]
            sentences.extend(s for s in SENTENCE_END.split(text) if s.strip())
    if not sentences:
        raise SystemExit(f"{path} holds no text")
    return list(itertools.islice(itertools.cycle(sentences), count))


def throughput(encoder: TextEncoder, sentences: Sequence[str], batch_size: int) -> float:
    """Sentences per second when ``sentences`` are encoded ``batch_size`` at a time."""
    start = time.perf_counter()
    for i in range(0, len(sentences), batch_size):
        encoder.encode(sentences[i : i + batch_size])
    return len(sentences) / (time.perf_counter() - start)


def latencies(encoder: TextEncoder, sentences: Sequence[str]) -> list[float]:
    """Milliseconds of each single-sentence call."""
    times: list[float] = []
    for sentence in sentences:
        start = time.perf_counter()
        encoder.encode([sentence])
        times.append((time.perf_counter() - start) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads")
    parser.add_argument("--count", type=int, default=2000, help="sentences per batch size")
    parser.add_argument("--latency-calls", type=int, default=300, help="single-sentence calls")
    parser.add_argument("--corpus", type=Path, default=CORPUS, help="BEIR-style corpus.jsonl")
    args = parser.parse_args()

    sentences = load_sentences(args.corpus, args.count)
    words = statistics.mean(len(s.split()) for s in sentences)
    start = time.perf_counter()
    encoder = TextEncoder(threads=args.threads)
    load_s = time.perf_counter() - start
    encoder.encode(sentences[:64])  # warm up: first-call allocations, caches
    print(
        f"threads={args.threads or 'default'}  load={load_s:.2f}s  "
        f"{len(sentences)} sentences, {words:.1f} words on average"
    )

    for batch_size in (1, 32, 64):
        rate = throughput(encoder, sentences, batch_size)
        print(f"batch {batch_size:>3}: {rate:8.1f} sentences/s")

    times = np.array(latencies(encoder, sentences[: args.latency_calls]))
    p50, p95 = np.percentile(times, [50, 95])
    print(f"single-sentence latency: p50 {p50:.2f} ms, p95 {p95:.2f} ms ({len(times)} calls)")


if __name__ == "__main__":
    main()
