"""The store contract every backend implements, and the values it trades in.

A store keeps collections of items (id, vector, optional text, JSON payload)
and answers k-nearest-neighbour searches over them. The engine above it has
already validated every input (dimension, finite values, limits, filter
syntax), so a store checks only what needs its own state: whether a
collection or item exists, and whether a collection may be created.

Conventions every store keeps, so that results are the same on every backend:

- ``score`` is "higher is more similar": cosine similarity for ``cosine``, the
  inner product for ``ip``, and minus the Euclidean distance for ``l2``.
- Hits are ordered by descending score. An exact search orders equal scores by
  ascending item id (byte order), also at the ``k``-th place: of items tied
  there, the smaller ids are the ones returned, so exact search over duplicate
  vectors gives the same ids in the same order on every store. The embedded
  store counts scores within a relative 1e-5 as equal, since its kernels (FAISS,
  NumPy) may round the same vector's score differently. An approximate (HNSW)
  search promises no order among equal scores: checking for them would cost
  every search more than the order is worth.
- A search with a filter returns ``min(k, number of matching items)`` hits.
- ``version`` is an integer that grows with every write to a collection and is
  never reused, even by a collection deleted and created again under its name.
- A write returns only when it is durable.

Errors: ``NotFound`` for an unknown collection or item, ``Conflict`` when a
collection exists with different settings, ``Unavailable`` when the backend
cannot be reached. Nothing else for conditions a client can cause.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from spyglass.errors import InvalidRequest
from spyglass.filters import Filter

Metric = Literal["cosine", "ip", "l2"]
METRICS: tuple[str, ...] = ("cosine", "ip", "l2")
Quantization = Literal["none", "half", "sq8", "pq", "binary"]
QUANTIZATIONS: tuple[str, ...] = ("none", "half", "sq8", "pq", "binary")


@dataclass(frozen=True)
class IndexParams:
    """HNSW parameters (graph degree, build-time and default search-time beam width) and
    how the index stores vectors.

    ``quantization`` other than ``none`` keeps a smaller code of each vector in the
    index; the exact vectors stay on disk, and with ``rescore`` the best
    ``oversample`` x k candidates are scored again with them, so scores are exact
    and recall comes back to within a little of the unquantized index's."""

    m: int = 16
    ef_construction: int = 200
    ef_search: int = 48
    quantization: Quantization = "none"
    rescore: bool = True
    recall_target: float = 0.95
    """Each build raises the default beam width past ``ef_search`` until a sample of the
    index's own vectors finds this share of their 10 nearest (0: never raised)."""
    oversample: float = 0.0
    """0: the quantization's own (:data:`OVERSAMPLE`)."""

    def __post_init__(self) -> None:
        if not self.oversample:
            object.__setattr__(self, "oversample", OVERSAMPLE[self.quantization])

    @property
    def rescored(self) -> float:
        """Candidates per hit a search re-scores with the exact vectors (0: none)."""
        return self.oversample if self.quantization != "none" and self.rescore else 0.0


OVERSAMPLE: dict[str, float] = {"none": 1.0, "half": 2.0, "sq8": 3.0, "pq": 32.0, "binary": 16.0}
"""Candidates per result re-scored by default: what recall@10 >= 0.95 took (docs/benchmarks.md)."""


@dataclass(frozen=True)
class CollectionSpec:
    """What a client chose when it created a collection."""

    name: str
    dim: int
    metric: Metric = "cosine"
    encoder: str = "none"
    index: IndexParams = field(default_factory=IndexParams)
    options: dict[str, Any] = field(default_factory=dict)
    """Encoder-specific settings of this collection (a face collection's ``threshold``)."""


@dataclass(frozen=True)
class CollectionInfo:
    """A collection's settings and its current state."""

    spec: CollectionSpec
    count: int
    version: int
    created_at: float


@dataclass(frozen=True)
class IndexState:
    """How far a collection's index has come, for a user who asks why searches slowed
    or memory grew: items in the index, items searched exactly until the next build,
    items gone that the index still holds, and the builds."""

    indexed: int
    tail: int
    deleted: int
    building: bool
    build_started: float | None = None
    build_added: int = 0
    build_to_add: int = 0
    last_build_s: float | None = None
    last_build_extended: bool | None = None
    last_build_at: float | None = None
    ef_search: int | None = None
    recall_estimate: float | None = None


@dataclass(frozen=True)
class StoredFile:
    """The file an item was made from (its image), kept to be shown again."""

    data: bytes
    media_type: str


@dataclass(frozen=True)
class Item:
    """One stored item. ``vector`` is float32 of the collection's dimension.

    ``file`` is written with the item and replaced or removed with it; reading an
    item back never returns it (see :meth:`Store.get_file`).
    """

    id: str
    vector: np.ndarray
    text: str | None = None
    payload: dict[str, Any] = field(default_factory=dict)
    file: StoredFile | None = None


@dataclass(slots=True)
class Hit:
    """One search result."""

    id: str
    score: float
    payload: dict[str, Any]
    text: str | None = None
    vector: np.ndarray | None = None
    """Only when the query asked for vectors: the vector as indexed (unit length for cosine)."""
    colors: list[tuple[str, float]] | None = None
    """Set by the engine when a search asks for them: the item's dominant colors as
    ``("#rrggbb", weight)`` (color collections); stores never set it."""


