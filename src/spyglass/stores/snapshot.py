"""The on-disk HNSW snapshot of a collection, shared by every worker through mmap.

A snapshot is two files written once and never changed: ``hnsw-<seq>.faiss``
(a FAISS ``IndexHNSWFlat`` over the collection's vectors as of change ``seq``)
and ``labels-<seq>.npy`` (the item label of each position in that index,
ascending). Both are opened memory-mapped (``IO_FLAG_MMAP_IFC`` and
``np.load(mmap_mode="r")``), so N worker processes share one copy in the page
cache instead of holding N.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from spyglass.stores.base import IndexParams

FAISS_METRIC = {"cosine": faiss.METRIC_INNER_PRODUCT, "ip": faiss.METRIC_INNER_PRODUCT}


def faiss_metric(metric: str) -> int:
    return FAISS_METRIC.get(metric, faiss.METRIC_L2)


def to_scores(metric: str, distances: np.ndarray) -> np.ndarray:
    """FAISS distances to Spyglass scores (higher is more similar)."""
    if metric == "l2":
        return np.asarray(-np.sqrt(np.maximum(distances, 0.0)))
    return distances


def file_names(seq: int) -> tuple[str, str]:
    return f"hnsw-{seq}.faiss", f"labels-{seq}.npy"


@dataclass(frozen=True)
class Snapshot:
    """An opened snapshot: the HNSW index and the label of each of its positions."""

    seq: int
    index: Any  # faiss.IndexHNSWFlat, memory-mapped
    labels: np.ndarray

    @property
    def size(self) -> int:
        return int(self.index.ntotal)

    @classmethod
    def open(cls, directory: Path, seq: int) -> Snapshot:
        index_name, labels_name = file_names(seq)
        index = faiss.read_index(str(directory / index_name), faiss.IO_FLAG_MMAP_IFC)
        labels = np.load(directory / labels_name, mmap_mode="r")
        return cls(seq=seq, index=index, labels=labels)

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
        params: Any = faiss.SearchParametersHNSW()  # type: ignore[attr-defined]
        params.efSearch = max(ef, k)
        if selector is not None:
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
) -> None:
    """Write the snapshot of ``vectors`` (already normalised for cosine) as of ``seq``.

    Files are written under temporary names, flushed to disk and renamed, so a
    reader sees either no snapshot or a whole one.
    """
    directory.mkdir(parents=True, exist_ok=True)
    dim = vectors.shape[1]
    index = faiss.IndexHNSWFlat(dim, params.m, faiss_metric(metric))
    index.hnsw.efConstruction = params.ef_construction
    if len(vectors):
        index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    index_name, labels_name = file_names(seq)
    tmp_index = directory / f".{index_name}.tmp"
    tmp_labels = directory / f".{labels_name}.tmp"
    faiss.write_index(index, str(tmp_index))
    with open(tmp_labels, "wb") as handle:
        np.save(handle, np.ascontiguousarray(labels, dtype=np.int64))
    for path in (tmp_index, tmp_labels):
        with open(path, "rb") as handle:
            os.fsync(handle.fileno())
    os.replace(tmp_labels, directory / labels_name)
    os.replace(tmp_index, directory / index_name)
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
        if kind in {"hnsw", "labels"} and seq.isdigit() and int(seq) not in keep:
            path.unlink(missing_ok=True)
