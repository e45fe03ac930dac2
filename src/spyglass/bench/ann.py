"""``spyglass bench ann``: recall@k and queries/s of a store's ANN index over an ef_search sweep.

The data set's base vectors go into a collection of their own (ids are the row
numbers) through the :class:`~spyglass.stores.base.Store` contract, in a fresh
temporary embedded store unless another is given; ``upsert`` in a bulk block
then ``optimize`` is the build time. The store is searched with ``exact_below=0``
so even a small set goes through the HNSW index, never brute force.

For each ef the queries run first one at a time on one thread (queries/s,
p50/p99 latency and recall, against exact ground truth), then on a pool of one
caller per core (queries/s). Raw FAISS ``IndexHNSWFlat`` with the same M,
ef_construction and metric (unit vectors and inner product for cosine) runs the
same queries on one thread, as the reference of what the index alone can do: the
gap is what the store adds (its Python, the per-call view check, the id lookup).

Every measurement repeats the query set until ``seconds`` have passed, and the
report is filled as results come in, so a Ctrl-C still leaves what was measured.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import faiss
import numpy as np

from spyglass import __version__
from spyglass.bench.datasets import AnnData, unit
from spyglass.bench.machine import machine_info
from spyglass.errors import ConfigError, NotFound
from spyglass.settings import Settings
from spyglass.stores import is_postgres, open_store
from spyglass.stores.base import CollectionSpec, IndexParams, Item, Query, Store

FORMAT = 1
"""Version of the JSON report; bumped when a key changes meaning or goes away."""
COLLECTION_PREFIX = "bench_ann_"
BATCH = 1000
Search = Callable[[int], list[int]]
"""Searches query ``i`` and returns the base rows found, best first."""


class Progress(Protocol):
    """What the run reports as it goes (the CLI draws a progress bar)."""

    def start(self, what: str, total: int | None) -> None:
        """A new phase of ``total`` steps (None: unknown)."""

    def advance(self, steps: int = 1) -> None:
        """``steps`` more of the current phase are done."""


class Quiet:
    """A :class:`Progress` that shows nothing."""

    def start(self, what: str, total: int | None) -> None:
        pass

    def advance(self, steps: int = 1) -> None:
        pass


@dataclass(frozen=True)
class Row:
    """The store at one ef: recall@k, queries/s on one thread and on all cores, latency."""

    ef: int
    recall: float
    qps_1: float
    qps_all: float
    p50_ms: float
    p99_ms: float


@dataclass(frozen=True)
class FaissRow:
    """Raw FAISS HNSW at one ef, one thread."""

    ef: int
    recall: float
    qps_1: float


@dataclass
class AnnReport:
    """Everything ``bench ann`` measured; filled in as it goes, so partial on Ctrl-C."""

    data: AnnData
    k: int
    store: str
    index: IndexParams
    created_at: str = field(
        default_factory=lambda: datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    )
    machine: dict[str, Any] = field(default_factory=machine_info)
    build_s: float | None = None
    index_bytes: int | None = None
    rss_mb: float | None = None
    rows: list[Row] = field(default_factory=list)
    faiss: list[FaissRow] = field(default_factory=list)
    partial: bool = False
    """Stopped by Ctrl-C: the rows are those measured before it."""

    def as_dict(self) -> dict[str, Any]:
        """The JSON report (format :data:`FORMAT`)."""
        data = self.data
        return {
            "kind": "ann",
            "format": FORMAT,
            "spyglass": __version__,
            "created_at": self.created_at,
            "machine": self.machine,
            "data": {
                "path": str(data.path),
                "base": len(data.base),
                "queries": len(data.queries),
                "dim": data.dim,
                "metric": data.metric,
                "k": self.k,
                "ground_truth": data.truth,
            },
            "store": self.store,
            "index": {"m": self.index.m, "ef_construction": self.index.ef_construction},
            "build_s": _round(self.build_s, 3),
            "index_bytes": self.index_bytes,
            "rss_mb": self.rss_mb,
            "rows": [_rounded(asdict(row)) for row in self.rows],
            "faiss": [_rounded(asdict(row)) for row in self.faiss],
            "partial": self.partial,
        }

    def write(self, path: Path) -> Path:
        """Write the JSON report to ``path`` (its folder is made if need be)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.as_dict(), indent=2) + "\n")
        return path


def run(
    report: AnnReport,
    location: str | None,
    settings: Settings,
    efs: Sequence[int],
    *,
    seconds: float = 1.0,
    threads: int | None = None,
    progress: Progress | None = None,
) -> None:
    """Build the collection, sweep ``efs`` on the store, then on raw FAISS; fill ``report``.

    ``location`` is a directory or a postgresql:// URL (None: a temporary embedded
    store, removed at the end); the collection made there is dropped at the end.
    """
    progress = progress or Quiet()
    data = report.data
    if data.neighbors is None:
        raise ConfigError("the data set has no ground truth: call with_truth(k) first")
    if report.k > len(data.base):
        raise ConfigError(f"k is {report.k} but the data set has {len(data.base)} base vectors")
    with BenchStore(location, settings) as where:
        report.store = where.kind
        store = where.open()
        report.build_s = build(store, where.name, data, report.index, progress)
        progress.start("measure the index size", None)
        report.index_bytes = where.index_bytes()
        try:
            progress.start(f"sweep ef on the {where.kind} store", len(efs))
            for row in sweep(
                where.open(), where.name, data, report.k, efs, seconds, threads, progress
            ):
                report.rows.append(row)
        finally:
            report.rss_mb = rss_mb()
    for faiss_row in faiss_reference(data, report.index, report.k, efs, seconds, progress):
        report.faiss.append(faiss_row)


