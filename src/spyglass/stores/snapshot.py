"""The on-disk HNSW snapshot of a collection, shared by every worker through mmap.

A snapshot is five files written once and never changed: ``hnsw-<seq>.faiss``
(a FAISS ``IndexHNSWFlat`` over the collection's vectors as of change ``seq``),
``labels-<seq>.npy`` (the item label of each position in that index, ascending),
``records-<seq>.bin`` with ``offsets-<seq>.npy`` (each position's
``[id, text, payload]`` as JSON), so that a search answers without a database
read, and ``dead-<seq>.npy``: the positions whose items were deleted or replaced
before ``seq`` but are still in the graph (a snapshot extended from the previous
one keeps them until a full build compacts them away). A quantized index (see
:func:`new_index`) holds codes, not vectors: its exact vectors are a sixth file,
``vectors-<seq>.f32``, read only to re-score candidates. All are opened
memory-mapped (``IO_FLAG_MMAP_IFC``, ``np.load(mmap_mode="r")``, ``mmap``), so N
worker processes share one copy in the page cache instead of holding N.
"""

from __future__ import annotations

import contextlib
import math
import mmap
import os
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import orjson

from spyglass.stores.base import IndexParams

FAISS_METRIC = {"cosine": faiss.METRIC_INNER_PRODUCT, "ip": faiss.METRIC_INNER_PRODUCT}


def faiss_metric(metric: str) -> int:
    return FAISS_METRIC.get(metric, faiss.METRIC_L2)


def to_scores(metric: str, distances: np.ndarray) -> np.ndarray:
    """FAISS distances to Spyglass scores (higher is more similar)."""
    if metric == "l2":
        return np.asarray(-np.sqrt(np.maximum(distances, 0.0)))
    return distances


KINDS = ("hnsw", "labels", "records", "offsets", "dead", "vectors")
Record = tuple[str, str | None, dict[str, Any]]
Page = tuple[np.ndarray, np.ndarray, list[bytes]]
"""Labels (ascending), vectors (as the index holds them) and JSON records of some items."""
NO_POSITIONS = np.empty(0, dtype=np.int64)
MAX_CANDIDATES = 4096
"""At most this many candidates are re-scored per query, whatever k x oversample."""
EXACT_CHUNK = 65_536
"""Exact vectors encoded to ``sq8`` at a time (a ``pq`` extension)."""
EXACT_SCORES = 1 << 22
"""Scores a brute-force search over exact vectors holds at a time (16 MB): rows per step
are this divided by the queries."""


def file_names(seq: int) -> tuple[str, str, str, str, str]:
    return (
        f"hnsw-{seq}.faiss",
        f"labels-{seq}.npy",
        f"records-{seq}.bin",
        f"offsets-{seq}.npy",
        f"dead-{seq}.npy",
    )


def vectors_name(seq: int) -> str:
    """The exact vectors of a quantized snapshot: float32 rows, no header."""
    return f"vectors-{seq}.f32"


PQ_SUBVECTOR = 8
"""At most this many dimensions per product-quantizer byte: 32x smaller than float32."""
TRAINED = ("sq8", "pq")
"""Quantizations that learn their codes from a sample before the first add."""
TRAIN_SIZE = 32_768
"""Vectors a quantizer learns from: enough for 256 centroids per sub-space, 50 MB at 384-d."""


def new_index(dim: int, metric: str, params: IndexParams) -> Any:
    """An empty HNSW index storing vectors as ``params.quantization`` says: ``none``
    as float32, ``half`` as float16 (2x smaller), ``sq8`` one byte per dimension (4x).
    A ``pq`` index is built as ``sq8`` (see :func:`product_codes`). ``sq8`` learns its
    codes from a sample before the first add."""
    kind, m, fm = params.quantization, params.m, faiss_metric(metric)
    index: Any
    if kind == "none":
        index = faiss.IndexHNSWFlat(dim, m, fm)
    elif kind in ("half", "sq8", "pq"):
        qtype = faiss.ScalarQuantizer.QT_fp16 if kind == "half" else faiss.ScalarQuantizer.QT_8bit
        index = faiss.IndexHNSWSQ(dim, qtype, m, fm)  # type: ignore[arg-type]
    else:
        raise ValueError(f"no index for quantization {kind!r}")
    index.hnsw.efConstruction = params.ef_construction
    return index


