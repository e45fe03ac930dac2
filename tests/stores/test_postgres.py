"""What only the PostgreSQL store does: replicas, read-your-writes, bulk loads, halfvec,
migrations, and answering 503 when the database cannot serve.

Everything runs against the real primary and streaming replica the test command
starts (tests/pgcluster.py); the replica is paused, stopped and restarted for real.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import numpy as np
import psycopg
import pytest

from spyglass.auth.keys import KeyRing
from spyglass.auth.pg_keys import PostgresKeyStore
from spyglass.errors import ConfigError, InvalidRequest, NotFound, Unavailable
from spyglass.keywords import query_terms
from spyglass.stores import pg_schema
from spyglass.stores.base import CollectionSpec, IndexParams, Item, KeywordQuery, Query
from spyglass.stores.postgres import PostgresStore
from tests.pgcluster import Cluster

pytestmark = pytest.mark.pg


def vectors(n: int, dim: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)


def items(vs: np.ndarray, prefix: str = "i", start: int = 0) -> list[Item]:
    return [
        Item(id=f"{prefix}{i}", vector=v, payload={"n": i}) for i, v in enumerate(vs, start=start)
    ]


def pause_replay(cluster: Cluster) -> None:
    with psycopg.connect(cluster.replica.url, autocommit=True) as conn:
        conn.execute("SELECT pg_wal_replay_pause()")


@pytest.fixture
def replicated(pg_cluster: Cluster) -> Iterator[tuple[PostgresStore, Cluster, str, str]]:
    primary, replica = pg_cluster.database()
    store = PostgresStore(primary, [replica], replica_wait_s=0.2, replica_retry_s=0.2)
    try:
        yield store, pg_cluster, primary, replica
    finally:
        store.close()
        if not pg_cluster.replica.running():
            pg_cluster.replica.start()
        with psycopg.connect(pg_cluster.replica.url, autocommit=True) as conn:
            conn.execute("SELECT pg_wal_replay_resume()")


def test_searches_go_to_the_replica_and_survive_it_stopping(
    replicated: tuple[PostgresStore, Cluster, str, str],
) -> None:
    store, cluster, _, _ = replicated
    store.create_collection(CollectionSpec(name="c", dim=8))
    data = vectors(60)
    store.upsert("c", items(data[:40]))
    cluster.wait_for_replica()

    # With replay paused, a search that misses the newest write was served by the replica.
    pause_replay(cluster)
    store.upsert("c", [Item(id="b", vector=data[40])])
    assert store.search("c", [Query(vector=data[40], k=1)])[0][0].id != "b"

    with psycopg.connect(cluster.replica.url, autocommit=True) as conn:
        conn.execute("SELECT pg_wal_replay_resume()")  # a paused standby may stop slowly
    cluster.replica.stop()
    for _ in range(3):  # every search still answers, now from the primary
        assert store.search("c", [Query(vector=data[40], k=1)])[0][0].id == "b"
    assert store.pools.replicas[0].down_until > 0

    cluster.replica.start()  # replay resumes on start
    cluster.wait_for_replica()
    pause_replay(cluster)
    store.upsert("c", [Item(id="c", vector=data[50])])
    served_by_replica = False
    for _ in range(500):  # the replica is tried again after replica_retry_s (bounded wait)
        if store.search("c", [Query(vector=data[50], k=1)])[0][0].id != "c":
            served_by_replica = True
            break
        time.sleep(0.01)
    assert served_by_replica


def test_read_your_writes_waits_for_the_replica_or_asks_the_primary(
    replicated: tuple[PostgresStore, Cluster, str, str],
) -> None:
    store, cluster, _, _ = replicated
    store.create_collection(CollectionSpec(name="c", dim=8))
    data = vectors(20)
    store.upsert("c", items(data[:10]))
    cluster.wait_for_replica()
    pause_replay(cluster)
    written = store.upsert("c", items(data[10:], prefix="new"))

    lagging = store.search("c", [Query(vector=data[12], k=1)])[0]
    assert lagging[0].id != "new2", "the replica should not have the write yet"
    fresh = store.search("c", [Query(vector=data[12], k=1)], min_version=written)[0]
    assert fresh[0].id == "new2"

    # A collection made while the replica is paused is still found (on the primary).
    store.create_collection(CollectionSpec(name="later", dim=8))
    assert store.get_collection("later").count == 0
    assert store.get_item("c", "new2").payload == {"n": 2}
    with pytest.raises(NotFound):
        store.get_item("c", "never")


def test_bulk_load_builds_the_index_once_at_the_end(pg_database: tuple[str, str]) -> None:
    store = PostgresStore(pg_database[0], exact_below=0)
    try:
        store.create_collection(CollectionSpec(name="c", dim=8))
        data = vectors(600)
        with store.bulk():
            for start in range(0, 600, 200):
                store.upsert("c", items(data[start : start + 200], start=start))
            assert not hnsw_index_exists(pg_database[0])
            # Searches during the load are exact, so nothing is missed.
            assert store.search("c", [Query(vector=data[450], k=1)])[0][0].id == "i450"
        store.optimize("c")
        assert hnsw_index_exists(pg_database[0])
        assert store.get_collection("c").count == 600
    finally:
        store.close()


def hnsw_index_exists(url: str) -> bool:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_indexes WHERE indexdef LIKE '%USING hnsw%'"
        ).fetchone()
    return bool(row and row[0])


def test_large_upserts_merge_through_copy(pg_database: tuple[str, str]) -> None:
    store = PostgresStore(pg_database[0])
    try:
        store.create_collection(CollectionSpec(name="c", dim=8))
        data = vectors(300)
        store.upsert("c", items(data[:200]))
        replaced = [
            Item(id=f"i{i}", vector=data[i], text="again", payload={"again": i})
            for i in range(100, 300)
        ]
        store.upsert("c", replaced)  # 100 existing ids and 100 new ones, over COPY_ABOVE
        assert store.get_collection("c").count == 300
        assert store.get_item("c", "i150").payload == {"again": 150}
        assert store.get_item("c", "i50").payload == {"n": 50}
        assert store.get_item("c", "i250").text == "again"
    finally:
        store.close()


def test_wide_vectors_are_indexed_at_half_precision(pg_database: tuple[str, str]) -> None:
    store = PostgresStore(pg_database[0], exact_below=0)
    try:
        store.create_collection(CollectionSpec(name="wide", dim=2048))
        data = vectors(40, dim=2048, seed=3)
        store.upsert("wide", items(data))
        with psycopg.connect(pg_database[0], autocommit=True) as conn:
            row = conn.execute(
                "SELECT indexdef FROM pg_indexes WHERE indexdef LIKE '%USING hnsw%'"
            ).fetchone()
        assert row is not None and "halfvec(2048)" in row[0]
        hits = store.search("wide", [Query(vector=data[17], k=3)])[0]
        assert hits[0].id == "i17"
        assert hits[0].score == pytest.approx(1.0, abs=1e-6)  # scored at full precision
        assert np.array_equal(store.get_item("wide", "i17").vector, data[17])
    finally:
        store.close()


def test_migrations_are_safe_from_several_instances_at_once(
    pg_database: tuple[str, str],
) -> None:
    errors: list[BaseException] = []

    def start() -> None:
        try:
            PostgresStore(pg_database[0]).close()
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with psycopg.connect(pg_database[0], autocommit=True) as conn:
        versions = [r[0] for r in conn.execute("SELECT version FROM spyglass_schema ORDER BY 1")]
        assert versions == list(range(1, len(pg_schema.MIGRATIONS) + 1))
        conn.execute("INSERT INTO spyglass_schema (version) VALUES (%s)", (99,))
    with pytest.raises(ConfigError, match="newer"):
        PostgresStore(pg_database[0])


def test_an_unreachable_database_is_a_clear_error_at_start() -> None:
    from tests.e2e.server import free_port

    with pytest.raises(ConfigError, match="cannot use the PostgreSQL store"):
        PostgresStore(f"postgresql://postgres@127.0.0.1:{free_port()}/x", timeout_s=1)


def test_a_saturated_or_stuck_database_is_unavailable_not_a_hang(
    pg_database: tuple[str, str],
) -> None:
    store = PostgresStore(pg_database[0], pool_size=1, timeout_s=0.3, statement_timeout_s=0.3)
    try:
        store.create_collection(CollectionSpec(name="c", dim=8))
        with store.pools.primary.pool.connection():  # the only connection is taken
            with pytest.raises(Unavailable, match="no connection became free"):
                store.check()
        with psycopg.connect(pg_database[0]) as holder:  # a transaction holds the row lock
            holder.execute("SELECT 1 FROM spyglass_collections WHERE name = 'c' FOR UPDATE")
            with pytest.raises(Unavailable, match="store_statement_timeout_s") as caught:
                store.upsert("c", items(vectors(1)))
            assert caught.value.status == 503
            assert caught.value.headers["Retry-After"] == "1"
        store.upsert("c", items(vectors(1)))  # and it recovers
        assert store.get_collection("c").count == 1
    finally:
        store.close()


def test_keys_in_postgres_are_shared_by_every_instance(pg_database: tuple[str, str]) -> None:
    one = PostgresKeyStore(pg_database[0], recheck_s=0)
    two = PostgresKeyStore(pg_database[0], recheck_s=0)
    try:
        ring = KeyRing(two)
        assert ring.open
        new = one.create("acme", ["read", "write"], "ci")
        principal = ring.authenticate(new.key)
        assert principal is not None and principal.tenant == "acme"
        assert not ring.open
        assert [k.id for k in two.list()] == [new.info.id]
        revoked = one.revoke(new.info.id)
        assert revoked.revoked_at is not None
        assert ring.authenticate(new.key) is None
        assert two.list() == [] and len(two.list(include_revoked=True)) == 1
        assert not ring.open, "revoking every key must not reopen the server"
        with pytest.raises(NotFound):
            one.revoke("000000000000")
    finally:
        one.close()
        two.close()


def test_each_query_gets_its_own_ef_and_exactness(pg_database: tuple[str, str]) -> None:
    store = PostgresStore(pg_database[0], exact_below=0)
    try:
        sparse = IndexParams(m=4, ef_construction=8)  # a poor graph, so ef shows
        store.create_collection(CollectionSpec(name="c", dim=16, metric="l2", index=sparse))
        data = vectors(4000, dim=16, seed=9)
        store.upsert("c", items(data))
        store.optimize("c")
        queries = vectors(40, dim=16, seed=10)
        truth = [
            {f"i{j}" for j in np.argsort(np.linalg.norm(data - q, axis=1))[:10]} for q in queries
        ]

        def recall(**options: object) -> float:
            batch = [Query(vector=q, k=10, **options) for q in queries]  # type: ignore[arg-type]
            results = store.search("c", batch)
            found = sum(
                len({h.id for h in hits} & t) for hits, t in zip(results, truth, strict=True)
            )
            return found / 400

        assert recall(exact=True) == 1.0
        narrow, wide = recall(ef=10), recall(ef=400)
        assert narrow < wide, (narrow, wide)
        # Mixed in one batch, each query keeps its own settings.
        mixed = store.search(
            "c", [Query(vector=queries[0], k=10, ef=10), Query(vector=queries[0], k=10, exact=True)]
        )
        assert {h.id for h in mixed[1]} == truth[0]
    finally:
        store.close()


def test_what_postgres_cannot_hold_is_the_clients_error(pg_database: tuple[str, str]) -> None:
    store = PostgresStore(pg_database[0])
    try:
        with pytest.raises(InvalidRequest) as caught:
            store.create_collection(CollectionSpec(name="c", dim=8, index=IndexParams(m=128)))
        assert caught.value.field == "index.m"
        with pytest.raises(InvalidRequest) as caught:
            store.create_collection(
                CollectionSpec(name="c", dim=8, index=IndexParams(m=16, ef_construction=20))
            )
        assert caught.value.field == "index.ef_construction"
        with pytest.raises(InvalidRequest) as caught:
            store.create_collection(CollectionSpec(name="c", dim=5000))
        assert caught.value.field == "dim"
        assert store.list_collections() == []

        store.create_collection(CollectionSpec(name="c", dim=8))
        with pytest.raises(InvalidRequest, match="cannot store this value"):
            store.upsert("c", [Item(id="a\x00b", vector=vectors(1)[0])])
        with pytest.raises(InvalidRequest) as caught:
            store.upsert("c", [Item(id="short", vector=vectors(1, dim=4)[0])])
        assert caught.value.field == "items[0].vector"
        assert store.get_collection("c").count == 0
    finally:
        store.close()


def test_a_standby_given_as_the_primary_is_refused(pg_database: tuple[str, str]) -> None:
    PostgresStore(pg_database[0]).close()  # the schema exists, and reaches the replica
    with pytest.raises(ConfigError, match="read-only"):
        PostgresStore(pg_database[1])


def test_collections_made_before_keyword_search_gain_it(pg_database: tuple[str, str]) -> None:
    store = PostgresStore(pg_database[0])
    store.create_collection(CollectionSpec(name="old", dim=4))
    store.upsert("old", [Item("a", np.ones(4, dtype=np.float32), "Bees make honey.")])
    store.close()
    with psycopg.connect(pg_database[0], autocommit=True) as conn:
        table = conn.execute("SELECT cid FROM spyglass_collections").fetchone()
        assert table is not None
        conn.execute(
            f"ALTER TABLE spyglass_items_{table[0]} DROP COLUMN tsv"
        )  # as schema 2 made it
        conn.execute("DELETE FROM spyglass_schema WHERE version > 2")
    store = PostgresStore(pg_database[0])
    try:
        query = KeywordQuery(terms=query_terms("who makes honey"), k=3)
        assert [hit.id for hit in store.keyword_search("old", [query])[0]] == ["a"]
    finally:
        store.close()
