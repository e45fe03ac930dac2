"""One worker's searchable view of a collection: snapshot + tail - tombstones.

The snapshot holds the vectors as of change ``snapshot.seq``; the tail holds
every item written after it (searched exactly); ``dead`` holds the snapshot
positions of items deleted or replaced after it. A view is immutable: syncing
with the database makes a new view, so searches never take a lock.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any, NamedTuple

import faiss
import numpy as np

from spyglass.stores.snapshot import Record, Snapshot, to_scores

EMPTY_LABELS = np.empty(0, dtype=np.int64)


class Found(NamedTuple):
    """One query's hits, best first: labels, scores, and each hit's snapshot position
    (-1 for a hit from the tail), so its record is read without a label lookup."""

    labels: np.ndarray
    scores: np.ndarray
    positions: np.ndarray


NOTHING = Found(EMPTY_LABELS, np.empty(0, dtype=np.float32), EMPTY_LABELS)


@dataclass(frozen=True)
class TailChunk:
    labels: np.ndarray
    vectors: np.ndarray
    records: dict[int, Record]


@dataclass(frozen=True)
class View:
    """Everything one worker needs to search a collection at ``version``."""

    cid: int
    version: int
    indexed_gen: int
    dim: int
    metric: str
    ef_search: int
    oversample: float
    """Candidates per hit re-scored with exact vectors (a quantized snapshot; 0: none)."""
    snapshot: Snapshot | None
    dead: np.ndarray
    tail: tuple[TailChunk, ...]

    @cached_property
    def tail_size(self) -> int:
        return sum(len(chunk.labels) for chunk in self.tail)

    @property
    def snapshot_seq(self) -> int:
        return self.snapshot.seq if self.snapshot is not None else 0

    @cached_property
    def size(self) -> int:
        live_snapshot = (self.snapshot.size if self.snapshot else 0) - len(self.dead)
        return live_snapshot + self.tail_size

    @cached_property
    def _live(self) -> Any:
        """A FAISS selector of the snapshot's live positions (None: all are), made once
        per view: a snapshot extended many times can hold many dead positions."""
        if not self.dead.size:
            return None
        assert self.snapshot is not None
        return _bitmap(self.snapshot.size, self.dead, value=False)

    @cached_property
    def _live_params(self) -> dict[int, Any]:
        """HNSW search parameters with :attr:`_live`, by beam width."""
        return {}

    def _flags(self, allowed: np.ndarray | None) -> np.ndarray | None:
        """Which snapshot positions a search may return, as flags, for a brute-force
        search over a quantized snapshot's exact vectors (None: all, or not needed)."""
        snapshot = self.snapshot
        if snapshot is None or snapshot.floats is None:
            return None
        if allowed is None and not self.dead.size:
            return None
        flags = np.zeros(snapshot.size, dtype=bool)
        if allowed is None:
            flags[:] = True
        else:
            flags[snapshot.positions(allowed)] = True
        flags[self.dead] = False
        return flags

    def records_of(self, found: Found) -> list[Record]:
        """The id, text and payload of each hit of ``found``, in order."""
        positions = found.positions
        if self.snapshot is not None and (positions >= 0).all():
            return self.snapshot.records_at(positions)
        records = []
        for label, position in zip(found.labels.tolist(), positions.tolist(), strict=True):
            if position >= 0:
                assert self.snapshot is not None
                records.extend(self.snapshot.records_at(np.array([position])))
                continue
            for chunk in self.tail:
                record = chunk.records.get(label)
                if record is not None:
                    records.append(record)
                    break
            else:
                raise LookupError(f"label {label} is in no tail chunk")  # a bug, not input
        return records

    def vectors_of(self, labels: np.ndarray) -> np.ndarray:
        """The indexed vectors of ``labels``, all live in this view, in their order."""
        rows = np.empty((len(labels), self.dim), dtype=np.float32)
        missing = np.ones(len(labels), dtype=bool)
        for chunk in self.tail:
            where = np.searchsorted(chunk.labels, labels)
            where = np.minimum(where, len(chunk.labels) - 1)
            held = missing & (chunk.labels[where] == labels)
            rows[held] = chunk.vectors[where[held]]
            missing &= ~held
        if missing.any():
            assert self.snapshot is not None
            rows[missing] = self.snapshot.vectors(self.snapshot.positions(labels[missing]))
        return rows

    def advance(self, version: int, new: TailChunk, gone: np.ndarray) -> View:
        """The view after items ``new_labels`` were written and labels ``gone`` removed."""
        tail = list(self.tail)
        dead = self.dead
        if gone.size:
            tail = [_drop(chunk, gone) for chunk in tail]
            tail = [chunk for chunk in tail if len(chunk.labels)]
            if self.snapshot is not None:
                dead = np.union1d(dead, self.snapshot.positions(gone))
        if new.labels.size:
            tail.append(new)
        if len(tail) > 8:
            records = {}
            for chunk in tail:
                records.update(chunk.records)
            tail = [
                TailChunk(
                    np.concatenate([c.labels for c in tail]),
                    np.concatenate([c.vectors for c in tail]),
                    records,
                )
            ]
        return replace(self, version=version, dead=dead, tail=tuple(tail))

    def search(
        self,
        queries: np.ndarray,
        k: int,
        *,
        ef: int | None,
        allowed: np.ndarray | None,
        exact: bool,
    ) -> list[Found]:
        """The hits of each query, best first, at most ``k`` each.

        ``allowed`` restricts results to those labels (a filter's matches);
        ``exact`` forces brute force; it puts equal scores in ascending id order and
        widens until it holds every tie at the ``k``-th place. HNSW is
        used otherwise; when a filtered HNSW search comes back short of the matches
        it could have returned, the snapshot part is searched exactly, so a filter
        never under-fills.
        """
        if not exact:  # an approximate search promises no order among equal scores
            return self._search(queries, k, ef, allowed, False)
        settled = []
        for i, hits in enumerate(self._search(queries, k + 1, None, allowed, True)):
            fetched = k + 1
            # Until every near-tie of the k-th score is in hand, so the smaller ids win.
            while len(hits.labels) == fetched and _tied(hits.scores[k - 1], hits.scores[-1]):
                fetched *= 4
                hits = self._search(queries[i : i + 1], fetched, None, allowed, True)[0]
            settled.append(self._settle(queries[i], hits, k))
        return settled

    def _search(
        self, queries: np.ndarray, k: int, ef: int | None, allowed: np.ndarray | None, exact: bool
    ) -> list[Found]:
        has_snapshot = self.snapshot is not None and self.snapshot.size > 0
        if not has_snapshot:
            return self._search_tail(queries, k, allowed)
        found = self._search_snapshot(queries, k, ef, allowed, exact)
        if not self.tail:
            return found
        tail = self._search_tail(queries, k, allowed)
        return [_merge([found[i], tail[i]], k) for i in range(len(queries))]

    def _settle(self, query: np.ndarray, found: Found, k: int) -> Found:
        """The first ``k`` of ``found``, equal scores by ascending id.

        Near-ties are scored again in float64 from the stored vectors: duplicates
        then score alike whichever kernel found them, and ties are exact equality.
        """
        scores = found.scores
        if scores.size < 2 or not _tied(scores[:-1], scores[1:]).any():
            return Found(found.labels[:k], scores[:k], found.positions[:k])
        again = precise_scores(self.metric, self.vectors_of(found.labels), query)
        ids = [record[0] for record in self.records_of(found)]
        order = np.array(sorted(range(len(ids)), key=lambda j: (-again[j], ids[j]))[:k])
        return Found(found.labels[order], again[order], found.positions[order])

    def _search_tail(self, queries: np.ndarray, k: int, allowed: np.ndarray | None) -> list[Found]:
        chunks = self.tail
        if allowed is not None:
            chunks = tuple(_keep(chunk, allowed) for chunk in chunks)
        chunks = tuple(chunk for chunk in chunks if len(chunk.labels))
        if not chunks:
            return [NOTHING] * len(queries)
        labels = np.concatenate([c.labels for c in chunks])
        vectors = (
            chunks[0].vectors if len(chunks) == 1 else np.concatenate([c.vectors for c in chunks])
        )
        tail = np.full(len(labels), -1, dtype=np.int64)
        scores = exact_scores(self.metric, vectors, queries)
        return [_top(labels, row, k, tail) for row in scores]

    def _search_snapshot(
        self,
        queries: np.ndarray,
        k: int,
        ef: int | None,
        allowed: np.ndarray | None,
        exact: bool,
    ) -> list[Found]:
        snapshot = self.snapshot
        assert snapshot is not None
        kept: dict[int, Any] | None = None
        if allowed is not None:
            positions = np.setdiff1d(snapshot.positions(allowed), self.dead, assume_unique=True)
            if positions.size == 0:
                return [NOTHING] * len(queries)
            if exact or positions.size <= max(4 * k, 256):
                vectors = snapshot.vectors(positions)
                labels = snapshot.labels[positions]
                scores = exact_scores(self.metric, vectors, queries)
                return [_top(labels, row, k, positions) for row in scores]
            selector: Any = _bitmap(snapshot.size, positions)
            expected = min(k, int(positions.size))
        else:
            selector, kept = self._live, self._live_params
            expected = min(k, snapshot.size - int(self.dead.size))
        if exact:
            distances, found = snapshot.search_exact(queries, k, selector, self._flags(allowed))
        else:
            distances, found = snapshot.search(
                queries, k, ef or self.ef_search, selector, kept, self.oversample
            )
            # FAISS packs hits first and pads with -1: a row is short if hit `expected` is missing
            short = np.flatnonzero(found[:, expected - 1] < 0) if expected else EMPTY_LABELS
            if short.size:
                d2, f2 = snapshot.search_exact(queries[short], k, selector, self._flags(allowed))
                distances[short], found[short] = d2, f2
        results = []
        for row_d, row_p in zip(distances, found, strict=True):
            if row_p[-1] < 0:
                ok = row_p >= 0
                row_d, row_p = row_d[ok], row_p[ok]
            results.append(Found(snapshot.labels[row_p], to_scores(self.metric, row_d), row_p))
        return results