@dataclass(frozen=True)
class Query:
    """One search: a float32 vector of the collection's dimension and its options."""

    vector: np.ndarray
    k: int = 10
    filter: Filter | None = None
    ef: int | None = None
    exact: bool = False
    vectors: bool = False
    """Return each hit's vector too (for a rerank by a finer measure than the index's)."""


@dataclass(frozen=True)
class KeywordQuery:
    """One full-text search: items whose text holds any of ``terms`` (see
    :mod:`spyglass.keywords`), best ranked first."""

    terms: tuple[str, ...]
    k: int = 10
    filter: Filter | None = None


class Store:
    """A backend holding collections. Methods are safe to call from several threads."""

    local: bool = False
    """Its searches read only this process's memory and local files (no network, no
    lock another process holds for long), so a short one may run on the event loop."""

    quantizations: tuple[str, ...] = ("none",)
    """The ``index.quantization`` values it can build; ``create_collection`` refuses others."""

    def check_quantization(self, spec: CollectionSpec) -> None:
        """Refuse a quantization this store cannot build, naming those it can."""
        quantization = spec.index.quantization
        if quantization not in self.quantizations:
            raise InvalidRequest(
                f"index.quantization {quantization!r} is not available on this store; it"
                f" offers {', '.join(self.quantizations)}",
                field="index.quantization",
            )

    def create_collection(self, spec: CollectionSpec) -> tuple[CollectionInfo, bool]:
        """Create the collection; return its info and whether it was new.

        Creating a collection that exists with the same spec is not an error
        (``False`` is returned); with a different spec it is ``Conflict``.
        """
        raise NotImplementedError

    def get_collection(self, name: str) -> CollectionInfo:
        """The collection's info, or ``NotFound``."""
        raise NotImplementedError

    def list_collections(self) -> list[CollectionInfo]:
        """Every collection, ordered by name."""
        raise NotImplementedError

    def delete_collection(self, name: str) -> None:
        """Remove the collection and all its items, or raise ``NotFound``."""
        raise NotImplementedError

    def upsert(self, name: str, items: Sequence[Item]) -> int:
        """Insert or replace items by id, durably; return the new version.

        If the same id appears twice in ``items`` the last one wins.
        """
        raise NotImplementedError

    def get_item(self, name: str, item_id: str) -> Item:
        """The stored item, or ``NotFound``."""
        raise NotImplementedError

    def get_file(self, name: str, item_id: str) -> StoredFile:
        """The file stored with the item, or ``NotFound`` (no such item, or it has none)."""
        raise NotImplementedError

    def scan(self, name: str, after: str | None = None, limit: int = 1000) -> list[Item]:
        """Up to ``limit`` items with ids after ``after`` (all when None), in id order.

        Paging with the last id of each page visits every item once (``spyglass migrate``).
        """
        raise NotImplementedError

    def delete_items(self, name: str, ids: Sequence[str]) -> tuple[int, int]:
        """Delete items by id; return (how many existed, new version). Unknown ids are ignored."""
        raise NotImplementedError

    def search(
        self, name: str, queries: Sequence[Query], *, min_version: int = 0
    ) -> list[list[Hit]]:
        """The top hits of each query, in order. See the module docstring for the rules.

        The hits reflect at least ``min_version`` of the collection: every write that
        returned that version or less (read-your-writes, where reads may lag writes).
        """
        raise NotImplementedError

    def keyword_search(
        self, name: str, queries: Sequence[KeywordQuery], *, min_version: int = 0
    ) -> list[list[Hit]]:
        """The best items of each query by full-text relevance, in order.

        Only items with a ``text`` take part. Each hit's ``score`` is the backend's own
        relevance (higher is better; BM25 in the embedded store, ``ts_rank`` in
        PostgreSQL), so only the order is comparable across stores. Filters and
        ``min_version`` mean what they mean for :meth:`search`; a query with no terms,
        or matching nothing, has no hits.
        """
        raise NotImplementedError

    def warm(self, name: str) -> None:
        """Load what searching ``name`` needs (its index), so the first search is fast."""

    def loaded(self) -> list[str]:
        """Collections whose index this process holds in memory (for ``/status``)."""
        return []

    def bulk(self) -> AbstractContextManager[None]:
        """A hint that many writes follow: the store may defer housekeeping to the end
        of the block. Every write is still durable when it returns."""
        return nullcontext()

    def index_state(self, name: str) -> IndexState | None:
        """The state of ``name``'s index; None where the database keeps it (PostgreSQL
        indexes each write as it commits)."""
        self.get_collection(name)  # NotFound for a name that is not there
        return None

    def optimize(self, name: str) -> None:
        """Bring the collection's ANN index up to date now (after a bulk load)."""
        raise NotImplementedError

    def check(self) -> None:
        """Raise ``Unavailable`` unless the store can serve reads and writes."""
        raise NotImplementedError

    def close(self) -> None:
        """Release connections, files and threads."""
        raise NotImplementedError
