"""The store contract: every backend passes these tests unchanged (see stores/base.py)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from spyglass import filters
from spyglass.errors import Conflict, InvalidRequest, NotFound
from spyglass.keywords import query_terms
from spyglass.stores.base import (
    QUANTIZATIONS,
    CollectionSpec,
    IndexParams,
    Item,
    KeywordQuery,
    Query,
    Store,
    StoredFile,
)
from tests.conftest import SHARED_DATA
from tests.stores.backends import STORE_KINDS, open_test_store


@pytest.fixture(params=STORE_KINDS)
def store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Store]:
    opened = open_test_store(request.param, tmp_path_factory.mktemp("store"), request)
    try:
        yield opened
    finally:
        opened.close()


def spec(name: str = "c", dim: int = 8, metric: str = "cosine") -> CollectionSpec:
    return CollectionSpec(name=name, dim=dim, metric=metric)  # type: ignore[arg-type]


def items(vectors: np.ndarray, prefix: str = "i", payload: bool = True) -> list[Item]:
    return [
        Item(
            id=f"{prefix}{i}",
            vector=v.astype(np.float32),
            text=f"text {i}",
            payload={"n": i, "parity": "even" if i % 2 == 0 else "odd"} if payload else {},
        )
        for i, v in enumerate(vectors)
    ]


def brute_force(vectors: np.ndarray, query: np.ndarray, metric: str) -> np.ndarray:
    if metric == "cosine":
        v = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        return v @ (query / np.linalg.norm(query))
    if metric == "ip":
        return vectors @ query
    return -np.linalg.norm(vectors - query, axis=1)


def test_create_get_list_delete(store: Store) -> None:
    info, created = store.create_collection(spec("b"))
    assert created and info.count == 0 and info.spec == spec("b")
    store.create_collection(spec("a", dim=4, metric="l2"))
    assert [c.spec.name for c in store.list_collections()] == ["a", "b"]
    assert store.get_collection("a").spec.metric == "l2"
    store.delete_collection("a")
    with pytest.raises(NotFound):
        store.get_collection("a")
    with pytest.raises(NotFound):
        store.delete_collection("a")


def test_create_is_idempotent_for_the_same_spec_and_conflicts_otherwise(store: Store) -> None:
    store.create_collection(spec())
    _, created = store.create_collection(spec())
    assert not created
    with pytest.raises(Conflict):
        store.create_collection(spec(dim=9))
    with pytest.raises(Conflict):
        store.create_collection(CollectionSpec(name="c", dim=8, index=IndexParams(m=32)))


def test_unknown_collection_is_not_found_everywhere(store: Store) -> None:
    vector = np.ones(8, dtype=np.float32)
    with pytest.raises(NotFound):
        store.upsert("nope", [Item(id="x", vector=vector)])
    with pytest.raises(NotFound):
        store.get_item("nope", "x")
    with pytest.raises(NotFound):
        store.delete_items("nope", ["x"])
    with pytest.raises(NotFound):
        store.search("nope", [Query(vector=vector)])


def test_upsert_get_round_trip_and_versions(store: Store) -> None:
    store.create_collection(spec())
    v0 = store.get_collection("c").version
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(5, 8)).astype(np.float32)
    v1 = store.upsert("c", items(vectors))
    assert v1 > v0
    got = store.get_item("c", "i3")
    assert np.array_equal(got.vector, vectors[3])
    assert got.text == "text 3" and got.payload == {"n": 3, "parity": "odd"}
    info = store.get_collection("c")
    assert info.count == 5 and info.version == v1

    replacement = Item(id="i3", vector=np.ones(8, dtype=np.float32), payload={"new": True})
    v2 = store.upsert("c", [replacement])
    assert v2 > v1
    assert store.get_collection("c").count == 5
    assert store.get_item("c", "i3").payload == {"new": True}
    assert store.get_item("c", "i3").text is None


def test_last_duplicate_in_a_batch_wins(store: Store) -> None:
    store.create_collection(spec())
    one, two = np.ones(8, dtype=np.float32), np.full(8, 2.0, dtype=np.float32)
    store.upsert("c", [Item(id="x", vector=one), Item(id="x", vector=two, payload={"v": 2})])
    assert store.get_collection("c").count == 1
    assert store.get_item("c", "x").payload == {"v": 2}


def test_delete_items(store: Store) -> None:
    store.create_collection(spec())
    store.upsert("c", items(np.random.default_rng(2).normal(size=(4, 8))))
    deleted, version = store.delete_items("c", ["i1", "i2", "missing", "i1"])
    assert deleted == 2
    assert store.get_collection("c").count == 2
    assert store.get_collection("c").version == version
    with pytest.raises(NotFound):
        store.get_item("c", "i1")
    hits = store.search("c", [Query(vector=np.ones(8, dtype=np.float32), k=10)])[0]
    assert sorted(h.id for h in hits) == ["i0", "i3"]


def test_version_is_never_reused_after_recreate(store: Store) -> None:
    store.create_collection(spec())
    version = store.upsert("c", items(np.ones((2, 8))))
    store.delete_collection("c")
    info, _ = store.create_collection(spec())
    assert info.count == 0 and info.version > version
    assert store.search("c", [Query(vector=np.ones(8, dtype=np.float32))]) == [[]]


@pytest.mark.parametrize("metric", ["cosine", "ip", "l2"])
def test_scores_follow_the_metric_and_rank_best_first(store: Store, metric: str) -> None:
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(300, 8)).astype(np.float32)
    store.create_collection(spec(metric=metric))
    store.upsert("c", items(vectors))
    query = rng.normal(size=8).astype(np.float32)
    expected = brute_force(vectors, query, metric)
    order = np.argsort(-expected)[:10]
    for exact in (True, False):
        hits = store.search("c", [Query(vector=query, k=10, exact=exact)])[0]
        assert [h.id for h in hits] == [f"i{i}" for i in order]
        assert np.allclose([h.score for h in hits], expected[order], atol=1e-4)
        assert hits[0].payload == {"n": int(order[0]), "parity": ["even", "odd"][order[0] % 2]}


@pytest.mark.parametrize("metric", ["cosine", "ip", "l2"])
def test_exact_search_orders_equal_scores_by_id_and_keeps_the_smaller_ids(
    store: Store, metric: str
) -> None:
    rng = np.random.default_rng(8)
    distinct = rng.normal(size=(17, 8)).astype(np.float32)
    n = 300
    ids = [f"t{i}" for i in range(n)]  # byte order is not numeric order: t10 < t2
    payloads = [{"n": i, "parity": ["even", "odd"][i % 2]} for i in range(n)]
    written = [
        Item(id=ids[i], vector=distinct[i % 17], payload=payloads[i])
        for i in rng.permutation(n)  # labels in another order than ids
    ]
    store.create_collection(spec(metric=metric))
    for start in range(0, n, 60):  # several writes: snapshot and tail both hold ties
        store.upsert("c", written[start : start + 60])
    for query in (distinct[3], rng.normal(size=8).astype(np.float32)):
        group_score = brute_force(distinct, query, metric)
        for raw in (None, {"parity": "odd"}):
            flt = filters.parse(raw) if raw is not None else None
            chosen = [i for i in range(n) if flt is None or filters.matches(flt, payloads[i])]
            ranked = sorted(chosen, key=lambda i: (-group_score[i % 17], ids[i].encode()))
            for k in (5, 17, 40):
                hits = store.search("c", [Query(vector=query, k=k, filter=flt, exact=True)])[0]
                assert [h.id for h in hits] == [ids[i] for i in ranked[:k]], (raw, k)


def test_batch_of_queries_answers_each_in_order(store: Store) -> None:
    rng = np.random.default_rng(4)
    vectors = rng.normal(size=(50, 8)).astype(np.float32)
    store.create_collection(spec())
    store.upsert("c", items(vectors))
    results = store.search("c", [Query(vector=vectors[7], k=1), Query(vector=vectors[9], k=3)])
    assert [h.id for h in results[0]] == ["i7"]
    assert len(results[1]) == 3 and results[1][0].id == "i9"


def test_filters_never_under_fill(store: Store) -> None:
    rng = np.random.default_rng(5)
    vectors = rng.normal(size=(3000, 8)).astype(np.float32)
    store.create_collection(spec())
    store.upsert("c", items(vectors))
    store.optimize("c")
    query = rng.normal(size=8).astype(np.float32)
    cases = [
        ({"n": {"$lt": 12}}, 10, 10),
        ({"n": {"$lt": 4}}, 10, 4),
        ({"parity": "odd"}, 50, 50),
        ({"$and": [{"parity": "even"}, {"n": {"$gte": 2990}}]}, 10, 5),
        ({"n": {"$in": [5, 2500, 2999]}}, 10, 3),
        ({"n": -1}, 10, 0),
    ]
    for raw, k, want in cases:
        flt = filters.parse(raw)
        hits = store.search("c", [Query(vector=query, k=k, filter=flt)])[0]
        assert len(hits) == want, raw
        assert flt is not None
        assert all(filters.matches(flt, h.payload) for h in hits), raw
        matching = [i for i in range(3000) if filters.matches(flt, items_payload(i))]
        expected = brute_force(vectors[matching], query, "cosine")
        best = {f"i{matching[j]}" for j in np.argsort(-expected)[:want]}
        found = {h.id for h in hits}
        assert len(found & best) >= 0.8 * want, raw


def items_payload(i: int) -> dict[str, object]:
    return {"n": i, "parity": "even" if i % 2 == 0 else "odd"}


def test_writes_after_the_index_are_searched_with_it(store: Store) -> None:
    rng = np.random.default_rng(6)
    vectors = rng.normal(size=(2000, 8)).astype(np.float32)
    store.create_collection(spec())
    store.upsert("c", items(vectors))
    store.optimize("c")
    fresh = rng.normal(size=(20, 8)).astype(np.float32)
    store.upsert("c", items(fresh, prefix="new"))
    store.delete_items("c", [f"i{i}" for i in range(0, 2000, 2)])
    store.upsert("c", [Item(id="i1", vector=fresh[0] * 3, payload={"moved": True})])

    hits = store.search("c", [Query(vector=fresh[0], k=5, exact=True)])[0]
    assert {h.id for h in hits[:2]} == {"new0", "i1"}
    assert all(not h.id.startswith("i") or int(h.id[1:]) % 2 == 1 for h in hits)
    for exact in (True, False):
        hits = store.search("c", [Query(vector=vectors[10], k=20, exact=exact)])[0]
        assert "i10" not in {h.id for h in hits}
        assert len(hits) == 20
    assert store.get_collection("c").count == 1000 + 20


def test_search_on_an_empty_collection_returns_nothing(store: Store) -> None:
    store.create_collection(spec())
    assert store.search("c", [Query(vector=np.ones(8, dtype=np.float32), k=3)]) == [[]]


def test_check_passes_on_a_healthy_store(store: Store) -> None:
    store.check()


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_hits_carry_their_indexed_vectors_on_request(store: Store, metric: str) -> None:
    rng = np.random.default_rng(7)
    vectors = rng.normal(size=(300, 8)).astype(np.float32)
    store.create_collection(spec(metric=metric))
    store.upsert("c", items(vectors[:200]))
    store.optimize("c")
    store.upsert("c", items(vectors[200:], prefix="t"))  # after the index: the tail
    store.delete_items("c", ["i3"])
    query = vectors[5]
    expected = {f"i{i}": v for i, v in enumerate(vectors[:200])}
    expected |= {f"t{i}": v for i, v in enumerate(vectors[200:])}
    [hits] = store.search("c", [Query(vector=query, k=40, vectors=True)])
    assert {hit.id[0] for hit in hits} == {"i", "t"}
    for hit in hits:
        want = expected[hit.id]
        if metric == "cosine":
            want = want / np.linalg.norm(want)
        assert hit.vector is not None
        np.testing.assert_allclose(hit.vector, want, rtol=1e-5, atol=1e-6)
    [plain] = store.search("c", [Query(vector=query, k=5)])
    assert all(hit.vector is None for hit in plain)


def test_collection_options_round_trip_and_count_in_conflicts(store: Store) -> None:
    face = CollectionSpec(name="f", dim=4, metric="l2", encoder="face", options={"threshold": 0.5})
    info, created = store.create_collection(face)
    assert created and info.spec.options == {"threshold": 0.5}
    assert store.get_collection("f").spec == face
    assert [c.spec.options for c in store.list_collections()] == [{"threshold": 0.5}]
    _, again = store.create_collection(face)
    assert not again
    with pytest.raises(Conflict):
        store.create_collection(
            CollectionSpec(name="f", dim=4, metric="l2", encoder="face", options={"threshold": 0.4})
        )


def test_scan_pages_through_every_item_once_in_id_order(store: Store) -> None:
    store.create_collection(spec())
    vectors = np.random.default_rng(8).normal(size=(25, 8)).astype(np.float32)
    store.upsert("c", items(vectors))
    store.delete_items("c", ["i3"])
    seen: list[Item] = []
    after: str | None = None
    while page := store.scan("c", after, limit=7):
        assert len(page) <= 7
        seen.extend(page)
        after = page[-1].id
    assert [item.id for item in seen] == sorted(f"i{i}" for i in range(25) if i != 3)
    by_id = {item.id: item for item in seen}
    assert np.array_equal(by_id["i12"].vector, vectors[12])
    assert by_id["i12"].payload == {"n": 12, "parity": "even"} and by_id["i12"].text == "text 12"
    with pytest.raises(NotFound):
        store.scan("nope")


KEYWORD_TEXTS = {
    "bees": "Honeybees make honey from the nectar of flowers.",
    "wasps": "Wasps hunt other insects and make no honey.",
    "hives": "A beekeeper keeps bees in hives and takes their honey.",
    "rivers": "The Seine flows through Paris to the English Channel.",
    "ferns": "Ferns reproduce by spores, not seeds.",
}


def keyword_items() -> list[Item]:
    rng = np.random.default_rng(7)
    found = [
        Item(id=key, vector=rng.normal(size=8).astype(np.float32), text=text, payload={"n": i})
        for i, (key, text) in enumerate(KEYWORD_TEXTS.items())
    ]
    found.append(Item(id="no-text", vector=rng.normal(size=8).astype(np.float32), payload={}))
    return found


def keyword(
    store: Store, text: str, k: int = 10, flt: dict[str, object] | None = None
) -> list[str]:
    query = KeywordQuery(
        terms=query_terms(text), k=k, filter=None if flt is None else filters.parse(flt)
    )
    return [hit.id for hit in store.keyword_search("c", [query])[0]]


def test_keyword_search_finds_items_holding_the_words(store: Store) -> None:
    store.create_collection(spec())
    store.upsert("c", keyword_items())
    assert keyword(store, "Who makes honey?")[:3] != []
    assert set(keyword(store, "Who makes honey?")) == {"bees", "wasps", "hives"}
    assert keyword(store, "spores") == ["ferns"]
    assert keyword(store, "beekeeper bees hives honey")[0] == "hives"  # the most terms wins
    assert keyword(store, "Paris")[0] == "rivers"
    assert keyword(store, "quantum chromodynamics") == []
    assert keyword(store, "") == []
    hits = store.keyword_search("c", [KeywordQuery(terms=query_terms("honey flowers"), k=5)])[0]
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert hits[0].id == "bees" and hits[0].text == KEYWORD_TEXTS["bees"]
    assert hits[0].payload == {"n": 0}


def test_keyword_search_takes_k_filters_and_query_syntax_as_words(store: Store) -> None:
    store.create_collection(spec())
    store.upsert("c", keyword_items())
    assert len(keyword(store, "honey", k=2)) == 2
    assert keyword(store, "honey", flt={"n": {"$gte": 1}}) in (
        ["wasps", "hives"],
        ["hives", "wasps"],
    )
    assert keyword(store, "honey", flt={"n": 4}) == []
    # operators of either engine's query language are plain words here
    for text in (
        'honey" OR "x',
        "honey AND NOT bees",
        "honey & !bees | (",
        "text:honey",
        "NEAR(honey)",
    ):
        assert "bees" in keyword(store, text), text


def test_keyword_search_follows_upserts_and_deletes(store: Store) -> None:
    store.create_collection(spec())
    version = store.upsert("c", keyword_items())
    assert keyword(store, "spores") == ["ferns"]
    rng = np.random.default_rng(8)
    replaced = Item(id="ferns", vector=rng.normal(size=8).astype(np.float32), text="Mosses too.")
    version = store.upsert("c", [replaced])
    assert keyword(store, "spores") == []
    assert (
        store.keyword_search(
            "c", [KeywordQuery(terms=query_terms("mosses"), k=3)], min_version=version
        )[0][0].id
        == "ferns"
    )
    store.delete_items("c", ["bees"])
    assert "bees" not in keyword(store, "honey")
    store.delete_collection("c")
    with pytest.raises(NotFound):
        keyword(store, "honey")
    store.create_collection(spec())
    assert keyword(store, "honey") == []


def test_files_are_kept_replaced_and_removed_with_their_items(store: Store) -> None:
    store.create_collection(spec())
    rng = np.random.default_rng(3)

    def item(item_id: str, data: bytes | None) -> Item:
        file = None if data is None else StoredFile(data, "image/png")
        return Item(id=item_id, vector=rng.normal(size=8).astype(np.float32), file=file)

    store.upsert("c", [item("a/1", b"\x89PNG first"), item("b", None), item("c", b"\x00" * 70000)])
    assert store.get_file("c", "a/1") == StoredFile(b"\x89PNG first", "image/png")
    assert store.get_file("c", "c").data == b"\x00" * 70000
    with pytest.raises(NotFound):
        store.get_file("c", "b")  # an item without a file
    with pytest.raises(NotFound):
        store.get_file("c", "nope")
    assert store.get_item("c", "a/1").file is None  # reading items never carries the file
    store.upsert("c", [item("a/1", b"\x89PNG second")])
    assert store.get_file("c", "a/1").data == b"\x89PNG second"
    store.upsert("c", [item("a/1", None)])  # replaced without one: the old file goes
    with pytest.raises(NotFound):
        store.get_file("c", "a/1")
    store.delete_items("c", ["c"])
    with pytest.raises(NotFound):
        store.get_file("c", "c")
    store.upsert("c", [item("d", b"kept")])
    scanned = {i.id: i.file for i in store.scan("c")}
    assert scanned == {"a/1": None, "b": None, "d": StoredFile(b"kept", "image/png")}
    store.delete_collection("c")
    store.create_collection(spec())
    with pytest.raises(NotFound):
        store.get_file("c", "d")


def test_index_state_accounts_for_every_live_item(store: Store) -> None:
    store.create_collection(spec())
    vectors = np.random.default_rng(11).normal(size=(40, 8))
    store.upsert("c", items(vectors))
    store.optimize("c")
    store.upsert("c", items(vectors[:10], prefix="more"))
    store.delete_items("c", ["i0", "i1"])
    state = store.index_state("c")
    if state is not None:  # a store that keeps its own index (PostgreSQL) says nothing
        assert state.indexed + state.tail == store.get_collection("c").count == 48
        assert state.last_build_s is not None  # optimize() built it
    with pytest.raises(NotFound):
        store.index_state("nope")


FASHION = SHARED_DATA / "ann_fashion_mnist900"


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_quantized_collections_keep_recall_and_score_exactly(store: Store, metric: str) -> None:
    """Every quantization a store offers finds >= 0.95 of the true top 10 of real data
    (Fashion-MNIST) at the default settings, with scores of the exact vectors."""
    base = np.load(FASHION / "base.npy").astype(np.float32)
    queries = np.load(FASHION / "query.npy").astype(np.float32)
    truth = "angular" if metric == "cosine" else "euclidean"
    expected = np.load(FASHION / f"gt_{truth}_neighbors.npy")[:, :10]
    assert "none" in store.quantizations and len(store.quantizations) >= 3
    for quantization in store.quantizations:
        name = f"q-{quantization}"
        store.create_collection(
            CollectionSpec(
                name=name,
                dim=base.shape[1],
                metric=metric,  # type: ignore[arg-type]
                index=IndexParams(quantization=quantization),  # type: ignore[arg-type]
            )
        )
        store.upsert(name, [Item(id=str(i), vector=v) for i, v in enumerate(base)])
        store.optimize(name)
        info = store.get_collection(name)
        assert info.spec.index.quantization == quantization
        results = store.search(name, [Query(vector=q, k=10) for q in queries])
        found = sum(
            len({int(h.id) for h in hits} & set(row.tolist()))
            for hits, row in zip(results, expected, strict=True)
        )
        assert found / expected.size >= 0.95, quantization
        for query, hits in zip(queries[:20], results[:20], strict=True):
            exact = brute_force(base[[int(h.id) for h in hits]], query, metric)
            np.testing.assert_allclose([h.score for h in hits], exact, rtol=1e-4, atol=1e-3)


def test_a_quantization_the_store_lacks_is_refused_by_name(store: Store) -> None:
    lacking = next(q for q in QUANTIZATIONS if q not in store.quantizations)
    index = IndexParams(quantization=lacking)  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest) as refused:
        store.create_collection(CollectionSpec(name="c", dim=8, index=index))
    assert refused.value.field == "index.quantization" and lacking in str(refused.value)
    with pytest.raises(NotFound):
        store.get_collection("c")