TIE = 1e-5
"""Scores this close (relative) are equal: FAISS and NumPy may round one vector's
score differently, so bitwise equality would not make duplicates tie."""


def _tied(better: Any, worse: Any) -> Any:
    """Whether ``worse`` is within float32 rounding of ``better`` (arrays or floats)."""
    return better - worse <= TIE * np.maximum(1.0, np.abs(better))


def precise_scores(metric: str, vectors: np.ndarray, query: np.ndarray) -> np.ndarray:
    """One query's scores of ``vectors``, summed in float64 and rounded to float32."""
    vectors64, query64 = vectors.astype(np.float64), query.astype(np.float64)
    if metric == "l2":
        return np.asarray(-np.sqrt(((vectors64 - query64) ** 2).sum(axis=1)), dtype=np.float32)
    return np.asarray(vectors64 @ query64, dtype=np.float32)


def exact_scores(metric: str, vectors: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Scores of every vector for every query: shape (queries, vectors)."""
    if metric == "l2":
        d2 = (
            (queries * queries).sum(axis=1)[:, None]
            - 2.0 * queries @ vectors.T
            + (vectors * vectors).sum(axis=1)[None, :]
        )
        return np.asarray(-np.sqrt(np.maximum(d2, 0.0)))
    return np.asarray(queries @ vectors.T)


def _top(labels: np.ndarray, scores: np.ndarray, k: int, positions: np.ndarray) -> Found:
    if scores.size > k:
        part = np.argpartition(-scores, k - 1)[:k]
    else:
        part = np.arange(scores.size)
    order = part[np.argsort(-scores[part], kind="stable")]
    return Found(labels[order], scores[order].astype(np.float32), positions[order])


def _merge(parts: list[Found], k: int) -> Found:
    parts = [p for p in parts if p.labels.size]
    if not parts:
        return NOTHING
    if len(parts) == 1:
        return Found(parts[0].labels[:k], parts[0].scores[:k], parts[0].positions[:k])
    return _top(
        np.concatenate([p.labels for p in parts]),
        np.concatenate([p.scores for p in parts]),
        k,
        np.concatenate([p.positions for p in parts]),
    )


def _drop(chunk: TailChunk, gone: np.ndarray) -> TailChunk:
    keep = ~np.isin(chunk.labels, gone)
    if keep.all():
        return chunk
    labels = chunk.labels[keep]
    records = {label: chunk.records[label] for label in labels.tolist()}
    return TailChunk(labels, chunk.vectors[keep], records)


def _keep(chunk: TailChunk, allowed: np.ndarray) -> TailChunk:
    """The part of ``chunk`` whose labels are ``allowed`` (for searching only)."""
    keep = np.isin(chunk.labels, allowed)
    if keep.all():
        return chunk
    return TailChunk(chunk.labels[keep], chunk.vectors[keep], chunk.records)


def _bitmap(size: int, positions: np.ndarray, *, value: bool = True) -> Any:
    """A FAISS selector of ``positions`` (or, with ``value`` False, of all others)."""
    flags = np.full(size, not value, dtype=bool)
    flags[positions] = value
    bits = np.packbits(flags, bitorder="little")
    selector: Any = faiss.IDSelectorBitmap(size, faiss.swig_ptr(bits))
    selector.referenced_objects = [bits]  # the C++ selector reads this buffer; keep it alive
    return selector
