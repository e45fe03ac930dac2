"""The embedded store: SQLite is the truth, an mmapped HNSW snapshot is the index.

Files in ``data_dir``: ``spyglass.db`` (SQLite, WAL) and ``index/<cid>/`` (the
snapshots of collection ``cid``). Every write commits to SQLite with a new
change number (``seq``); replacing or deleting an item leaves a tombstone for
its old label. Each worker process keeps a :class:`View` per collection and
brings it up to date at the start of every search (one indexed query when
nothing changed), so a write acknowledged by any worker is seen by every
search that starts after it. When the tail of writes newer than the snapshot
passes ``snapshot_tail`` items, one process (holding a file lock) extends the
snapshot with them in a background thread (or, past ``compact_ratio`` of items
gone, builds it again without them); the others pick it up at their next search.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import faiss
import filelock
import numpy as np
import orjson

from spyglass import filters
from spyglass.errors import Conflict, NotFound
from spyglass.keywords import fts5_match
from spyglass.stores import heap
from spyglass.stores import snapshot as snapshots
from spyglass.stores.base import (
    CollectionInfo,
    CollectionSpec,
    Hit,
    IndexParams,
    IndexState,
    Item,
    KeywordQuery,
    Query,
    Store,
    StoredFile,
)
from spyglass.stores.build_file import BuildFile
from spyglass.stores.sqlite import MMAP_BYTES, Database
from spyglass.stores.view import Found, TailChunk, View

log = logging.getLogger(__name__)

#: Items that, gone from a worker's in-memory tail into a snapshot, are worth giving the
#: freed memory back to the OS for (a trim took 2.5 ms after 100 MB of churn).
BIG_TAIL = 10_000
BUILD_PAGE = 4096
"""Items read and added to an index at a time: 6 MB of 384-d vectors, a few times that
while they are decoded and normalised; what a build holds beyond its index."""
LAST_LABEL = 2**63 - 1
COLLECTION_COLUMNS = (
    "cid, name, dim, metric, encoder, m, ef_construction, ef_search, created_at, version, count,"
    " snapshot_seq, snapshot_gen, options, quantization, rescore, oversample, recall_target,"
    " snapshot_ef"
)
FILTER_CACHE_SIZE = 256


class EmbeddedStore(Store):
    """A store in one directory, shared safely by several worker processes."""

    local = True
    quantizations = ("none", "half", "sq8", "pq")

    def __init__(
        self,
        data_dir: Path,
        *,
        snapshot_tail: int = 20000,
        exact_below: int = 5000,
        compact_ratio: float = 0.2,
    ):
        self.data_dir = data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        self.db = Database(data_dir / "spyglass.db")
        self.snapshot_tail = snapshot_tail
        self.exact_below = exact_below
        self.compact_ratio = compact_ratio
        self._views: dict[str, View] = {}
        self._sync_lock = threading.Lock()
        # per reader thread: name -> (data_version, view), the view held weakly so that a
        # thread that stops searching does not keep a replaced view's tail alive
        self._seen = threading.local()
        self._infos = threading.local()  # per reader thread: name -> (data_version, info)
        self._filter_cache: OrderedDict[tuple[int, int, str], np.ndarray] = OrderedDict()
        self._filter_lock = threading.Lock()
        self._builders: dict[int, threading.Thread] = {}
        self._closed = threading.Event()
        self._add_keyword_indexes()

    def _add_keyword_indexes(self) -> None:
        """Give collections made before keyword search its full-text table, filled."""
        with self.db.read() as conn:
            cids = [cid for (cid,) in conn.execute("SELECT cid FROM collections")]
            tables = {
                row[0]
                for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            }
        if all(_fts(cid) in tables for cid in cids):
            return
        with self.db.write() as conn:
            for (cid,) in conn.execute("SELECT cid FROM collections").fetchall():
                if _fts(cid) not in tables:
                    _create_fts(conn, cid)
                    conn.execute(
                        f"INSERT INTO {_fts(cid)} (rowid, text)"
                        " SELECT label, text FROM items WHERE cid = ? AND text IS NOT NULL",
                        (cid,),
                    )

    # collections

    def create_collection(self, spec: CollectionSpec) -> tuple[CollectionInfo, bool]:
        self.check_quantization(spec)
        with self.db.write() as conn:
            row = _collection_row(conn, spec.name)
            if row is not None:
                existing = _info(row)
                if existing.spec != spec:
                    raise Conflict(
                        f"collection {spec.name!r} exists with other settings", field="name"
                    )
                return existing, False
            seq = _next_seq(conn)
            conn.execute(
                "INSERT INTO collections (name, dim, metric, encoder, m, ef_construction,"
                " ef_search, created_at, version, options, quantization, rescore, oversample,"
                " recall_target) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    spec.name,
                    spec.dim,
                    spec.metric,
                    spec.encoder,
                    spec.index.m,
                    spec.index.ef_construction,
                    spec.index.ef_search,
                    time.time(),
                    seq,
                    orjson.dumps(spec.options).decode(),
                    spec.index.quantization,
                    spec.index.rescore,
                    spec.index.oversample,
                    spec.index.recall_target,
                ),
            )
            row = _collection_row(conn, spec.name)
            assert row is not None
            _create_fts(conn, row[0])
        return _info(row), True

    def loaded(self) -> list[str]:
        return sorted(self._views.copy())  # a copy is atomic; searches add views meanwhile

    def get_collection(self, name: str) -> CollectionInfo:
        conn = self.db.reader()
        mark = conn.execute("PRAGMA data_version").fetchone()[0]
        known: dict[str, tuple[int, CollectionInfo]] = self._infos.__dict__
        cached = known.get(name)
        if cached is not None and cached[0] == mark:
            return cached[1]  # nothing committed since this thread last read it
        with self.db.read() as conn:
            info = _info(_require(conn, name))
        known[name] = (mark, info)
        return info

    def list_collections(self) -> list[CollectionInfo]:
        with self.db.read() as conn:
            rows = conn.execute(
                f"SELECT {COLLECTION_COLUMNS} FROM collections ORDER BY name"
            ).fetchall()
        return [_info(row) for row in rows]

    def delete_collection(self, name: str) -> None:
        with self.db.write() as conn:
            cid = _require(conn, name)[0]
            conn.execute("DELETE FROM items WHERE cid = ?", (cid,))
            conn.execute("DELETE FROM tombstones WHERE cid = ?", (cid,))
            conn.execute("DELETE FROM files WHERE cid = ?", (cid,))
            conn.execute("DELETE FROM collections WHERE cid = ?", (cid,))
            conn.execute(f"DROP TABLE IF EXISTS {_fts(cid)}")
        with self._sync_lock:
            self._views.pop(name, None)
        snapshots.prune(self._index_dir(cid), keep=set())

    # items

    def upsert(self, name: str, items: Sequence[Item]) -> int:
        latest = {item.id: item for item in items}
        with self.db.write() as conn:
            cid = _require(conn, name)[0]
            seq = _next_seq(conn)
            removed = _remove(conn, cid, list(latest), seq)
            conn.executemany(
                "INSERT INTO items (cid, id, vector, text, payload, seq) VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (
                        cid,
                        item.id,
                        np.ascontiguousarray(item.vector, dtype=np.float32).tobytes(),
                        item.text,
                        orjson.dumps(item.payload),
                        seq,
                    )
                    for item in latest.values()
                ],
            )
            conn.execute(
                f"INSERT INTO {_fts(cid)} (rowid, text) SELECT label, text FROM items"
                " WHERE cid = ? AND seq = ? AND text IS NOT NULL",
                (cid, seq),
            )
            conn.executemany(
                "INSERT INTO files (cid, id, media_type, data) VALUES (?, ?, ?, ?)",
                [
                    (cid, item.id, item.file.media_type, item.file.data)
                    for item in latest.values()
                    if item.file is not None
                ],
            )
            conn.execute(
                "UPDATE collections SET version = ?, count = count + ? WHERE cid = ?",
                (seq, len(latest) - removed, cid),
            )
        return seq

    def get_item(self, name: str, item_id: str) -> Item:
        with self.db.read() as conn:
            cid = _require(conn, name)[0]
            row = conn.execute(
                "SELECT id, vector, text, payload FROM items WHERE cid = ? AND id = ?",
                (cid, item_id),
            ).fetchone()
        if row is None:
            raise NotFound(f"item {item_id!r} not found in collection {name!r}", field="id")
        return Item(
            id=row[0],
            vector=np.frombuffer(row[1], dtype=np.float32),
            text=row[2],
            payload=orjson.loads(row[3]),
        )

    def get_file(self, name: str, item_id: str) -> StoredFile:
        with self.db.read() as conn:
            cid = _require(conn, name)[0]
            row = conn.execute(
                "SELECT media_type, data FROM files WHERE cid = ? AND id = ?", (cid, item_id)
            ).fetchone()
        if row is None:
            raise NotFound(f"item {item_id!r} of {name!r} has no stored file", field="id")
        return StoredFile(data=bytes(row[1]), media_type=row[0])

    def scan(self, name: str, after: str | None = None, limit: int = 1000) -> list[Item]:
        with self.db.read() as conn:
            cid = _require(conn, name)[0]
            rows = conn.execute(
                "SELECT items.id, vector, text, payload, files.media_type, files.data"
                " FROM items LEFT JOIN files ON files.cid = items.cid AND files.id = items.id"
                " WHERE items.cid = ? AND items.id > ? ORDER BY items.id LIMIT ?",
                (cid, "" if after is None else after, limit),
            ).fetchall()
        return [
            Item(
                id=row[0],
                vector=np.frombuffer(row[1], dtype=np.float32),
                text=row[2],
                payload=orjson.loads(row[3]),
                file=None if row[4] is None else StoredFile(bytes(row[5]), row[4]),
            )
            for row in rows
        ]

    def delete_items(self, name: str, ids: Sequence[str]) -> tuple[int, int]:
        with self.db.write() as conn:
            cid = _require(conn, name)[0]
            seq = _next_seq(conn)
            removed = _remove(conn, cid, list(dict.fromkeys(ids)), seq)
            conn.execute(
                "UPDATE collections SET version = ?, count = count - ? WHERE cid = ?",
                (seq, removed, cid),
            )
        return removed, seq

    # search

    def search(
        self, name: str, queries: Sequence[Query], *, min_version: int = 0
    ) -> list[list[Hit]]:
        view = self._sync(name)  # current: every write acknowledged so far, so >= min_version
        results: list[Found] = []
        small = view.size <= self.exact_below
        for query in queries:
            allowed = self._allowed(view, query.filter) if query.filter is not None else None
            vector = _prepare(view.metric, query.vector[None, :])
            exact = query.exact or small
            results.extend(view.search(vector, query.k, ef=query.ef, allowed=allowed, exact=exact))
        return self._hits(view, results, [query.vectors for query in queries])

    def keyword_search(
        self, name: str, queries: Sequence[KeywordQuery], *, min_version: int = 0
    ) -> list[list[Hit]]:
        found: list[list[Hit]] = []
        with self.db.read() as conn:  # the database itself: every acknowledged write
            fts = _fts(_require(conn, name)[0])
            for query in queries:
                if not query.terms:
                    found.append([])
                    continue
                match = fts5_match(query.terms)
                if query.filter is None:
                    ranked = (
                        f"SELECT rowid AS label, bm25({fts}) AS rank FROM {fts}"
                        f" WHERE {fts} MATCH ? ORDER BY rank LIMIT ?"
                    )
                    params: list[Any] = [match, query.k]
                else:
                    where, where_params = filters.to_sqlite(query.filter)
                    ranked = (
                        f"SELECT {fts}.rowid AS label, bm25({fts}) AS rank FROM {fts}"
                        f" JOIN items ON items.label = {fts}.rowid"
                        f" WHERE {fts} MATCH ? AND ({where}) ORDER BY rank LIMIT ?"
                    )
                    params = [match, *where_params, query.k]
                # Rank first, then read the k winners' rows, not every match's.
                rows = conn.execute(
                    f"SELECT items.id, items.text, items.payload, found.rank FROM ({ranked})"
                    " AS found JOIN items ON items.label = found.label ORDER BY found.rank",
                    params,
                ).fetchall()
                found.append([Hit(r[0], -float(r[3]), orjson.loads(r[2]), r[1]) for r in rows])
        return found

    def _allowed(self, view: View, flt: filters.Filter) -> np.ndarray:
        """Sorted labels of the items matching ``flt``, cached per collection version."""
        key = (view.cid, view.version, filters.canonical(flt))
        with self._filter_lock:
            cached = self._filter_cache.get(key)
            if cached is not None:
                self._filter_cache.move_to_end(key)
                return cached
        where, params = filters.to_sqlite(flt)
        with self.db.read() as conn:
            rows = conn.execute(
                f"SELECT label FROM items WHERE cid = ? AND seq <= ? AND ({where}) ORDER BY label",
                (view.cid, view.version, *params),
            ).fetchall()
        labels = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
        with self._filter_lock:
            self._filter_cache[key] = labels
            while len(self._filter_cache) > FILTER_CACHE_SIZE:
                self._filter_cache.popitem(last=False)
        return labels

    def _hits(self, view: View, results: list[Found], with_vectors: list[bool]) -> list[list[Hit]]:
        hits = []
        for found, vectors in zip(results, with_vectors, strict=True):
            records = view.records_of(found)
            hits.append(
                [
                    Hit(record[0], score, record[2], record[1])
                    for record, score in zip(records, found.scores.tolist(), strict=True)
                ]
            )
            if vectors and records:
                for hit, row in zip(hits[-1], view.vectors_of(found.labels), strict=True):
                    hit.vector = row
        return hits

    # keeping the view current

    def _sync(self, name: str) -> View:
        """This worker's view of ``name``, brought up to date with the database."""
        conn = self.db.reader()
        mark = conn.execute("PRAGMA data_version").fetchone()[0]
        seen: dict[str, tuple[int, weakref.ref[View]]] = self._seen.__dict__
        view = self._views.get(name)
        cached = seen.get(name)
        if cached is not None and cached[0] == mark and cached[1]() is view is not None:
            return view  # nothing committed since this thread last found ``view`` current
        current = conn.execute(
            "SELECT cid, version, snapshot_gen FROM collections WHERE name = ?", (name,)
        ).fetchone()
        if view is not None and current == (view.cid, view.version, view.indexed_gen):
            seen[name] = (mark, weakref.ref(view))
            return view
        with self._sync_lock:
            view = self._views.get(name)
            with self.db.read() as conn:
                row = _require(conn, name)
                cid, version, gen = row[0], row[9], row[12]
                if view is not None and (cid, version, gen) == (
                    view.cid,
                    view.version,
                    view.indexed_gen,
                ):
                    return view
                replaced = view
                if view is None or view.cid != cid or view.indexed_gen != gen:
                    view = self._load(conn, row)
                else:
                    view = _advance(conn, view, version)
            self._views[name] = view
        if replaced is not None and replaced.tail_size > view.tail_size + BIG_TAIL:
            del replaced
            heap.give_back()  # a big tail went into the snapshot: free its memory
        if (
            view.tail_size > self.snapshot_tail
            or (view.snapshot is None and view.size > self.exact_below)
            or (
                view.snapshot is not None
                and len(view.dead) > self.compact_ratio * view.snapshot.size
            )
        ):
            self._start_builder(name, view.cid)
        return view

    def _load(self, conn: sqlite3.Connection, row: tuple[Any, ...]) -> View:
        cid, dim, metric, version, snapshot_seq = row[0], row[2], row[3], row[9], row[11]
        snap: snapshots.Snapshot | None = None
        if snapshot_seq:
            try:
                snap = snapshots.Snapshot.open(self._index_dir(cid), snapshot_seq)
            except (OSError, RuntimeError, ValueError) as exc:
                log.warning("snapshot %s of collection %s unreadable (%s)", snapshot_seq, cid, exc)
        empty = View(
            cid=cid,
            version=snap.seq if snap else 0,
            indexed_gen=row[12],
            dim=dim,
            metric=metric,
            ef_search=row[18] or row[7],
            oversample=_params(row).rescored,
            snapshot=snap,
            dead=snap.dead if snap is not None else snapshots.NO_POSITIONS,
            tail=(),
        )
        return _advance(conn, empty, version)

    def _index_dir(self, cid: int) -> Path:
        return self.data_dir / "index" / str(cid)

    def _start_builder(self, name: str, cid: int) -> None:
        with self._sync_lock:
            running = self._builders.get(cid)
            if running is not None and running.is_alive() or self._closed.is_set():
                return
            thread = threading.Thread(
                target=self._build_quietly, args=(name, False), name=f"snapshot-{cid}", daemon=True
            )
            self._builders[cid] = thread
            thread.start()

    def _build_quietly(self, name: str, wait: bool) -> None:
        try:
            self.build_snapshot(name, wait=wait)
        except NotFound:
            pass
        except Exception:
            log.exception("building the snapshot of %s failed", name)

    def warm(self, name: str) -> None:
        self._sync(name)

    def bulk(self) -> AbstractContextManager[None]:
        return self.db.deferred_checkpoints()

    def optimize(self, name: str) -> None:
        self.build_snapshot(name, wait=True)

    def build_snapshot(self, name: str, *, wait: bool) -> bool:
        """Build a snapshot of ``name`` as of now; False if another process holds the lock.

        The previous snapshot is extended with the items written since (the work is
        that of the new items, not of the collection, but for copying a quantized
        snapshot's exact vectors and, for ``pq``, encoding them to ``sq8`` again: about
        a second per million items each) unless there is none, it cannot be read, or
        the items gone since it was built passed ``compact_ratio`` of it: then the whole
        collection is indexed again, without them.
        """
        with self.db.read() as conn:
            cid = _require(conn, name)[0]
        directory = self._index_dir(cid)
        directory.mkdir(parents=True, exist_ok=True)
        lock = filelock.FileLock(str(directory / "build.lock"))
        try:
            lock.acquire(timeout=-1 if wait else 0)
        except filelock.Timeout:
            return False
        try:
            with self.db.read() as conn:
                row = _require(conn, name)
                if row[0] != cid:
                    return False
                version, old_seq, metric, dim = row[9], row[11], row[3], row[2]
                params = _params(row)
                if old_seq == version and _complete(directory, version, params):
                    return True
                base, dead, kept = self._extendable(conn, directory, row, params)
                adding = conn.execute(
                    "SELECT count(*) FROM items WHERE cid = ? AND seq > ? AND seq <= ?",
                    (cid, base or 0, version),
                ).fetchone()[0]
            started = time.perf_counter()
            progress = BuildFile(directory)
            progress.begin(extending=base is not None, to_add=adding)
            pages = self._pages(cid, metric, dim, after=base or 0, upto=version)
            ef, recall = params.ef_search, None
            try:
                size = snapshots.build(
                    directory,
                    version,
                    metric,
                    params,
                    dim,
                    progress.counted(pages),
                    base=base,
                    dead=dead,
                    expected=kept + adding,
                    train=lambda: self._sample(cid, metric, dim, version, snapshots.TRAIN_SIZE),
                )
                if params.recall_target > 0:
                    built = snapshots.Snapshot.open(directory, version)
                    ef, recall = snapshots.tune(
                        built, params.ef_search, params.rescored, params.recall_target
                    )
                    del built
            except BaseException:
                progress.abandon()
                raise
            # Reading the rows mapped them into this worker: unmap them (the next reads
            # map again only the pages they touch).
            conn = self.db.reader()
            conn.execute("PRAGMA mmap_size=0")
            conn.execute(f"PRAGMA mmap_size={MMAP_BYTES}")
            seconds = time.perf_counter() - started
            with self.db.write() as conn:
                updated = conn.execute(
                    "UPDATE collections SET snapshot_seq = ?, snapshot_gen = snapshot_gen + 1,"
                    " snapshot_ef = ? WHERE cid = ? AND snapshot_seq <= ?",
                    (version, ef, cid, version),
                ).rowcount
                if updated:
                    conn.execute(
                        "DELETE FROM tombstones WHERE cid = ? AND seq <= ?", (cid, version)
                    )
            snapshots.prune(directory, keep={version, old_seq})
            progress.end(seconds, ef=ef, recall=recall)
            if base is None:
                self.db.give_back()  # after a compaction, the deleted rows' pages too
            log.info(
                "%s the index of %s: %d items, %d gone, in %.1f s",
                "extended" if base is not None else "built",
                name,
                size,
                len(dead),
                seconds,
            )
            with self._sync_lock:  # its tail is in the snapshot now: read it from there
                self._views.pop(name, None)
            heap.give_back()
            return True
        finally:
            lock.release()

    def index_state(self, name: str) -> IndexState:
        view = self._sync(name)
        snapshot = view.snapshot
        build = BuildFile(self._index_dir(view.cid)).read()
        return IndexState(
            indexed=(snapshot.size if snapshot is not None else 0) - len(view.dead),
            tail=view.tail_size,
            deleted=len(view.dead),
            ef_search=view.ef_search,
            **build,
        )

    def _extendable(
        self, conn: sqlite3.Connection, directory: Path, row: tuple[Any, ...], params: IndexParams
    ) -> tuple[int | None, np.ndarray, int]:
        """The snapshot to extend (None: build from scratch), the positions of the new
        snapshot whose items are gone, and how many items it keeps of the old one.

        A quantized snapshot whose codes were learnt from a sample much smaller than
        the collection has become is built again too, so that they are learnt anew."""
        cid, version, count, old_seq = row[0], row[9], row[10], row[11]
        scratch = None, snapshots.NO_POSITIONS, 0
        if not old_seq or not _complete(directory, old_seq, params):
            return scratch
        try:
            old = snapshots.Snapshot.open(directory, old_seq)
        except (OSError, RuntimeError, ValueError) as exc:
            log.warning("snapshot %s of collection %s unreadable (%s)", old_seq, cid, exc)
            return scratch
        gone = conn.execute(
            "SELECT label FROM tombstones WHERE cid = ? AND seq > ? AND seq <= ?",
            (cid, old_seq, version),
        ).fetchall()
        gone_labels = np.unique(np.fromiter((r[0] for r in gone), dtype=np.int64, count=len(gone)))
        dead = np.union1d(old.dead, old.positions(gone_labels))
        if old.size == 0 or len(dead) > self.compact_ratio * old.size:
            return scratch
        learnt = params.quantization in snapshots.TRAINED
        if learnt and old.size < snapshots.TRAIN_SIZE and count > 4 * old.size:
            return scratch
        return old_seq, dead, old.size

    def _sample(self, cid: int, metric: str, dim: int, upto: int, size: int) -> np.ndarray:
        """Up to ``size`` vectors of the collection as of change ``upto``, drawn at random,
        for a quantizer to learn from (the first items alone may all be alike)."""
        with self.db.read() as conn:
            labels = np.fromiter(
                (
                    r[0]
                    for r in conn.execute(
                        "SELECT label FROM items INDEXED BY items_by_seq"
                        " WHERE cid = ? AND seq <= ?",
                        (cid, upto),
                    )
                ),
                dtype=np.int64,
            )
            if len(labels) > size:
                labels = np.random.default_rng(upto).choice(labels, size, replace=False)
            rows: list[Any] = []
            for start in range(0, len(labels), 500):
                part = labels[start : start + 500].tolist()
                rows += conn.execute(
                    f"SELECT vector FROM items WHERE label IN ({','.join('?' * len(part))})", part
                ).fetchall()
        return _prepare(metric, _decode(rows, dim))

    def _pages(
        self, cid: int, metric: str, dim: int, *, after: int, upto: int
    ) -> Iterator[snapshots.Page]:
        """The live items written after change ``after`` up to ``upto``, by label, a page
        at a time, each page read in its own short transaction.

        Items are read in change order, which is label order too (both only grow, and
        a write takes its labels under the write lock that gives it its change). An
        item deleted between two pages is missed, as it should be: the snapshot is as
        of ``upto``, and the tombstone, newer than ``upto``, removes it from every view
        anyway. A newer item is left for the tail (``seq <= upto``).
        """
        seq, label = after, LAST_LABEL
        while True:
            with self.db.read() as conn:
                rows = conn.execute(
                    "SELECT seq, label, id, text, payload, vector FROM items"
                    " INDEXED BY items_by_seq WHERE cid = ? AND seq <= ? AND (seq, label) > (?, ?)"
                    " ORDER BY seq, label LIMIT ?",
                    (cid, upto, seq, label, BUILD_PAGE),
                ).fetchall()
            if not rows:
                return
            seq, label = rows[-1][0], rows[-1][1]
            labels = np.fromiter((r[1] for r in rows), dtype=np.int64, count=len(rows))
            records = [orjson.dumps([r[2], r[3], orjson.Fragment(r[4])]) for r in rows]
            vectors = _prepare(metric, _decode(rows, dim))
            del rows
            yield labels, vectors, records

    def check(self) -> None:
        with self.db.read() as conn:
            conn.execute("SELECT 1").fetchone()

    def close(self) -> None:
        self._closed.set()
        for thread in list(self._builders.values()):
            thread.join()
        self.db.close()


