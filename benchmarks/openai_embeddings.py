"""Throughput of OpenAI's ``POST /v1/embeddings`` on a real server vs the encoder called directly.

Real sentences (the SQuAD "Normans" paragraphs of the shared data, split into
sentences) are embedded two ways, for each request size (``--batch``, default
1 and 32 inputs per call):

1. directly: one caller encodes them with a ``TextEncoder`` of ``--threads``
   onnxruntime threads (default: every core), in calls of the request size;
2. over HTTP: ``spyglass serve --workers 2`` (an API key set, as SDK users run
   it), loaded by ``--clients`` threads, each sending requests of that size
   with the OpenAI SDK's default ``encoding_format=base64`` for ``--duration``
   seconds on its own keep-alive connection.

Prints inputs/s for both and their ratio. The clients run on the same cores as
the server, so the server gets less than the whole machine. The first answer is
checked against the direct vectors, so the figures are of the right work.

    .venv/bin/python benchmarks/openai_embeddings.py
    .venv/bin/python benchmarks/openai_embeddings.py --batch 1 8 32 --clients 16 --duration 20
    .venv/bin/python benchmarks/openai_embeddings.py --no-wait --count 200 --duration 2  # smoke
"""

from __future__ import annotations

import argparse
import base64
import os
import shutil
import threading
import time

import httpx
import numpy as np
from _common import OUT, CpuWatch, Server, code_version, wait_for_idle
from encoder_throughput import CORPUS, load_sentences, throughput

from spyglass.encoders.text import TextEncoder

MODEL = "all-MiniLM-L6-v2"
KEY = "benchmark-openai-embeddings-key-0123456789"


def request_body(sentences: list[str], start: int, size: int) -> dict[str, object]:
    texts = [sentences[(start + i) % len(sentences)] for i in range(size)]
    return {"model": MODEL, "input": texts, "encoding_format": "base64"}


def decoded(answer: dict[str, object]) -> np.ndarray:
    rows = answer["data"]
    assert isinstance(rows, list)
    return np.stack([np.frombuffer(base64.b64decode(row["embedding"]), "<f4") for row in rows])


def check(url: str, sentences: list[str], encoder: TextEncoder) -> None:
    """The server's vectors are the encoder's: the load below measures the right work."""
    body = request_body(sentences, 0, 8)
    r = httpx.post(f"{url}/v1/embeddings", json=body, headers=auth(), timeout=120)
    r.raise_for_status()
    got = decoded(r.json())
    expected = encoder.encode(sentences[:8])
    if not np.allclose(got, expected, atol=1e-4):
        raise SystemExit("the server's vectors differ from the encoder's; not measuring")


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {KEY}"}


def hammer(url: str, sentences: list[str], size: int, clients: int, seconds: float) -> float:
    """Inputs per second when ``clients`` threads send ``size``-input requests for ``seconds``."""
    done = [0] * clients
    failed: list[str] = []
    stop = time.perf_counter() + seconds

    def client(n: int) -> None:
        start = n * 97
        with httpx.Client(base_url=url, headers=auth(), timeout=120) as session:
            while time.perf_counter() < stop:
                r = session.post("/v1/embeddings", json=request_body(sentences, start, size))
                if r.status_code != 200:
                    failed.append(f"{r.status_code} {r.text[:200]}")
                    return
                done[n] += size
                start += size

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failed:
        raise SystemExit(f"{len(failed)} requests failed, e.g. {failed[0]}")
    return sum(done) / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 32], help="inputs per call")
    parser.add_argument("--clients", type=int, default=16, help="concurrent HTTP clients")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per HTTP run")
    parser.add_argument("--count", type=int, default=2000, help="sentences per direct run")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="direct threads")
    parser.add_argument("--workers", type=int, default=2, help="server workers")
    parser.add_argument("--no-wait", action="store_true", help="do not wait for an idle machine")
    args = parser.parse_args()

    if not args.no_wait:
        wait_for_idle()
    print(f"code: {code_version()}")
    sentences = load_sentences(CORPUS, args.count)
    words = sum(len(s.split()) for s in sentences) / len(sentences)
    print(f"{len(sentences)} sentences, {words:.1f} words on average")
    encoder = TextEncoder(threads=args.threads)
    encoder.encode(sentences[:64])  # warm up

    direct: dict[int, float] = {}
    with CpuWatch() as watch:
        for size in args.batch:
            direct[size] = throughput(encoder, sentences, size)
    print(f"direct TextEncoder, {args.threads} thread(s): {watch}")

    data = OUT / "openai-embeddings-data"
    shutil.rmtree(data, ignore_errors=True)
    with Server(data, args.workers, SPYGLASS_ADMIN_KEY=KEY) as server:
        url = f"http://127.0.0.1:{server.port}"
        check(url, sentences, encoder)
        hammer(url, sentences, 1, args.clients, 1.0)  # every worker loads its model
        served: dict[int, float] = {}
        with CpuWatch(server.pids()) as watch:
            for size in args.batch:
                served[size] = hammer(url, sentences, size, args.clients, args.duration)
        print(f"/v1/embeddings, {args.workers} workers, {args.clients} clients: {watch}")

    print(f"{'inputs/call':>11}  {'direct':>12}  {'/v1/embeddings':>16}  ratio")
    for size in args.batch:
        print(
            f"{size:>11}  {direct[size]:>8.1f}/s  {served[size]:>12.1f}/s  "
            f"{served[size] / direct[size]:5.2f}"
        )


if __name__ == "__main__":
    main()
