"""Congruence: the embedded store and the PostgreSQL store answer alike on the same data.

Real third-party vectors (Fashion-MNIST, ../shared/data). Exact search must give
the same top-k with the same scores on both; HNSW search on PostgreSQL must find
at least 95% of the exact top-k, with and without a filter.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from spyglass import filters
from spyglass.stores.base import CollectionSpec, Hit, Item, Query, Store
from spyglass.stores.embedded import EmbeddedStore
from spyglass.stores.postgres import PostgresStore
from tests.conftest import SHARED_DATA

pytestmark = pytest.mark.pg

FASHION = SHARED_DATA / "ann_fashion_mnist900"
K = 10


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    base = np.load(FASHION / "base.npy").astype(np.float32)
    queries = np.load(FASHION / "query.npy").astype(np.float32)
    labels = np.load(FASHION / "base_labels.npy")
    return base, queries, labels


def load(store: Store, metric: str, data: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    base, _, labels = data
    store.create_collection(CollectionSpec(name="f", dim=base.shape[1], metric=metric))  # type: ignore[arg-type]
    with store.bulk():
        store.upsert(
            "f",
            [
                Item(id=str(i), vector=v, payload={"label": int(labels[i])})
                for i, v in enumerate(base)
            ],
        )
    store.optimize("f")


@pytest.fixture(params=["cosine", "l2", "ip"])
def pair(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    pg_database: tuple[str, str],
    data: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> Iterator[tuple[str, EmbeddedStore, PostgresStore]]:
    embedded = EmbeddedStore(tmp_path, exact_below=0)
    postgres = PostgresStore(pg_database[0], exact_below=0)
    try:
        for store in (embedded, postgres):
            load(store, request.param, data)
        yield request.param, embedded, postgres
    finally:
        embedded.close()
        postgres.close()


def ids(hits: list[Hit]) -> list[str]:
    return [h.id for h in hits]


def test_exact_search_gives_the_same_top_k_and_scores(
    pair: tuple[str, EmbeddedStore, PostgresStore],
    data: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    _, embedded, postgres = pair
    queries = [Query(vector=q, k=K, exact=True) for q in data[1]]
    for mine, theirs in zip(
        embedded.search("f", queries), postgres.search("f", queries), strict=True
    ):
        assert ids(mine) == ids(theirs)
        np.testing.assert_allclose(
            [h.score for h in mine], [h.score for h in theirs], rtol=1e-5, atol=1e-3
        )
        assert [h.payload for h in mine] == [h.payload for h in theirs]


@pytest.mark.parametrize("raw_filter", [None, {"label": {"$in": [5, 7, 9]}}, {"label": 3}])
def test_hnsw_search_on_postgres_recalls_the_exact_top_k(
    pair: tuple[str, EmbeddedStore, PostgresStore],
    data: tuple[np.ndarray, np.ndarray, np.ndarray],
    raw_filter: dict[str, object] | None,
) -> None:
    _, embedded, postgres = pair
    flt = filters.parse(raw_filter)
    exact = embedded.search("f", [Query(vector=q, k=K, exact=True, filter=flt) for q in data[1]])
    approximate = postgres.search("f", [Query(vector=q, k=K, filter=flt) for q in data[1]])
    found = sum(len(set(ids(a)) & set(ids(e))) for a, e in zip(approximate, exact, strict=True))
    assert all(len(a) == K for a in approximate)
    assert found / (K * len(exact)) >= 0.95
