"""The on-disk HNSW snapshot of a collection, shared by every worker through mmap.

A snapshot is four files written once and never changed: ``hnsw-<seq>.faiss``
(a FAISS ``IndexHNSWFlat`` over the collection's vectors as of change ``seq``),
``labels-<seq>.npy`` (the item label of each position in that index, ascending),
and ``records-<seq>.bin`` with ``offsets-<seq>.npy`` (each position's
``[id, text, payload]`` as JSON), so that a search answers without a database
read. All are opened memory-mapped (``IO_FLAG_MMAP_IFC``, ``np.load(mmap_mode=
"r")``, ``mmap``), so N worker processes share one copy in the page cache
instead of holding N.
"""

from __future__ import annotations

import mmap
import os
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


KINDS = ("hnsw", "labels", "records", "offsets")
Record = tuple[str, str | None, dict[str, Any]]


def file_names(seq: int) -> tuple[str, str, str, str]:
    return f"hnsw-{seq}.faiss", f"labels-{seq}.npy", f"records-{seq}.bin", f"offsets-{seq}.npy"


@dataclass(frozen=True)
class Snapshot:
    """An opened snapshot: the HNSW index and the label of each of its positions."""

    seq: int
    index: Any  # faiss.IndexHNSWFlat, memory-mapped
    labels: np.ndarray
    size: int
    records: bytes | mmap.mmap
    offsets: np.ndarray
    _params: dict[int, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def open(cls, directory: Path, seq: int) -> Snapshot:
        index_name, labels_name, records_name, offsets_name = file_names(seq)
        index = faiss.read_index(str(directory / index_name), faiss.IO_FLAG_MMAP_IFC)
        labels = np.load(directory / labels_name, mmap_mode="r").view(np.ndarray)
        offsets = np.load(directory / offsets_name, mmap_mode="r").view(np.ndarray)
        records: bytes | mmap.mmap = b""
        with open(directory / records_name, "rb") as handle:
            if os.fstat(handle.fileno()).st_size:
                records = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        return cls(
            seq=seq,
            index=index,
            labels=labels,
            size=int(index.ntotal),
            records=records,
            offsets=offsets,
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
        """The indexed vectors at ``positions`` (normalised for cosine)."""
        storage = faiss.downcast_index(self.index.storage)
        if positions.size == 0:
            return np.empty((0, self.index.d), dtype=np.float32)
        return np.asarray(storage.reconstruct_batch(positions), dtype=np.float32)

    def search(
        self, queries: np.ndarray, k: int, ef: int, selector: faiss.IDSelector | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """HNSW search; returns (distances, positions) with -1 where nothing was found."""
        params = self._params.get(max(ef, k)) if selector is None else None
        if params is None:
            params = faiss.SearchParametersHNSW()  # type: ignore[attr-defined]
            params.efSearch = max(ef, k)
            if selector is None:
                params = self._params.setdefault(params.efSearch, params)  # read-only once made
            else:
                params.sel = selector
        distances, positions = self.index.search(queries, k, params=params)
        return distances, positions

    def search_exact(
        self, queries: np.ndarray, k: int, selector: faiss.IDSelector | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Brute-force search over the snapshot's stored vectors."""
        storage = faiss.downcast_index(self.index.storage)
        params = faiss.SearchParameters()
        if selector is not None:
            params.sel = selector
        distances, positions = storage.search(queries, k, params=params)
        return distances, positions


def build(
    directory: Path,
    seq: int,
    metric: str,
    params: IndexParams,
    labels: np.ndarray,
    vectors: np.ndarray,
    records: list[bytes],
) -> None:
    """Write the snapshot of ``vectors`` (already normalised for cosine) as of ``seq``.

    ``records[i]`` is the JSON ``[id, text, payload]`` of ``labels[i]``.

    Files are written under temporary names, flushed to disk and renamed, so a
    reader sees either no snapshot or a whole one.
    """
    directory.mkdir(parents=True, exist_ok=True)
    dim = vectors.shape[1]
    index = faiss.IndexHNSWFlat(dim, params.m, faiss_metric(metric))
    index.hnsw.efConstruction = params.ef_construction
    if len(vectors):
        index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    names = file_names(seq)
    temps = [directory / f".{name}.tmp" for name in names]
    faiss.write_index(index, str(temps[0]))
    offsets = np.zeros(len(records) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(r) for r in records])
    with open(temps[1], "wb") as handle:
        np.save(handle, np.ascontiguousarray(labels, dtype=np.int64))
    with open(temps[2], "wb") as handle:
        handle.write(b"".join(records))
    with open(temps[3], "wb") as handle:
        np.save(handle, offsets)
    for path in temps:
        with open(path, "rb") as handle:
            os.fsync(handle.fileno())
    for temp, name in reversed(list(zip(temps, names, strict=True))):
        os.replace(temp, directory / name)
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def prune(directory: Path, keep: set[int]) -> None:
    """Remove snapshot files whose seq is not in ``keep``.

    Workers that still map a removed file keep reading it: unlinking a mapped
    file frees it only when the last mapping goes.
    """
    if not directory.is_dir():
        return
    for path in directory.iterdir():
        stem, _, _ = path.name.partition(".")
        kind, _, seq = stem.partition("-")
        if kind in KINDS and seq.isdigit() and int(seq) not in keep:
            path.unlink(missing_ok=True)
