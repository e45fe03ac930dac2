"""What only the embedded store does: snapshots, sharing one directory, rebuilding."""

from __future__ import annotations

import gc
import signal
import sqlite3
import subprocess
import sys
import time
import weakref
from pathlib import Path

import numpy as np
import pytest

from spyglass import filters
from spyglass.keywords import query_terms
from spyglass.stores.base import CollectionSpec, IndexParams, Item, KeywordQuery, Query
from spyglass.stores.embedded import EmbeddedStore


def fill(
    store: EmbeddedStore, n: int, dim: int = 16, seed: int = 0, prefix: str = "i"
) -> np.ndarray:
    vectors = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    store.upsert("c", [Item(id=f"{prefix}{i}", vector=v) for i, v in enumerate(vectors)])
    return vectors


def snapshot_files(data_dir: Path) -> list[str]:
    return sorted(p.name for p in (data_dir / "index").rglob("hnsw-*.faiss"))


def test_optimize_writes_a_snapshot_that_is_memory_mapped(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path, exact_below=0)
    store.create_collection(CollectionSpec(name="c", dim=16))
    vectors = fill(store, 500)
    store.optimize("c")
    files = snapshot_files(tmp_path)
    assert len(files) == 1
    hits = store.search("c", [Query(vector=vectors[42], k=1)])[0]
    assert hits[0].id == "i42"
    maps = Path("/proc/self/maps").read_text()
    assert files[0] in maps, "the snapshot should be read through mmap"
    store.close()


def test_a_built_snapshot_lets_go_of_the_tail_this_worker_held(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path, exact_below=0)
    store.create_collection(CollectionSpec(name="c", dim=16))
    vectors = fill(store, 500)
    assert store.search("c", [Query(vector=vectors[3], k=1)])[0][0].id == "i3"
    held = weakref.ref(store._sync("c"))
    assert held() is not None and held().tail_size == 500  # type: ignore[union-attr]
    store.optimize("c")
    gc.collect()
    assert held() is None  # nothing keeps 500 vectors of tail alive in this process
    assert store.search("c", [Query(vector=vectors[7], k=1)])[0][0].id == "i7"
    assert store._sync("c").tail_size == 0
    store.close()


