"""In-process overhead of ``EmbeddedStore.search`` over raw FAISS on the same HNSW snapshot.

Both sides search the same file: the store through its view of the ``bench``
collection of benchmarks/out/store-text100k, raw FAISS through
``faiss.read_index(<that hnsw-<seq>.faiss>, IO_FLAG_MMAP_IFC)`` (as the store
opens it). One query per call, k=10, efSearch 64 (the collection default), the
same text100k queries, one thread (``faiss.omp_set_num_threads(1)``). Rounds
alternate raw and store so drift hits both alike; the figure is the median
round's mean µs per query. ``overhead = store / raw - 1``; target <= 20%.

Then the store's time per query is split by stage (``_sync``, ``_prepare``,
``View.search``, ``_hits``, calling the same private methods the store's
``search`` calls), and with ``--profile`` a cProfile of store searches is printed.

    .venv/bin/python benchmarks/overhead.py
    .venv/bin/python benchmarks/overhead.py --profile
"""

from __future__ import annotations

import argparse
import cProfile
import inspect
import pstats
import statistics
import time
from collections.abc import Callable

import faiss
import numpy as np
from _common import (
    COLLECTION,
    TEXT_STORE,
    CpuWatch,
    build_text_store,
    code_version,
    load_text_set,
    snapshot_file,
    wait_for_idle,
)

from spyglass.stores.base import Query
from spyglass.stores.embedded import EmbeddedStore, _prepare

K = 10
EF = 64


def per_query_us(fn: Callable[[np.ndarray], object], queries: np.ndarray) -> float:
    started = time.perf_counter()
    for vector in queries:
        fn(vector)
    return (time.perf_counter() - started) / len(queries) * 1e6


def stages(store: EmbeddedStore, queries: np.ndarray) -> dict[str, float]:
    """Mean µs per query of each stage of ``EmbeddedStore.search`` (no filter).

    ``FAISS alone`` is the ``Snapshot.search`` call that ``View.search`` makes,
    timed in a separate pass over the same queries, so ``View.search`` minus it
    is the view's own (Python) work.
    """
    names = ("_sync", "_prepare", "View.search", "_hits")
    hits_takes_view = "view" in inspect.signature(store._hits).parameters  # newer store code
    totals = dict.fromkeys(names, 0.0)
    clock = time.perf_counter
    prepared_all = []
    for vector in queries:
        query = Query(vector=vector, k=K)
        t0 = clock()
        view = store._sync(COLLECTION)
        t1 = clock()
        prepared = _prepare(view.metric, query.vector[None, :])
        t2 = clock()
        results = view.search(prepared, query.k, ef=None, allowed=None, exact=False)
        t3 = clock()
        store._hits(view, results, [False]) if hits_takes_view else store._hits(results)
        t4 = clock()
        for name, spent in zip(names, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            totals[name] += spent
        prepared_all.append(prepared)
    snapshot = store._sync(COLLECTION).snapshot
    assert snapshot is not None
    t0 = clock()
    for prepared in prepared_all:
        snapshot.search(prepared, K, EF, None)
    totals["FAISS alone"] = clock() - t0
    return {name: value / len(queries) * 1e6 for name, value in totals.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--profile", action="store_true", help="cProfile the store searches")
    args = parser.parse_args()
    print(f"code under test: {code_version()}", flush=True)
    wait_for_idle()
    faiss.omp_set_num_threads(1)

    data = load_text_set(texts=False)
    build_text_store()
    queries = np.ascontiguousarray(data.query[: args.queries])
    path = snapshot_file(TEXT_STORE)
    index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC)
    index.hnsw.efSearch = EF
    store = EmbeddedStore(TEXT_STORE)
    print(
        f"snapshot {path.relative_to(TEXT_STORE)}: {index.ntotal} vectors, d={index.d}, "
        f"M={index.hnsw.nb_neighbors(1)}, {path.stat().st_size / 2**20:.0f} MiB; "
        f"{len(queries)} queries, k={K}, ef={EF}, 1 thread"
    )

    def raw(vector: np.ndarray) -> object:
        return index.search(vector[None, :], K)

    def spyglass(vector: np.ndarray) -> object:
        return store.search(COLLECTION, [Query(vector=vector, k=K)])

    # same answers? (positions are label - 1 and ids are b<position> in this store)
    agree = 0
    for vector in queries[:200]:
        _, positions = raw(vector)  # type: ignore[misc]
        hits = store.search(COLLECTION, [Query(vector=vector, k=K)])[0]
        agree += [f"b{p}" for p in positions[0]] == [h.id for h in hits]
    print(f"identical top-{K} lists on {agree}/200 queries")

    raw_rounds, store_rounds = [], []
    with CpuWatch() as cpu:
        for _ in range(args.rounds):
            raw_rounds.append(per_query_us(raw, queries))
            store_rounds.append(per_query_us(spyglass, queries))
    raw_us, store_us = statistics.median(raw_rounds), statistics.median(store_rounds)
    overhead = store_us / raw_us - 1
    print(
        f"raw FAISS           : {raw_us:8.1f} us/query  (rounds: "
        f"{', '.join(f'{r:.0f}' for r in raw_rounds)})"
    )
    print(
        f"EmbeddedStore.search: {store_us:8.1f} us/query  (rounds: "
        f"{', '.join(f'{r:.0f}' for r in store_rounds)})"
    )
    print(cpu)
    verdict = "PASS" if overhead <= 0.20 else "FAIL"
    print(
        f"overhead: {overhead * 100:+.1f}% ({store_us - raw_us:.1f} us/query); "
        f"target <= 20%: {verdict}"
    )

    split = min((stages(store, queries) for _ in range(3)), key=lambda s: s["View.search"])
    faiss_alone = split.pop("FAISS alone")
    print(
        "store stages (us/query): "
        + ", ".join(f"{k} {v:.1f}" for k, v in split.items())
        + f"; sum {sum(split.values()):.1f}"
    )
    print(
        f"  Snapshot.search (the FAISS call) alone: {faiss_alone:.1f}, so View.search's own "
        f"work is {split['View.search'] - faiss_alone:.1f}; all but FAISS: "
        f"{sum(split.values()) - faiss_alone:.1f} us/query"
    )

    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        for vector in queries:
            spyglass(vector)
        profiler.disable()
        stats = pstats.Stats(profiler)
        stats.sort_stats("tottime").print_stats(25)
        stats.sort_stats("cumulative").print_stats(30)
    store.close()


if __name__ == "__main__":
    main()
