"""The PostgreSQL store at a million items, with and without quantization (issue 18).

Data: the peer harness's generator at N items (sentence-embedding-shaped, clustered,
unit-length 384-d vectors; exact top-10 ground truth for 1,000 queries), the same set
``incremental_build.py`` loads into the embedded store. Starts a real PostgreSQL +
pgvector (tests/pgcluster.py) and, for each ``--quantization`` (default ``none`` and
``half``): loads the N vectors into a new collection (binary COPY in ``bulk()``),
builds its HNSW index (m 16, ef_construction 200, ``--build-mb`` of
maintenance_work_mem, PostgreSQL's parallel maintenance workers), and searches the
1,000 queries one at a time from one thread over an ef sweep: recall@10, p50 and
queries/s. With ``--embedded DIR`` (a data directory holding collection ``c`` of the
same items, as ``incremental_build.py`` leaves it) the embedded store answers the
same queries in the same run, at its tuned default and over the same sweep.

    .venv/bin/python benchmarks/scale_postgres.py --n 1020000 \\
        --embedded benchmarks/out/incremental-1020000-none        # ~1 h on 2 cores
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from _common import REPO

sys.path.insert(0, str(REPO))

from tests.pgcluster import cluster  # noqa: E402

from spyglass.stores.base import CollectionSpec, IndexParams, Item, Query, Store  # noqa: E402
from spyglass.stores.embedded import EmbeddedStore  # noqa: E402
from spyglass.stores.postgres import PostgresStore, open_connection  # noqa: E402

K = 10
EF_SWEEP = (40, 64, 100, 200, 400)


def sweep(
    label: str,
    store: Store,
    name: str,
    queries: np.ndarray,
    truth: np.ndarray,
    efs: list[int | None],
) -> None:
    for ef in efs:
        for q in queries[:50]:  # warm the caches
            store.search(name, [Query(vector=q, k=K, ef=ef)])
        found, took = 0, []
        for q, want in zip(queries, truth, strict=True):
            started = time.perf_counter()
            hits = store.search(name, [Query(vector=q, k=K, ef=ef)])[0]
            took.append(time.perf_counter() - started)
            found += len({int(h.id) for h in hits} & set(want[:K].tolist()))
        print(
            f"| {label} | {ef or 'default'} | {found / truth[:, :K].size:.3f}"
            f" | {statistics.median(took) * 1e3:.2f} | {len(took) / sum(took):,.0f} |",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_020_000)
    parser.add_argument("--quantization", nargs="+", default=["none", "half"])
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--build-mb", type=int, default=4096)
    parser.add_argument("--ef-construction", type=int, default=IndexParams().ef_construction)
    parser.add_argument("--embedded", type=Path, default=None)
    parser.add_argument(
        "--limit", type=int, default=None, help="load only this many (a smoke test: recall is off)"
    )
    args = parser.parse_args()
    data = Path(f"/tmp/peer_bench/data-{args.n if args.n != 100_000 else '100k'}")
    base = np.load(data / "base.npy", mmap_mode="r")[: args.limit]
    queries = np.load(data / "queries.npy")
    truth = np.load(data / "gt_ids.npy")
    print(f"{len(base):,} x {base.shape[1]}; {len(queries):,} queries; k {K}", flush=True)
    results = []
    print("| store | ef | recall@10 | p50 ms | queries/s (one thread) |")
    print("|---|---|---|---|---|")
    if args.embedded is not None:
        embedded = EmbeddedStore(args.embedded, snapshot_tail=10**9)
        state = embedded.index_state("c")
        print(f"| embedded: tuned ef {state.ef_search} | | | | |", flush=True)
        sweep("embedded none", embedded, "c", queries, truth, [None, *EF_SWEEP])
        embedded.close()
    with cluster() as pg:
        url, _ = pg.database()
        store = PostgresStore(url, exact_below=0, build_memory_mb=args.build_mb)
        raw = open_connection(url)
        for quantization in args.quantization:  # each searched before the next is loaded
            name = f"bench-{quantization}"
            index = IndexParams(quantization=quantization, ef_construction=args.ef_construction)
            store.create_collection(CollectionSpec(name=name, dim=base.shape[1], index=index))
            started = time.perf_counter()
            with store.bulk():
                for at in range(0, len(base), args.batch):
                    rows = np.asarray(base[at : at + args.batch], dtype=np.float32)
                    store.upsert(name, [Item(id=str(at + i), vector=v) for i, v in enumerate(rows)])
            load_s = time.perf_counter() - started
            started = time.perf_counter()
            store.optimize(name)
            build_s = time.perf_counter() - started
            size = raw.execute(
                "SELECT pg_relation_size(c.oid) FROM pg_class c WHERE c.relname ="
                " (SELECT 'spyglass_items_' || cid || '_hnsw' FROM spyglass_collections"
                " WHERE name = %s)",
                (name,),
            ).fetchone()
            index_mib = (size[0] if size else 0) / 2**20
            results.append((quantization, load_s, build_s, index_mib))
            print(
                f"| postgres {quantization}: load {load_s:,.0f} s, HNSW build {build_s:,.0f} s,"
                f" index {index_mib:,.0f} MiB | | | | |",
                flush=True,
            )
            sweep(f"postgres {quantization}", store, name, queries, truth, list(EF_SWEEP))
        raw.close()
        store.close()
    print("\n| postgres | load s | HNSW build s | index MiB |")
    print("|---|---|---|---|")
    for quantization, load_s, build_s, index_mib in results:
        print(f"| {quantization} | {load_s:,.0f} | {build_s:,.0f} | {index_mib:,.0f} |")


if __name__ == "__main__":
    main()