def test_background_rebuild_when_the_tail_grows(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path, snapshot_tail=100, exact_below=0)
    store.create_collection(CollectionSpec(name="c", dim=16))
    vectors = fill(store, 300)
    store.search("c", [Query(vector=vectors[0])])
    deadline = time.monotonic() + 60
    while not snapshot_files(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert snapshot_files(tmp_path)
    while store._sync("c").snapshot_seq != store.get_collection("c").version:
        assert time.monotonic() < deadline, "the new snapshot was never picked up"
        time.sleep(0.05)
    view = store._sync("c")
    assert view.snapshot is not None and view.snapshot.size == 300 and view.tail_size == 0
    assert store.search("c", [Query(vector=vectors[7], k=1)])[0][0].id == "i7"
    store.close()


def test_two_stores_on_one_directory_see_each_others_writes(tmp_path: Path) -> None:
    a = EmbeddedStore(tmp_path, snapshot_tail=50, exact_below=0)
    b = EmbeddedStore(tmp_path, snapshot_tail=50, exact_below=0)
    a.create_collection(CollectionSpec(name="c", dim=16))
    vectors = fill(a, 200)
    b.optimize("c")
    assert b.search("c", [Query(vector=vectors[5], k=1)])[0][0].id == "i5"
    a.delete_items("c", ["i5"])
    assert b.search("c", [Query(vector=vectors[5], k=1)])[0][0].id != "i5"
    assert a.search("c", [Query(vector=vectors[5], k=1)])[0][0].id != "i5"
    extra = fill(b, 3, seed=9, prefix="b")
    assert a.search("c", [Query(vector=extra[2], k=1)])[0][0].id == "b2"
    a.close()
    b.close()


def test_a_lost_snapshot_is_rebuilt_from_sqlite(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path, exact_below=0)
    store.create_collection(CollectionSpec(name="c", dim=16))
    vectors = fill(store, 400)
    store.optimize("c")
    store.close()
    for path in (tmp_path / "index").rglob("*"):
        if path.is_file():
            path.unlink()
    reopened = EmbeddedStore(tmp_path, exact_below=0)
    assert reopened.search("c", [Query(vector=vectors[3], k=1)])[0][0].id == "i3"
    reopened.optimize("c")
    assert snapshot_files(tmp_path)
    assert reopened.search("c", [Query(vector=vectors[4], k=1)])[0][0].id == "i4"
    reopened.close()


def test_old_snapshots_are_pruned(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path, exact_below=0)
    store.create_collection(CollectionSpec(name="c", dim=16))
    for seed in range(4):
        fill(store, 50, seed=seed, prefix=f"s{seed}-")
        store.optimize("c")
    assert len(snapshot_files(tmp_path)) <= 2
    assert store.get_collection("c").count == 200
    store.close()


def test_a_partial_snapshot_is_rebuilt(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path, exact_below=0)
    store.create_collection(CollectionSpec(name="c", dim=16))
    vectors = fill(store, 300)
    store.optimize("c")
    store.close()
    next((tmp_path / "index").rglob("records-*.bin")).unlink()
    reopened = EmbeddedStore(tmp_path, exact_below=0)
    other = EmbeddedStore(tmp_path, exact_below=0)
    assert other._sync("c").snapshot is None
    reopened.optimize("c")
    view = reopened._sync("c")
    assert view.snapshot is not None and view.tail_size == 0
    assert other._sync("c").snapshot is not None, "a repaired snapshot reaches every worker"
    other.close()
    assert reopened.search("c", [Query(vector=vectors[9], k=1)])[0][0].id == "i9"
    reopened.close()


def test_bulk_defers_checkpoints_and_loses_nothing(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path)
    store.create_collection(CollectionSpec(name="c", dim=4))
    writer = store.db._writer
    rng = np.random.default_rng(3)
    with store.bulk():
        assert writer.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
        for batch in range(3):
            vectors = rng.normal(size=(500, 4)).astype(np.float32)
            store.upsert("c", [Item(id=f"{batch}-{i}", vector=v) for i, v in enumerate(vectors)])
        assert store.get_collection("c").count == 1500  # visible at once, before the block ends
    assert writer.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 1000
    store.close()
    reopened = EmbeddedStore(tmp_path)
    assert reopened.get_collection("c").count == 1500
    assert reopened.get_item("c", "2-499").vector.shape == (4,)
    reopened.close()


def test_warm_loads_the_view_before_any_search(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path, exact_below=0)
    store.create_collection(CollectionSpec(name="c", dim=16))
    fill(store, 300)
    store.optimize("c")
    store.close()
    reopened = EmbeddedStore(tmp_path, exact_below=0)
    assert "c" not in reopened._views
    reopened.warm("c")
    assert reopened._views["c"].snapshot is not None
    reopened.close()


def test_collections_made_before_keyword_search_gain_it(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path)
    store.create_collection(CollectionSpec(name="old", dim=4))
    store.upsert("old", [Item("a", np.ones(4, dtype=np.float32), "Bees make honey.")])
    store.close()
    with sqlite3.connect(tmp_path / "spyglass.db") as conn:
        conn.execute("DROP TABLE fts_1")  # as a release before keyword search left it
    store = EmbeddedStore(tmp_path)
    try:
        query = KeywordQuery(terms=query_terms("who makes honey"), k=3)
        assert [hit.id for hit in store.keyword_search("old", [query])[0]] == ["a"]
    finally:
        store.close()


def replay(
    store: EmbeddedStore, vectors: np.ndarray, *, build_between: bool, quantization: str = "none"
) -> None:
    """The same writes into ``store``: 600 items, then 300 new, 50 replaced and 50
    deleted; built after the first batch too if ``build_between``."""
    # a quantized index re-scores every item it finds: a walk past the size misses none
    index = IndexParams(quantization=quantization, oversample=100)  # type: ignore[arg-type]
    store.create_collection(CollectionSpec(name="c", dim=vectors.shape[1], index=index))
    store.upsert("c", [Item(id=f"i{i}", vector=v) for i, v in enumerate(vectors[:600])])
    if build_between:
        store.optimize("c")
    store.upsert("c", [Item(id=f"i{i}", vector=v) for i, v in enumerate(vectors[600:900], 600)])
    store.upsert("c", [Item(id=f"i{i}", vector=vectors[900 + i]) for i in range(50)])
    store.delete_items("c", [f"i{i}" for i in range(50, 100)])
    store.optimize("c")


@pytest.mark.parametrize("quantization", ["none", "sq8", "pq"])
def test_a_build_extends_the_snapshot_and_finds_what_a_full_build_finds(
    tmp_path: Path, quantization: str
) -> None:
    vectors = np.random.default_rng(5).normal(size=(950, 16)).astype(np.float32)
    extended = EmbeddedStore(tmp_path / "extended", exact_below=0)
    full = EmbeddedStore(tmp_path / "full", exact_below=0)
    replay(extended, vectors, build_between=True, quantization=quantization)
    replay(full, vectors, build_between=False, quantization=quantization)
    assert extended.index_state("c").last_build_extended is True
    assert full.index_state("c").last_build_extended is False
    state = extended.index_state("c")
    assert (state.indexed, state.tail, state.deleted, state.building) == (850, 0, 100, False)
    grown = extended._sync("c")
    assert grown.snapshot is not None and grown.tail_size == 0
    # the first 600 stay where they were; 300 new and 50 replacements come after them
    assert grown.snapshot.size == 950 and grown.snapshot.dead.tolist() == list(range(100))
    assert full._sync("c").snapshot.size == 850  # type: ignore[union-attr]
    for exact, ef in ((True, None), (False, 1024)):  # ef past the size: HNSW misses nothing
        for q in vectors[::19]:
            query = Query(vector=q, k=10, exact=exact, ef=ef)
            got = [(h.id, round(h.score, 4)) for h in extended.search("c", [query])[0]]
            want = [(h.id, round(h.score, 4)) for h in full.search("c", [query])[0]]
            assert got == want
    gone = {h.id for q in vectors[50:100] for h in extended.search("c", [Query(vector=q)])[0]}
    assert not gone & {f"i{i}" for i in range(50, 100)}
    extended.close()
    full.close()


def test_each_build_raises_the_beam_width_until_the_recall_target_is_met(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path, exact_below=0)
    vectors = np.random.default_rng(8).normal(size=(3000, 32)).astype(np.float32)
    for name, target in (("tuned", 0.97), ("fixed", 0.0)):
        index = IndexParams(m=4, ef_construction=16, ef_search=8, recall_target=target)
        store.create_collection(CollectionSpec(name=name, dim=32, index=index))
        store.upsert(name, [Item(id=str(i), vector=v) for i, v in enumerate(vectors)])
        store.optimize(name)
    tuned, fixed = store.index_state("tuned"), store.index_state("fixed")
    assert fixed.ef_search == 8 and fixed.recall_estimate is None
    assert tuned.ef_search is not None and tuned.ef_search > 8
    assert tuned.recall_estimate is not None and tuned.recall_estimate >= 0.97
    # what the build measured holds for other queries too: searches use the raised width
    queries = np.random.default_rng(9).normal(size=(50, 32)).astype(np.float32)
    found = 0
    for q in queries:
        truth = {h.id for h in store.search("tuned", [Query(vector=q, k=10, exact=True)])[0]}
        found += len(truth & {h.id for h in store.search("tuned", [Query(vector=q, k=10)])[0]})
    assert found >= 0.9 * 500
    store.close()


def test_deletes_past_the_compact_ratio_build_the_index_again_without_them(
    tmp_path: Path,
) -> None:
    store = EmbeddedStore(tmp_path, exact_below=0, snapshot_tail=10_000, compact_ratio=0.25)
    store.create_collection(CollectionSpec(name="c", dim=16))
    vectors = fill(store, 400)
    store.optimize("c")
    before = sum(p.stat().st_size for p in (tmp_path / "index").rglob("hnsw-*.faiss"))
    store.delete_items("c", [f"i{i}" for i in range(0, 400, 3)])  # 134 of 400: past 25%
    store.search("c", [Query(vector=vectors[1])])  # sees the tombstones: starts a build
    deadline = time.monotonic() + 60
    while store._sync("c").snapshot_seq != store.get_collection("c").version:
        assert time.monotonic() < deadline, "no compaction"
        time.sleep(0.05)
    view = store._sync("c")
    assert view.snapshot is not None and view.snapshot.size == 266 and not view.dead.size
    assert store.index_state("c").last_build_extended is False
    after = next((tmp_path / "index").rglob(f"hnsw-{view.snapshot_seq}.faiss")).stat().st_size
    assert after < before
    assert store.search("c", [Query(vector=vectors[3], k=1)])[0][0].id != "i3"
    assert store.search("c", [Query(vector=vectors[4], k=1)])[0][0].id == "i4"
    store.close()


def test_a_compaction_gives_the_deleted_items_disk_space_back(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path, exact_below=0, compact_ratio=0.25)
    store.create_collection(CollectionSpec(name="c", dim=256))
    vectors = fill(store, 3000, dim=256)
    store.optimize("c")

    def disk() -> int:
        store.db._writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return (tmp_path / "spyglass.db").stat().st_size

    before = disk()
    store.delete_items("c", [f"i{i}" for i in range(2000)])
    assert disk() == before  # SQLite keeps the pages, free, until the compaction
    store.optimize("c")
    assert store.index_state("c").last_build_extended is False
    assert disk() < 0.5 * before
    assert store.search("c", [Query(vector=vectors[2500], k=1)])[0][0].id == "i2500"
    assert store.db._writer.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    store.close()


BUILD_AND_DIE = """
import sys
from pathlib import Path
import numpy as np
from spyglass.stores.base import CollectionSpec, IndexParams, Item
from spyglass.stores.embedded import EmbeddedStore
store = EmbeddedStore(Path(sys.argv[1]), exact_below=0)
store.create_collection(CollectionSpec(name="c", dim=64, index=IndexParams(ef_construction=400)))
vectors = np.random.default_rng(1).normal(size=(30_000, 64)).astype(np.float32)
store.upsert("c", [Item(id=f"i{i}", vector=v) for i, v in enumerate(vectors)])
print("written", flush=True)
store.optimize("c")
print("built", flush=True)
"""


def building(script: str, data_dir: Path, ready: str) -> subprocess.Popen[str]:
    """``script`` running on ``data_dir``, once it printed ``ready`` and a build began."""
    worker = subprocess.Popen(
        [sys.executable, "-c", script, str(data_dir)], stdout=subprocess.PIPE, text=True
    )
    assert worker.stdout is not None and worker.stdout.readline() == ready + "\n"
    deadline = time.monotonic() + 120
    while not list((data_dir / "index").rglob(".records-*.tmp")):  # the build has begun
        assert worker.poll() is None, "the build ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    return worker


def kill(worker: subprocess.Popen[str]) -> None:
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    assert worker.stdout is not None
    worker.stdout.close()


def test_a_build_killed_midway_leaves_a_store_that_builds_again(tmp_path: Path) -> None:
    worker = building(BUILD_AND_DIE, tmp_path, "written")
    store = EmbeddedStore(tmp_path, exact_below=0)
    state = store.index_state("c")  # another process sees the build run
    assert state.building and state.build_to_add == 30_000 and state.build_started is not None
    assert (state.indexed, state.tail) == (0, 30_000)
    kill(worker)
    assert not store.index_state("c").building  # its process is gone
    assert store.get_collection("c").count == 30_000  # every acknowledged write is there
    vector = np.random.default_rng(1).normal(size=(30_000, 64)).astype(np.float32)[7]
    assert store.search("c", [Query(vector=vector, k=1)])[0][0].id == "i7"  # from the tail
    store.optimize("c")
    assert store.search("c", [Query(vector=vector, k=1)])[0][0].id == "i7"
    assert not [p for p in (tmp_path / "index").rglob("*.tmp")], "the killed build's files stay"
    state = store.index_state("c")
    assert (state.indexed, state.tail, state.building) == (30_000, 0, False)
    assert state.last_build_extended is False and state.last_build_s is not None
    store.close()


COMPACT_AND_DIE = """
import sys
from pathlib import Path
import numpy as np
from spyglass.stores.base import CollectionSpec, IndexParams, Item
from spyglass.stores.embedded import EmbeddedStore
store = EmbeddedStore(Path(sys.argv[1]), exact_below=0, snapshot_tail=10**9)
index = IndexParams(ef_construction=400, quantization="sq8")
store.create_collection(CollectionSpec(name="c", dim=64, index=index))
vectors = np.random.default_rng(1).normal(size=(20_000, 64)).astype(np.float32)
store.upsert("c", [Item(id=f"i{i}", vector=v) for i, v in enumerate(vectors)])
store.optimize("c")
store.delete_items("c", [f"i{i}" for i in range(0, 20_000, 2)])
print("deleted", flush=True)
store.optimize("c")
print("compacted", flush=True)
"""


def test_a_compaction_killed_midway_leaves_the_old_index_serving(tmp_path: Path) -> None:
    kill(building(COMPACT_AND_DIE, tmp_path, "deleted"))  # killed while it compacts
    store = EmbeddedStore(tmp_path, exact_below=0, snapshot_tail=10**9)
    state = store.index_state("c")  # which starts the compaction again, in the background
    assert (state.indexed, state.deleted) == (10_000, 10_000)
    assert store.get_collection("c").count == 10_000
    vectors = np.random.default_rng(1).normal(size=(20_000, 64)).astype(np.float32)
    assert store.search("c", [Query(vector=vectors[2], k=1)])[0][0].id != "i2"  # masked
    assert store.search("c", [Query(vector=vectors[3], k=1)])[0][0].id == "i3"
    store.optimize("c")
    state = store.index_state("c")
    assert (state.indexed, state.deleted, state.last_build_extended) == (10_000, 0, False)
    assert store.search("c", [Query(vector=vectors[3], k=1)])[0][0].id == "i3"
    assert not [p for p in (tmp_path / "index").rglob("*.tmp")]
    store.close()


def test_a_quantized_snapshot_filters_masks_and_rescores(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path, exact_below=0, snapshot_tail=10**9)
    vectors = np.random.default_rng(3).normal(size=(3000, 32)).astype(np.float32)
    for name, rescore in (("exact", True), ("coded", False)):
        index = IndexParams(quantization="sq8", rescore=rescore)
        store.create_collection(CollectionSpec(name=name, dim=32, metric="l2", index=index))
        store.upsert(
            name,
            [Item(id=str(i), vector=v, payload={"g": i % 7}) for i, v in enumerate(vectors)],
        )
        store.optimize(name)
        store.delete_items(name, [str(i) for i in range(0, 3000, 5)])
    query = vectors[11] + 0.01
    for exact in (False, True):
        shown = filters.parse({"g": 4})  # 429 items, 343 left: past brute force, HNSW filtered
        hits = store.search("exact", [Query(vector=query, k=30, filter=shown, exact=exact)])[0]
        assert len(hits) == 30
        assert all(h.payload["g"] == 4 and int(h.id) % 5 for h in hits)
        for hit in hits:  # re-scored: the exact distance
            assert abs(hit.score + np.linalg.norm(vectors[int(hit.id)] - query)) < 1e-4
    coded = store.search("coded", [Query(vector=query, k=30)])[0]
    assert all(int(h.id) % 5 for h in coded)
    errors = [abs(h.score + np.linalg.norm(vectors[int(h.id)] - query)) for h in coded]
    assert 0 < max(errors) < 0.5  # without re-scoring: the 8-bit codes' distances
    store.close()
