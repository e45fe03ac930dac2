"""The on-disk HNSW snapshot of a collection, shared by every worker through mmap.

A snapshot is five files written once and never changed: ``hnsw-<seq>.faiss``
(a FAISS ``IndexHNSWFlat`` over the collection's vectors as of change ``seq``),
``labels-<seq>.npy`` (the item label of each position in that index, ascending),
``records-<seq>.bin`` with ``offsets-<seq>.npy`` (each position's
``[id, text, payload]`` as JSON), so that a search answers without a database
read, and ``dead-<seq>.npy``: the positions whose items were deleted or replaced
before ``seq`` but are still in the graph (a snapshot extended from the previous
one keeps them until a full build compacts them away). All are opened
memory-mapped (``IO_FLAG_MMAP_IFC``, ``np.load(mmap_mode="r")``, ``mmap``), so N
worker processes share one copy in the page cache instead of holding N.
"""

from __future__ import annotations

import mmap
import os
import shutil
from collections.abc import Iterable
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


KINDS = ("hnsw", "labels", "records", "offsets", "dead")
Record = tuple[str, str | None, dict[str, Any]]
Page = tuple[np.ndarray, np.ndarray, list[bytes]]
"""Labels (ascending), vectors (as the index holds them) and JSON records of some items."""
NO_POSITIONS = np.empty(0, dtype=np.int64)


def file_names(seq: int) -> tuple[str, str, str, str, str]:
    return (
        f"hnsw-{seq}.faiss",
        f"labels-{seq}.npy",
        f"records-{seq}.bin",
        f"offsets-{seq}.npy",
        f"dead-{seq}.npy",
    )


@dataclass(frozen=True)
class Snapshot:
    """An opened snapshot: the HNSW index and the label of each of its positions."""

    seq: int
    index: Any  # faiss.IndexHNSWFlat, memory-mapped
    labels: np.ndarray
    size: int
    records: bytes | mmap.mmap
    offsets: np.ndarray
    dead: np.ndarray = field(default_factory=lambda: NO_POSITIONS)
    """Positions of items gone before ``seq`` that the graph still holds (ascending)."""
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
        return cls(
            seq=seq,
            index=index,
            labels=labels,
            size=int(index.ntotal),
            records=records,
            offsets=offsets,
            dead=dead,
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
        self,
        queries: np.ndarray,
        k: int,
        ef: int,
        selector: faiss.IDSelector | None,
        kept: dict[int, Any] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """HNSW search; returns (distances, positions) with -1 where nothing was found.

        The search parameters are made once per beam width and kept (read-only once
        made): here when no ``selector`` is given, in ``kept`` for a ``selector`` that
        lives as long as ``kept`` does."""
        kept = self._params if selector is None else kept
        params = None if kept is None else kept.get(max(ef, k))
        if params is None:
            params = faiss.SearchParametersHNSW()  # type: ignore[attr-defined]
            params.efSearch = max(ef, k)
            if selector is not None:
                params.sel = selector
            if kept is not None:
                params = kept.setdefault(params.efSearch, params)
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
    dim: int,
    pages: Iterable[Page],
    *,
    base: int | None = None,
    dead: np.ndarray = NO_POSITIONS,
    expected: int = 0,
) -> int:
    """Write the snapshot as of ``seq``: the items of ``pages`` added, in order, to an
    empty index, or to the snapshot ``base`` of the same directory (extended: its
    graph, labels and records are kept and the new items appended after them).
    ``dead`` are the positions of the result whose items are gone; ``expected``, how
    many items the result will hold, if known. Returns how many it holds.

    Memory is the index being built plus one page: records go straight to their
    file. Files are written under temporary names, flushed to disk and renamed, so
    a reader sees either no snapshot or a whole one.
    """
    directory.mkdir(parents=True, exist_ok=True)
    names = file_names(seq)
    temps = [directory / f".{name}.tmp" for name in names]
    labels: list[np.ndarray] = []
    offsets: list[np.ndarray] = [np.zeros(1, dtype=np.int64)]
    index: Any
    if base is None:
        index = faiss.IndexHNSWFlat(dim, params.m, faiss_metric(metric))
        index.hnsw.efConstruction = params.ef_construction
        records = open(temps[2], "wb")  # noqa: SIM115 - closed below, after every page
    else:
        old = file_names(base)
        index = faiss.read_index(str(directory / old[0]), faiss.IO_FLAG_MMAP_IFC)
        labels.append(np.load(directory / old[1]))
        offsets = [np.load(directory / old[3])]
        shutil.copyfile(directory / old[2], temps[2])
        records = open(temps[2], "ab")  # noqa: SIM115
    _room(index, expected)
    with records:
        for page_labels, vectors, page_records in pages:
            if not len(page_labels):
                continue
            index.add(np.ascontiguousarray(vectors, dtype=np.float32))
            labels.append(np.asarray(page_labels, dtype=np.int64))
            ends = np.cumsum([len(r) for r in page_records], dtype=np.int64)
            offsets.append(offsets[-1][-1] + ends)
            records.write(b"".join(page_records))
    faiss.write_index(index, str(temps[0]))
    size = int(index.ntotal)
    del index
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
    for temp, name in reversed(list(zip(temps, names, strict=True))):
        os.replace(temp, directory / name)
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return size


def _room(index: Any, items: int) -> None:
    """Give ``index``'s two big arrays (vectors, graph links) room for ``items``, once.

    Grown an add at a time, each would be copied into one twice its size, so that
    a build would briefly need two to three times the index's memory. Here each is
    allocated at its final size and the items already there copied in: from the
    previous snapshot's file, which ``index`` maps rather than holds, so memory is
    the new index and no more."""
    storage: Any = faiss.downcast_index(index.storage)
    level0 = index.hnsw.nb_neighbors(0)
    for array, make, wanted in (
        (storage.codes, faiss.UInt8Vector, items * storage.code_size),
        # level 0 for every item, plus ~1/M of them a level higher, and so on
        (index.hnsw.neighbors, faiss.Int32Vector, int(items * level0 * 1.1)),
    ):
        now = array.size()
        if array.is_owned and wanted <= now:
            continue
        grown = make()
        grown.resize(max(wanted, now))
        if now:
            faiss.rev_swig_ptr(grown.data(), now)[:] = faiss.rev_swig_ptr(array.data(), now)
        grown.resize(now)  # std::vector: shrinking keeps the capacity
        array.owned_data.swap(grown)
        array.is_owned = True
        array.resize(now)  # points the vector at what it now owns


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
