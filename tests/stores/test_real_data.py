"""The embedded store on real third-party data (Fashion-MNIST, ../shared/data)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from spyglass import filters
from spyglass.stores.base import CollectionSpec, Item, Query
from spyglass.stores.embedded import EmbeddedStore
from tests.conftest import SHARED_DATA

FASHION = SHARED_DATA / "ann_fashion_mnist900"


@pytest.mark.parametrize(("metric", "truth"), [("cosine", "angular"), ("l2", "euclidean")])
def test_hnsw_recall_on_fashion_mnist(tmp_path: Path, metric: str, truth: str) -> None:
    base = np.load(FASHION / "base.npy").astype(np.float32)
    queries = np.load(FASHION / "query.npy").astype(np.float32)
    expected = np.load(FASHION / f"gt_{truth}_neighbors.npy")[:, :10]
    labels = np.load(FASHION / "base_labels.npy")
    store = EmbeddedStore(tmp_path, exact_below=0)
    store.create_collection(CollectionSpec(name="f", dim=base.shape[1], metric=metric))  # type: ignore[arg-type]
    store.upsert(
        "f",
        [Item(id=str(i), vector=v, payload={"label": int(labels[i])}) for i, v in enumerate(base)],
    )
    store.optimize("f")
    results = store.search("f", [Query(vector=q, k=10) for q in queries])
    found = sum(
        len({int(h.id) for h in hits} & set(row.tolist()))
        for hits, row in zip(results, expected, strict=True)
    )
    assert found / expected.size >= 0.95

    shoes = filters.parse({"label": {"$in": [5, 7, 9]}})
    hits = store.search("f", [Query(vector=queries[0], k=20, filter=shoes)])[0]
    assert len(hits) == 20 and all(h.payload["label"] in (5, 7, 9) for h in hits)
    store.close()
