"""What micro-batching does for the raw ``text`` encoder under many concurrent callers.

64 threads (like 64 clients' requests in the server's thread pool) each encode
one sentence per call, for ``--seconds`` each run, against the plain encoder and
against a :class:`BatchingEncoder` around it, with 1 and 2 onnxruntime threads.
Prints sentences per second for each run. No server, no store: the encoder alone.

    .venv/bin/python benchmarks/text_batching.py --seconds 10
"""

from __future__ import annotations

import argparse
import threading
import time

from encoder_throughput import CORPUS, load_sentences

from spyglass.encoders.base import Encoder
from spyglass.encoders.batching import BatchingEncoder
from spyglass.encoders.text import TextEncoder


def hammer(encoder: Encoder, sentences: list[str], clients: int, seconds: float) -> float:
    """Sentences per second when ``clients`` threads encode one sentence per call."""
    stop = time.perf_counter() + seconds
    done = [0] * clients

    def client(n: int) -> None:
        i = n
        while time.perf_counter() < stop:
            encoder.encode([sentences[i % len(sentences)]])
            done[n] += 1
            i += clients

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(done) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each run")
    parser.add_argument("--clients", type=int, default=64, help="concurrent calling threads")
    parser.add_argument("--max-batch", type=int, default=32, help="BatchingEncoder max_batch")
    parser.add_argument("--wait-ms", type=float, default=2.0, help="BatchingEncoder max_wait_ms")
    parser.add_argument(
        "--words", type=int, default=0, help="cut each sentence to this many words (0: whole)"
    )
    args = parser.parse_args()
    sentences = load_sentences(CORPUS, 2000)
    if args.words:
        sentences = [" ".join(s.split()[: args.words]) for s in sentences]
    print(
        f"{args.clients} clients, one sentence per call, {args.seconds:g} s per run, "
        f"words={args.words or 'all'}"
    )
    for threads in (1, 2):
        inner = TextEncoder(threads=threads)
        inner.encode(sentences[:64])  # warm up
        runs: list[tuple[str, Encoder]] = [("off", inner)]
        for workers in (1, 2):
            runs.append(
                (
                    f"on, {workers} worker(s)",
                    BatchingEncoder(inner, args.max_batch, args.wait_ms, workers),
                )
            )
        for label, encoder in runs:
            rate = hammer(encoder, sentences, args.clients, args.seconds)
            print(f"onnx threads={threads}  batching {label:<16} {rate:7.1f} sentences/s")
            if isinstance(encoder, BatchingEncoder):
                encoder.close()


if __name__ == "__main__":
    main()