def product_codes(dim: int, metric: str, sample: np.ndarray) -> Any:
    """An empty product quantizer learnt from ``sample``: one byte per up to 8 dimensions.

    A graph linked by product-code distances finds about half the true neighbours
    that one linked by 8-bit codes does (0.51 vs 0.97 recall@10 after re-scoring,
    100k x 384). So a ``pq`` index links its graph with ``sq8`` codes and then keeps
    only the product codes for searching: the graph of ``sq8``, the memory of ``pq``.
    """
    sub = max(s for s in range(1, PQ_SUBVECTOR + 1) if dim % s == 0)
    # k-means wants 39 points per centroid: a small collection gets fewer centroids
    bits = max(1, min(8, int(np.log2(max(len(sample), 78) / 39))))
    codes = faiss.IndexPQ(dim, dim // sub, bits, faiss_metric(metric))
    if len(sample):
        codes.train(sample)
    return codes


@dataclass(frozen=True)
class Snapshot:
    """An opened snapshot: the HNSW index and the label of each of its positions."""

    seq: int
    index: Any  # a FAISS HNSW index (flat, SQ or PQ storage), memory-mapped
    labels: np.ndarray
    size: int
    records: bytes | mmap.mmap
    offsets: np.ndarray
    dead: np.ndarray = field(default_factory=lambda: NO_POSITIONS)
    """Positions of items gone before ``seq`` that the graph still holds (ascending)."""
    floats: np.ndarray | None = None
    """The exact vectors, by position, when the index holds only codes (memory-mapped)."""
    _params: dict[int, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def open(cls, directory: Path, seq: int) -> Snapshot:
        index_name, labels_name, records_name, offsets_name, dead_name = file_names(seq)
        index = faiss.read_index(str(directory / index_name), faiss.IO_FLAG_MMAP_IFC)
        labels = np.load(directory / labels_name, mmap_mode="r").view(np.ndarray)
        offsets = np.load(directory / offsets_name, mmap_mode="r").view(np.ndarray)
        dead = np.load(directory / dead_name) if (directory / dead_name).exists() else NO_POSITIONS
        records: bytes | mmap.mmap = b""
        with open(directory / records_name, "rb") as handle:
            if os.fstat(handle.fileno()).st_size:
                records = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        size = int(index.ntotal)
        floats = None
        if not isinstance(index, faiss.IndexHNSWFlat):
            floats = np.empty((0, index.d), dtype=np.float32)
            if size:
                floats = np.memmap(
                    directory / vectors_name(seq), np.float32, "r", shape=(size, index.d)
                ).view(np.ndarray)
        return cls(
            seq=seq,
            index=index,
            labels=labels,
            size=size,
            records=records,
            offsets=offsets,
            dead=dead,
            floats=floats,
        )

    def records_at(self, positions: np.ndarray) -> list[Record]:
        """The id, text and payload of the items at ``positions`` (all in range), in order."""
        offsets = self.offsets
        records = self.records
        loads = orjson.loads
        return [
            tuple(loads(records[offsets[position] : offsets[position + 1]]))
            for position in positions.tolist()
        ]

    def positions(self, labels: np.ndarray) -> np.ndarray:
        """Positions in this snapshot of those ``labels`` it holds."""
        if self.size == 0 or labels.size == 0:
            return np.empty(0, dtype=np.int64)
        where = np.searchsorted(self.labels, labels)
        where = np.minimum(where, self.size - 1)
        found: np.ndarray = where[self.labels[where] == labels].astype(np.int64)
        return found

    def vectors(self, positions: np.ndarray) -> np.ndarray:
        """The exact vectors at ``positions`` (normalised for cosine)."""
        if positions.size == 0:
            return np.empty((0, self.index.d), dtype=np.float32)
        if self.floats is not None:
            return np.array(self.floats[positions], dtype=np.float32)
        storage = faiss.downcast_index(self.index.storage)
        return np.asarray(storage.reconstruct_batch(positions), dtype=np.float32)

    def search(
        self,
        queries: np.ndarray,
        k: int,
        ef: int,
        selector: faiss.IDSelector | None,
        kept: dict[int, Any] | None = None,
        oversample: float = 0.0,
    ) -> tuple[np.ndarray, np.ndarray]:
        """HNSW search; returns (distances, positions) with -1 where nothing was found.

        With ``oversample`` (a quantized index only), ``oversample`` x ``k`` candidates
        are found and the best ``k`` of them by their exact vectors returned, with
        exact distances.

        The search parameters are made once per beam width and kept (read-only once
        made): here when no ``selector`` is given, in ``kept`` for a ``selector`` that
        lives as long as ``kept`` does."""
        wide = k
        if self.floats is not None and oversample > 0:
            wide = max(k, min(math.ceil(k * oversample), self.size, MAX_CANDIDATES))
        kept = self._params if selector is None else kept
        params = None if kept is None else kept.get(max(ef, wide))
        if params is None:
            params = faiss.SearchParametersHNSW()  # type: ignore[attr-defined]
            params.efSearch = max(ef, wide)
            if selector is not None:
                params.sel = selector
            if kept is not None:
                params = kept.setdefault(params.efSearch, params)
        distances, positions = self.index.search(queries, wide, params=params)
        if self.floats is not None and oversample > 0:
            return self._rescore(queries, positions, k)
        return distances, positions

    def _rescore(
        self, queries: np.ndarray, candidates: np.ndarray, k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """The best ``k`` of each row of ``candidates`` by exact distance, FAISS-style."""
        assert self.floats is not None
        found = candidates >= 0
        vectors = self.floats[np.where(found, candidates, 0)]  # (queries, wide, dim)
        if self.index.metric_type == faiss.METRIC_INNER_PRODUCT:
            exact = np.einsum("qwd,qd->qw", vectors, queries)
            exact[~found] = -np.inf
            order = np.argsort(-exact, axis=1, kind="stable")[:, :k]
        else:
            exact = (
                np.einsum("qwd,qwd->qw", vectors, vectors)
                - 2.0 * np.einsum("qwd,qd->qw", vectors, queries)
                + np.einsum("qd,qd->q", queries, queries)[:, None]
            )
            exact[~found] = np.inf
            order = np.argsort(exact, axis=1, kind="stable")[:, :k]
        distances = np.take_along_axis(exact, order, axis=1).astype(np.float32)
        positions = np.take_along_axis(np.where(found, candidates, -1), order, axis=1)
        return distances, positions

    def search_exact(
        self,
        queries: np.ndarray,
        k: int,
        selector: faiss.IDSelector | None,
        live: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Brute-force search over the snapshot's exact vectors: those ``selector``
        selects, which for a quantized index ``live`` (flags by position, None: all)
        says again."""
        if self.floats is None:
            storage = faiss.downcast_index(self.index.storage)
            params = faiss.SearchParameters()
            if selector is not None:
                params.sel = selector
            distances, positions = storage.search(queries, k, params=params)
            return distances, positions
        ip = self.index.metric_type == faiss.METRIC_INNER_PRODUCT
        worst = -np.inf if ip else np.inf
        best_d = np.full((len(queries), k), worst, dtype=np.float32)
        best_p = np.full((len(queries), k), -1, dtype=np.int64)
        step = max(1024, EXACT_SCORES // len(queries))
        for start in range(0, self.size, step):
            block = np.asarray(self.floats[start : start + step])
            if ip:
                d = queries @ block.T
            else:
                d = (
                    (queries * queries).sum(axis=1)[:, None]
                    - 2.0 * queries @ block.T
                    + (block * block).sum(axis=1)[None, :]
                )
            if live is not None:
                d[:, ~live[start : start + len(block)]] = worst
            d = np.concatenate([best_d, d.astype(np.float32)], axis=1)
            p = np.concatenate(
                [
                    best_p,
                    np.broadcast_to(np.arange(start, start + len(block)), (len(d), len(block))),
                ],
                axis=1,
            )
            keep = (
                np.argpartition(-d if ip else d, k - 1, axis=1)[:, :k] if d.shape[1] > k else None
            )
            if keep is not None:
                d, p = np.take_along_axis(d, keep, axis=1), np.take_along_axis(p, keep, axis=1)
            best_d, best_p = d, p
        order = np.argsort(-best_d if ip else best_d, axis=1, kind="stable")
        best_d = np.take_along_axis(best_d, order, axis=1)
        best_p = np.take_along_axis(best_p, order, axis=1)
        best_p[~np.isfinite(best_d)] = -1
        return best_d, best_p


TUNE_QUERIES = 200
EF_LADDER = (16, 24, 32, 40, 48, 64, 80, 96, 128, 160, 192, 256, 320, 384, 448, 512)
"""Beam widths a build tries; past 512 a search costs several milliseconds for little more."""
TUNE_MARGIN = 0.01
"""The estimate must pass the target by this much: a collection's own vectors are easier
queries than new ones (held-out recall came out 0.004-0.025 below the estimate)."""
PLATEAU = 0.002
"""A wider beam that adds less recall than this is not worth its cost: the codes, not the
walk, are what hold recall back (a pq index with too few candidates re-scored)."""


def tune(snapshot: Snapshot, floor: int, oversample: float, target: float) -> tuple[int, float]:
    """The smallest beam width, ``floor`` or more, at which the snapshot finds
    ``target`` (plus :data:`TUNE_MARGIN`) of the 10 true nearest neighbours, and the
    recall@10 it found there.

    Measured on the snapshot itself: 200 of its vectors drawn at random ask for their
    nearest others, so that the default beam width follows the collection as it grows
    (48 finds 0.97 at 100k sentence embeddings and 0.77 at 1M). Items gone since the
    snapshot are counted like the others: the walk is the same."""
    k = 10
    if snapshot.size <= k:
        return floor, 1.0
    rng = np.random.default_rng(snapshot.seq)
    picks = np.sort(rng.choice(snapshot.size, min(TUNE_QUERIES, snapshot.size), replace=False))
    queries = np.ascontiguousarray(snapshot.vectors(picks))
    _, truth = snapshot.search_exact(queries, k + 1, None)
    wanted = [set(row[row != pick][:k].tolist()) for row, pick in zip(truth, picks, strict=True)]
    # a beam narrower than the candidates a quantized index re-scores is that wide anyway
    wide = k + 1
    if snapshot.floats is not None and oversample > 0:
        wide = max(wide, min(math.ceil((k + 1) * oversample), MAX_CANDIDATES))
    start = max(floor, wide)
    best_ef, best = start, -1.0
    for ef in sorted({start, *(e for e in EF_LADDER if e > start)}):
        _, found = snapshot.search(queries, k + 1, ef, None, None, oversample)
        hits = sum(
            len(want & set(row[row != pick][:k].tolist()))
            for row, pick, want in zip(found, picks, wanted, strict=True)
        )
        recall = hits / sum(len(want) for want in wanted)
        if recall < best + PLATEAU:
            break  # no better for the wider beam: keep the narrower one
        best_ef, best = ef, recall
        if recall >= target + TUNE_MARGIN:
            break
    return best_ef, best


def build(
    directory: Path,
    seq: int,
    metric: str,
    params: IndexParams,
    dim: int,
    pages: Iterable[Page],
    *,
    base: int | None = None,
    dead: np.ndarray = NO_POSITIONS,
    expected: int = 0,
    train: Callable[[], np.ndarray] | None = None,
) -> int:
    """Write the snapshot as of ``seq``: the items of ``pages`` added, in order, to an
    empty index, or to the snapshot ``base`` of the same directory (extended: its
    graph, labels, records and codes are kept and the new items appended after them).
    ``dead`` are the positions of the result whose items are gone; ``expected``, how
    many items the result will hold, if known; ``train``, a sample of the vectors for
    a quantizer to learn from (called for a new quantized index only, and let go once
    learnt). Returns how many it holds.

    Memory is the index being built plus one page: records and exact vectors go
    straight to their files. Files are written under temporary names, flushed to
    disk and renamed, so a reader sees either no snapshot or a whole one.
    """
    directory.mkdir(parents=True, exist_ok=True)
    names = [*file_names(seq)]
    quantized = params.quantization != "none"
    if quantized:
        names.append(vectors_name(seq))
    temps = [directory / f".{name}.tmp" for name in names]
    labels: list[np.ndarray] = []
    offsets: list[np.ndarray] = [np.zeros(1, dtype=np.int64)]
    index: Any
    codes: Any = None  # a pq index's product codes, while its graph is linked by sq8
    mapped: Any = None
    if base is None:
        sample = train() if train is not None and params.quantization in TRAINED else None
        index = new_index(dim, metric, params)
        if sample is not None and len(sample):
            index.train(sample)
        if params.quantization == "pq":
            codes = product_codes(
                dim, metric, np.empty((0, dim), np.float32) if sample is None else sample
            )
        del sample
        for temp in temps[2::3]:  # records, and the exact vectors
            temp.write_bytes(b"")
    else:
        old = file_names(base)
        index = faiss.read_index(str(directory / old[0]), faiss.IO_FLAG_MMAP_IFC)
        labels.append(np.load(directory / old[1]))
        offsets = [np.load(directory / old[3])]
        shutil.copyfile(directory / old[2], temps[2])
        if quantized:
            shutil.copyfile(directory / vectors_name(base), temps[5])
        if params.quantization == "pq":
            mapped = index  # owns the codes: kept until they are written
            codes = faiss.downcast_index(mapped.storage)
            index = _linker(mapped, directory / vectors_name(base), metric, params)
    _room(index, expected)
    if codes is not None:
        _room_codes(codes, expected)
    floats = open(temps[5], "ab") if quantized else None  # noqa: SIM115 - closed below
    with open(temps[2], "ab") as records, floats or contextlib.nullcontext():
        for page_labels, vectors, page_records in pages:
            if not len(page_labels):
                continue
            vectors = np.ascontiguousarray(vectors, dtype=np.float32)
            index.add(vectors)
            if codes is not None:
                codes.add(vectors)
            if floats is not None:
                floats.write(vectors.tobytes())
            labels.append(np.asarray(page_labels, dtype=np.int64))
            ends = np.cumsum([len(r) for r in page_records], dtype=np.int64)
            offsets.append(offsets[-1][-1] + ends)
            records.write(b"".join(page_records))
    size = int(index.ntotal)
    if codes is not None:
        _write_with_codes(index, codes, temps[0])
    else:
        faiss.write_index(index, str(temps[0]))
    del index, codes, mapped
    all_labels = np.concatenate(labels) if labels else NO_POSITIONS
    assert len(all_labels) == size, "labels and index disagree"
    assert (np.diff(all_labels) > 0).all(), "labels must ascend: positions() searches them"
    for temp, array in ((temps[1], all_labels), (temps[3], np.concatenate(offsets))):
        with open(temp, "wb") as handle:
            np.save(handle, array)
    with open(temps[4], "wb") as handle:
        np.save(handle, np.unique(np.asarray(dead, dtype=np.int64)))
    for path in temps:
        with open(path, "rb") as handle:
            os.fsync(handle.fileno())
    # the index file last: a snapshot is there once its index is (Snapshot.open)
    for temp, name in reversed(list(zip(temps, names, strict=True))):
        os.replace(temp, directory / name)
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return size


def _linker(index: Any, floats: Path, metric: str, params: IndexParams) -> Any:
    """The sq8 index that links new items into the graph of the pq index ``index``:
    its graph, with 8-bit codes of its items made again from their exact vectors."""
    size, dim = int(index.ntotal), index.d
    vectors = np.memmap(floats, np.float32, "r", shape=(size, dim)) if size else None
    linker = new_index(dim, metric, params)
    if vectors is not None:
        rows = np.sort(np.random.default_rng(size).choice(size, min(size, TRAIN_SIZE), False))
        linker.train(np.asarray(vectors[rows]))
        storage = faiss.downcast_index(linker.storage)
        _room_codes(storage, size)
        for start in range(0, size, EXACT_CHUNK):
            storage.add(np.ascontiguousarray(vectors[start : start + EXACT_CHUNK]))
        linker.hnsw = index.hnsw  # a copy, in memory this process owns
        linker.ntotal = size
    del vectors
    return linker


def _write_with_codes(linker: Any, codes: Any, path: Path) -> None:
    """Write the pq index made of ``linker``'s graph and the product ``codes``."""
    pq = codes.pq
    make: Any = faiss.IndexHNSWPQ
    index = make(linker.d, pq.M, linker.hnsw.nb_neighbors(0) // 2, pq.nbits, linker.metric_type)
    own = index.storage
    index.hnsw = linker.hnsw  # a copy of the graph (the linker's is freed with it)
    index.storage, index.ntotal, index.is_trained = codes, codes.ntotal, codes.is_trained
    try:
        faiss.write_index(index, str(path))
    finally:
        index.storage = own  # so that each index frees only what it owns


def _room_codes(storage: Any, items: int) -> None:
    """Give a flat-codes index room for ``items`` codes, once (see :func:`_room`)."""
    _grow(storage.codes, faiss.UInt8Vector, items * storage.code_size)


def _grow(array: Any, make: Any, wanted: int) -> None:
    """Reallocate the FAISS vector ``array`` once to hold ``wanted`` elements, owned."""
    now = array.size()
    if array.is_owned and wanted <= now:
        return
    grown = make()
    grown.resize(max(wanted, now))
    if now:
        faiss.rev_swig_ptr(grown.data(), now)[:] = faiss.rev_swig_ptr(array.data(), now)
    grown.resize(now)  # std::vector: shrinking keeps the capacity
    array.owned_data.swap(grown)
    array.is_owned = True
    array.resize(now)  # points the vector at what it now owns


def _room(index: Any, items: int) -> None:
    """Give ``index``'s two big arrays (vectors, graph links) room for ``items``, once.

    Grown an add at a time, each would be copied into one twice its size, so that
    a build would briefly need two to three times the index's memory. Here each is
    allocated at its final size and the items already there copied in: from the
    previous snapshot's file, which ``index`` maps rather than holds, so memory is
    the new index and no more."""
    storage: Any = faiss.downcast_index(index.storage)
    level0 = index.hnsw.nb_neighbors(0)
    _room_codes(storage, items)
    # level 0 for every item, plus ~1/M of them a level higher, and so on
    _grow(index.hnsw.neighbors, faiss.Int32Vector, int(items * level0 * 1.1))


def prune(directory: Path, keep: set[int]) -> None:
    """Remove snapshot files whose seq is not in ``keep``, with the temporary files a
    build killed midway left.

    Workers that still map a removed file keep reading it: unlinking a mapped
    file frees it only when the last mapping goes.
    """
    if not directory.is_dir():
        return
    for path in directory.iterdir():
        stem, _, _ = path.name.removeprefix(".").partition(".")
        kind, _, seq = stem.partition("-")
        if kind in KINDS and seq.isdigit() and int(seq) not in keep:
            path.unlink(missing_ok=True)