def _complete(directory: Path, seq: int, params: IndexParams) -> bool:
    """Whether every file of snapshot ``seq`` is there."""
    names = [*snapshots.file_names(seq)]
    if params.quantization != "none":
        names.append(snapshots.vectors_name(seq))
    return all((directory / name).exists() for name in names)


def _advance(conn: sqlite3.Connection, view: View, version: int) -> View:
    """``view`` brought from its version to ``version`` with the rows written in between."""
    rows = conn.execute(
        "SELECT label, id, text, payload, vector FROM items"
        " WHERE cid = ? AND seq > ? AND seq <= ? ORDER BY label",
        (view.cid, view.version, version),
    ).fetchall()
    gone = conn.execute(
        "SELECT label FROM tombstones WHERE cid = ? AND seq > ? AND seq <= ?",
        (view.cid, view.version, version),
    ).fetchall()
    labels = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    vectors = _prepare(view.metric, _decode(rows, view.dim))
    records = {r[0]: (r[1], r[2], orjson.loads(r[3])) for r in rows}
    gone_labels = np.unique(np.fromiter((r[0] for r in gone), dtype=np.int64, count=len(gone)))
    return view.advance(version, TailChunk(labels, vectors, records), gone_labels)


def _decode(rows: list[Any], dim: int) -> np.ndarray:
    if not rows:
        return np.empty((0, dim), dtype=np.float32)
    return np.frombuffer(b"".join(r[-1] for r in rows), dtype=np.float32).reshape(len(rows), dim)