def build(store: Store, name: str, data: AnnData, index: IndexParams, progress: Progress) -> float:
    """Create ``name`` and load the base into it (bulk upserts, then optimize); seconds taken."""
    spec = CollectionSpec(name=name, dim=data.dim, metric=data.metric, index=index)
    store.create_collection(spec)
    progress.start("upsert the base vectors", len(data.base))
    started = time.perf_counter()
    with store.bulk():
        for start in range(0, len(data.base), BATCH):
            stop = min(start + BATCH, len(data.base))
            store.upsert(name, [Item(id=str(i), vector=data.base[i]) for i in range(start, stop)])
            progress.advance(stop - start)
    progress.start("optimize: build the HNSW index", None)
    store.optimize(name)
    return time.perf_counter() - started


def sweep(
    store: Store,
    name: str,
    data: AnnData,
    k: int,
    efs: Sequence[int],
    seconds: float,
    threads: int | None,
    progress: Progress,
) -> Iterator[Row]:
    """One :class:`Row` per ef, each when measured."""
    assert data.neighbors is not None
    threads = threads or os.cpu_count() or 1
    store.warm(name)
    for i, ef in enumerate(efs):
        search = _store_search(store, name, data.queries, k, ef)
        if i == 0:
            time_single(search, len(data.queries), 0.0)  # warm up: pages, caches
        with one_omp_thread():
            found, latencies, qps_1 = time_single(search, len(data.queries), seconds)
        qps_all = time_parallel(search, len(data.queries), seconds, threads)
        p50, p99 = np.percentile(np.asarray(latencies) * 1000.0, [50, 99])
        yield Row(ef, recall_at(found, data.neighbors, k), qps_1, qps_all, float(p50), float(p99))
        progress.advance()


def faiss_reference(
    data: AnnData,
    index_params: IndexParams,
    k: int,
    efs: Sequence[int],
    seconds: float,
    progress: Progress,
) -> Iterator[FaissRow]:
    """Raw ``faiss.IndexHNSWFlat`` on the same data and parameters, one thread, per ef."""
    assert data.neighbors is not None
    progress.start("FAISS reference: build the HNSW index", None)
    metric = faiss.METRIC_L2 if data.metric == "l2" else faiss.METRIC_INNER_PRODUCT
    index = faiss.IndexHNSWFlat(data.dim, index_params.m, metric)
    index.hnsw.efConstruction = index_params.ef_construction
    cosine = data.metric == "cosine"
    index.add(unit(data.base) if cosine else data.base)
    queries = unit(data.queries) if cosine else data.queries
    progress.start("FAISS reference: sweep ef", len(efs))
    for ef in efs:
        search = _faiss_search(index, queries, k, ef)
        with one_omp_thread():
            found, _, qps = time_single(search, len(queries), seconds)
        yield FaissRow(ef, recall_at(found, data.neighbors, k), qps)
        progress.advance()


# timing


def time_single(
    search: Search, n: int, seconds: float
) -> tuple[list[list[int]], list[float], float]:
    """Queries 0..n-1 in turn, repeated until ``seconds`` have passed (at least once).

    Returns the first pass's results, every call's latency (s) and queries/s.
    """
    found: list[list[int]] = []
    latencies: list[float] = []
    passes = 0
    started = time.perf_counter()
    while passes == 0 or time.perf_counter() - started < seconds:
        for i in range(n):
            before = time.perf_counter()
            rows = search(i)
            latencies.append(time.perf_counter() - before)
            if passes == 0:
                found.append(rows)
        passes += 1
    return found, latencies, passes * n / (time.perf_counter() - started)


def time_parallel(search: Search, n: int, seconds: float, threads: int) -> float:
    """Queries/s of ``threads`` callers sharing the queries, each one query per call.

    Caller ``w`` runs queries ``w, w + threads, ...`` in passes until ``seconds``
    have passed (at least one pass each). Ctrl-C stops the callers after their pass.
    """
    threads = max(1, min(threads, n))
    stop = threading.Event()
    start = threading.Barrier(threads + 1)
    done = [0] * threads
    failed: list[BaseException] = []
    deadline = 0.0  # set just before the callers start

    def caller(w: int) -> None:
        mine = range(w, n, threads)
        start.wait()
        try:
            while True:
                for i in mine:
                    search(i)
                done[w] += len(mine)
                if stop.is_set() or time.perf_counter() >= deadline:
                    return
        except BaseException as exc:  # re-raised in the calling thread
            failed.append(exc)

    workers = [
        threading.Thread(target=caller, args=(w,), name=f"bench-{w}", daemon=True)
        for w in range(threads)
    ]
    for worker in workers:
        worker.start()
    try:
        deadline = time.perf_counter() + seconds
        start.wait()
        started = time.perf_counter()
        for worker in workers:
            worker.join()
    finally:
        stop.set()
        start.abort()  # frees callers still waiting, if Ctrl-C came first
        for worker in workers:
            worker.join()
    if failed:
        raise failed[0]
    return sum(done) / (time.perf_counter() - started)


