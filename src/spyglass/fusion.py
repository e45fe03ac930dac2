"""Reciprocal rank fusion: one ranking out of several, by rank alone.

Hybrid search ranks a text query twice, by meaning (vector search) and by words
(keyword search), and the two scores live on unrelated scales (a cosine, a BM25).
Fusion by rank needs no calibration between them: an item at rank ``r`` (from 1)
of a ranking with weight ``w`` gains ``w / (k + r)``, and items are ordered by
their sums (Cormack, Clarke and Büttcher, SIGIR 2009, with ``k = 60``). An item
both rankings place high beats one that only one of them found.
"""

from __future__ import annotations

from collections.abc import Sequence

from spyglass.stores.base import Hit


def fuse(rankings: Sequence[tuple[float, Sequence[Hit]]], *, rrf_k: int, k: int) -> list[Hit]:
    """The ``k`` best hits of the weighted ``rankings`` (best first in each); each hit's
    ``score`` becomes its fused score, ties keep the order of first appearance."""
    scores: dict[str, float] = {}
    first: dict[str, Hit] = {}
    for weight, hits in rankings:
        for rank, hit in enumerate(hits, start=1):
            scores[hit.id] = scores.get(hit.id, 0.0) + weight / (rrf_k + rank)
            first.setdefault(hit.id, hit)
    best = sorted(scores, key=lambda item_id: -scores[item_id])[:k]
    return [
        Hit(item_id, scores[item_id], first[item_id].payload, first[item_id].text)
        for item_id in best
    ]