def _prepare(metric: str, vectors: np.ndarray) -> np.ndarray:
    """Vectors as the index holds them: float32, unit length for cosine (a zero row stays 0)."""
    if metric != "cosine":
        return np.ascontiguousarray(vectors, dtype=np.float32)
    vectors = np.array(vectors, dtype=np.float32, order="C")  # a copy, normalised in place
    faiss.normalize_L2(vectors)
    return vectors


def _next_seq(conn: sqlite3.Connection) -> int:
    row = conn.execute("UPDATE meta SET value = value + 1 WHERE key = 'seq' RETURNING value")
    return int(row.fetchone()[0])


def _remove(conn: sqlite3.Connection, cid: int, ids: list[str], seq: int) -> int:
    """Delete items by id, with their files, leaving tombstones for their labels; how many
    existed."""
    removed = 0
    for start in range(0, len(ids), 500):
        part = ids[start : start + 500]
        marks = ",".join("?" * len(part))
        conn.execute(f"DELETE FROM files WHERE cid = ? AND id IN ({marks})", (cid, *part))
        labels = conn.execute(
            f"DELETE FROM items WHERE cid = ? AND id IN ({marks}) RETURNING label", (cid, *part)
        ).fetchall()
        if labels:
            conn.execute(
                f"DELETE FROM {_fts(cid)} WHERE rowid IN ({','.join('?' * len(labels))})",
                [label for (label,) in labels],
            )
        conn.executemany(
            "INSERT INTO tombstones (cid, label, seq) VALUES (?, ?, ?)",
            [(cid, label, seq) for (label,) in labels],
        )
        removed += len(labels)
    return removed


