"""Recall@10 of the embedded store's HNSW path against exact ground truth, and its queries/s.

The store is opened with ``exact_below=0`` so every search goes through the HNSW
snapshot that ``optimize`` builds (nothing in the exact tail). Each query is one
``store.search`` call with one ``Query`` (k=10), single-threaded (FAISS/OpenMP
limited to one thread). Recall@10 = |returned top 10 ∩ true top 10| / 10,
averaged over the queries, at a new collection's default ef_search (48) and at a
sweep of ef values.

Data sets:

* ``fashion``: /work/shared/data/ann_fashion_mnist900 (800 base, 100 queries,
  784-d Fashion-MNIST pixels). Both of its ground truths are used: ``angular``
  (1 - cos) with a ``cosine`` collection and ``euclidean`` with an ``l2`` one.
* ``text100k``: benchmarks/out/text100k (make_text_set.py): 100,000 MiniLM
  sentence embeddings, 1,000 queries, exact top-100 by inner product (= cosine:
  the vectors are unit length) against the ``cosine`` collection ``bench`` of
  benchmarks/out/store-text100k (built once and shared with the other scripts).

    .venv/bin/python benchmarks/recall.py --data fashion
    .venv/bin/python benchmarks/recall.py --data text100k
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import faiss
import numpy as np
from _common import (
    OUT,
    SHARED_DATA,
    TEXT_STORE,
    CpuWatch,
    build_text_store,
    code_version,
    load_text_set,
    recall_at,
    wait_for_idle,
)

from spyglass.stores.base import CollectionSpec, IndexParams, Item, Metric, Query
from spyglass.stores.embedded import EmbeddedStore

FASHION = SHARED_DATA / "ann_fashion_mnist900"
EF_SWEEP = (16, 32, 40, 48, 56, 64, 128, 256)
DEFAULT_EF = IndexParams().ef_search  # a new collection's; the store may hold an older one
K = 10


def fashion_store(metric: Metric, base: np.ndarray) -> Path:
    """A fresh data dir under benchmarks/out with the 800 Fashion-MNIST vectors."""
    data_dir = OUT / f"store-fashion-{metric}"
    if data_dir.exists():
        shutil.rmtree(data_dir)
    store = EmbeddedStore(data_dir, exact_below=0)
    try:
        store.create_collection(CollectionSpec(name="fashion", dim=base.shape[1], metric=metric))
        store.upsert("fashion", [Item(id=str(i), vector=row) for i, row in enumerate(base)])
        store.optimize("fashion")
    finally:
        store.close()
    return data_dir


def run_searches(
    store: EmbeddedStore, name: str, queries: np.ndarray, ef: int | None
) -> tuple[list[list[int]], float]:
    """The hit positions of each query (ids parsed back to base rows) and queries/s."""
    found: list[list[int]] = []
    started = time.perf_counter()
    for vector in queries:
        hits = store.search(name, [Query(vector=vector, k=K, ef=ef)])[0]
        found.append([int(hit.id.lstrip("b")) for hit in hits])
    return found, len(queries) / (time.perf_counter() - started)


def report(
    title: str, store: EmbeddedStore, name: str, queries: np.ndarray, truth: np.ndarray
) -> dict[int | None, float]:
    """Print recall@10 and queries/s at the default ef and over the sweep."""
    run_searches(store, name, queries, None)  # warm up: the view, the mmapped pages
    print(f"\n{title}: {len(queries)} queries, k={K}")
    print(f"{'ef':>12} {'recall@10':>10} {'queries/s':>10} {'us/query':>9}")
    results: dict[int | None, float] = {}
    for ef in (None, *EF_SWEEP):
        with CpuWatch() as cpu:
            found, qps = run_searches(store, name, queries, DEFAULT_EF if ef is None else ef)
        if cpu.others > 0.2:
            print(f"  ({cpu}: queries/s below is skewed)")
        recall = recall_at(found, truth, K)
        results[ef] = recall
        label = f"default({DEFAULT_EF})" if ef is None else str(ef)
        print(f"{label:>12} {recall:10.4f} {qps:10.0f} {1e6 / qps:9.0f}")
    verdict = "PASS" if results[None] >= 0.95 else "FAIL"
    print(f"target recall@10 >= 0.95 at the default ef: {results[None]:.4f} {verdict}")
    return results


def fashion() -> None:
    base = np.load(FASHION / "base.npy").astype(np.float32)
    query = np.load(FASHION / "query.npy").astype(np.float32)
    print(f"fashion: base {base.shape}, query {query.shape} (uint8 pixels as float32)")
    for metric, truth_name in (("cosine", "angular"), ("l2", "euclidean")):
        truth = np.load(FASHION / f"gt_{truth_name}_neighbors.npy").astype(np.int64)
        data_dir = fashion_store(metric, base)  # type: ignore[arg-type]
        store = EmbeddedStore(data_dir, exact_below=0)
        try:
            report(f"fashion, metric {metric} vs gt_{truth_name}", store, "fashion", query, truth)
        finally:
            store.close()


def text100k(queries: int) -> None:
    data = load_text_set(texts=False)
    data_dir = build_text_store()
    print(f"text100k: base {data.base.shape}, query {data.query.shape}, store {data_dir}")
    store = EmbeddedStore(TEXT_STORE, exact_below=0)
    try:
        count = store.get_collection("bench").count
        print(f"collection bench: {count} items, metric cosine, ef_search default {DEFAULT_EF}")
        report(
            "text100k, metric cosine vs exact inner-product top-100",
            store,
            "bench",
            data.query[:queries],
            data.gt[:queries],
        )
    finally:
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=["fashion", "text100k"], default="fashion")
    parser.add_argument("--queries", type=int, default=1000, help="text100k queries to use")
    args = parser.parse_args()
    print(f"code under test: {code_version()}", flush=True)
    wait_for_idle()
    faiss.omp_set_num_threads(1)
    if args.data == "fashion":
        fashion()
    else:
        text100k(args.queries)


if __name__ == "__main__":
    main()