@contextmanager
def one_omp_thread() -> Iterator[None]:
    """FAISS on one OpenMP thread in this thread for the block (single-threaded figures)."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def recall_at(found: Sequence[Sequence[int]], truth: np.ndarray, k: int) -> float:
    """Mean over queries of |found[:k] ∩ truth[:k]| / k (-1 padding never counts)."""
    hits = 0
    for rows, expected in zip(found, truth, strict=True):
        hits += len(set(rows[:k]) & (set(expected[:k].tolist()) - {-1}))
    return hits / (k * len(found)) if len(found) else 0.0


def _store_search(store: Store, name: str, vectors: np.ndarray, k: int, ef: int) -> Search:
    queries = [Query(vector=vector, k=k, ef=ef) for vector in vectors]

    def search(i: int) -> list[int]:
        return [int(hit.id) for hit in store.search(name, [queries[i]])[0]]

    return search


def _faiss_search(index: Any, queries: np.ndarray, k: int, ef: int) -> Search:
    params = faiss.SearchParametersHNSW()  # type: ignore[attr-defined]
    params.efSearch = max(ef, k)  # as the store does

    def search(i: int) -> list[int]:
        found: list[int] = index.search(queries[i : i + 1], k, params=params)[1][0].tolist()
        return found

    return search


# the store under test


class BenchStore:
    """Where the collection is built: a given store, or a temporary embedded one.

    In a given store the collection gets a name of its own (``bench_ann_<hex>``) and
    is dropped on exit; a temporary store's directory is removed on exit.
    """

    def __init__(self, location: str | None, settings: Settings) -> None:
        self.temporary = location is None
        self.location = location or tempfile.mkdtemp(prefix="spyglass-bench-")
        self.kind = "postgresql" if is_postgres(self.location) else "embedded"
        # every search through the index, however small the collection
        self.settings = settings.model_copy(update={"exact_below": 0})
        self.name = COLLECTION_PREFIX + secrets.token_hex(4)
        self.store: Store | None = None
        self._bytes_before = 0 if self.kind == "postgresql" else dir_bytes(Path(self.location))

    def __enter__(self) -> BenchStore:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if not self.temporary and self.store is not None:
                try:
                    self.store.delete_collection(self.name)
                except NotFound:
                    pass
        finally:
            self.close()
            if self.temporary:
                shutil.rmtree(self.location, ignore_errors=True)

    def open(self) -> Store:
        """The store, opened once and kept until :meth:`close`."""
        if self.store is None:
            self.store = open_store(self.settings, self.location)
        return self.store

    def close(self) -> None:
        if self.store is not None:
            store, self.store = self.store, None
            store.close()

    def index_bytes(self) -> int | None:
        """Disk the collection takes: for PostgreSQL ``pg_total_relation_size`` of its
        table (indexes included), else how much the data directory grew, measured
        with the store closed so that SQLite's write-ahead log is folded in."""
        if self.kind == "postgresql":
            return postgres_bytes(self.location, self.name)
        self.close()
        try:
            return dir_bytes(Path(self.location)) - self._bytes_before
        finally:
            self.open()


def dir_bytes(path: Path) -> int:
    """Bytes of the files under ``path``, without SQLite's -wal/-shm files (0 if missing)."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            if name.endswith(("-wal", "-shm")):
                continue
            try:
                total += (Path(root) / name).stat().st_size
            except OSError:  # removed meanwhile
                pass
    return total


def postgres_bytes(url: str, name: str) -> int | None:
    """``pg_total_relation_size`` of collection ``name``'s table, or None if unreadable."""
    import psycopg

    from spyglass.stores.postgres import open_connection

    try:
        with open_connection(url) as conn:
            row = conn.execute(
                "SELECT pg_total_relation_size(('spyglass_items_' || cid)::regclass)"
                " FROM spyglass_collections WHERE name = %s",
                (name,),
            ).fetchone()
    except psycopg.Error:
        return None
    return None if row is None or row[0] is None else int(row[0])


def rss_mb() -> float | None:
    """This process's resident set size (VmRSS in /proc/self/status), in MiB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except (OSError, ValueError, IndexError):
        pass
    return None


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def _rounded(row: dict[str, Any]) -> dict[str, Any]:
    digits = {"recall": 4, "qps_1": 1, "qps_all": 1, "p50_ms": 4, "p99_ms": 4}
    return {
        key: round(value, digits[key]) if key in digits else value for key, value in row.items()
    }