def _fts(cid: int) -> str:
    """The full-text table of collection ``cid``: BM25 over its items' texts, by label."""
    return f"fts_{int(cid)}"


def _create_fts(conn: sqlite3.Connection, cid: int) -> None:
    conn.execute(
        f"CREATE VIRTUAL TABLE IF NOT EXISTS {_fts(cid)}"
        " USING fts5(text, tokenize = 'porter unicode61 remove_diacritics 2')"
    )


def _collection_row(conn: sqlite3.Connection, name: str) -> tuple[Any, ...] | None:
    row: tuple[Any, ...] | None = conn.execute(
        f"SELECT {COLLECTION_COLUMNS} FROM collections WHERE name = ?", (name,)
    ).fetchone()
    return row


def _require(conn: sqlite3.Connection, name: str) -> tuple[Any, ...]:
    row = _collection_row(conn, name)
    if row is None:
        raise NotFound(f"collection {name!r} not found", field="name")
    return row


def _params(row: tuple[Any, ...]) -> IndexParams:
    return IndexParams(
        m=row[5],
        ef_construction=row[6],
        ef_search=row[7],
        quantization=row[14],
        rescore=bool(row[15]),
        oversample=row[16],
        recall_target=row[17],
    )


def _info(row: tuple[Any, ...]) -> CollectionInfo:
    spec = CollectionSpec(
        name=row[1],
        dim=row[2],
        metric=row[3],
        encoder=row[4],
        index=_params(row),
        options=orjson.loads(row[13]),
    )
    return CollectionInfo(spec=spec, count=row[10], version=row[9], created_at=row[8])
