"""The SQLite database of the embedded store: connections, transactions, schema.

SQLite in WAL mode is the source of truth. In ``items`` the vector is the last
column, so that reading an item's id and payload never walks the vector's
overflow pages. Readers never block the writer and
see a consistent snapshot inside a transaction; one writer at a time, across
every worker process, takes the lock with ``BEGIN IMMEDIATE`` and waits for it
up to ``busy_timeout``. ``synchronous=FULL`` makes a commit durable before it
returns, so an acknowledged write survives kill -9 and power loss.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from spyglass.errors import Unavailable

log = logging.getLogger(__name__)

BUSY_TIMEOUT_S = 30.0
AUTOCHECKPOINT_PAGES = 1000  # SQLite's default: copy the WAL into the file every ~4 MB
#: Reads go through the OS page cache, shared by every worker, instead of each
#: connection's private page cache (a third faster for payload lookups).
MMAP_BYTES = 1 << 30

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
    INSERT OR IGNORE INTO meta (key, value) VALUES ('seq', 0);
    CREATE TABLE IF NOT EXISTS collections (
        cid INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL UNIQUE,
        dim INTEGER NOT NULL,
        metric TEXT NOT NULL,
        encoder TEXT NOT NULL,
        m INTEGER NOT NULL,
        ef_construction INTEGER NOT NULL,
        ef_search INTEGER NOT NULL,
        created_at REAL NOT NULL,
        version INTEGER NOT NULL,
        count INTEGER NOT NULL DEFAULT 0,
        snapshot_seq INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE IF NOT EXISTS items (
        label INTEGER PRIMARY KEY AUTOINCREMENT,
        cid INTEGER NOT NULL,
        id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        payload TEXT NOT NULL,
        text TEXT,
        vector BLOB NOT NULL,
        UNIQUE (cid, id)
    );
    CREATE INDEX IF NOT EXISTS items_by_seq ON items (cid, seq);
    CREATE TABLE IF NOT EXISTS tombstones (
        cid INTEGER NOT NULL,
        label INTEGER NOT NULL,
        seq INTEGER NOT NULL
    );
    CREATE INDEX IF NOT EXISTS tombstones_by_seq ON tombstones (cid, seq);
    """,
    # snapshot_gen changes with every snapshot built, even one rebuilt at the same seq
    # (a damaged snapshot repaired), so that every worker reloads it.
    """
    ALTER TABLE collections ADD COLUMN snapshot_gen INTEGER NOT NULL DEFAULT 0;
    """,
    # encoder-specific options of a collection, as a JSON object
    """
    ALTER TABLE collections ADD COLUMN options TEXT NOT NULL DEFAULT '{}';
    """,
    # the files items were made from (images), apart so reading items never walks them
    """
    CREATE TABLE IF NOT EXISTS files (
        cid INTEGER NOT NULL,
        id TEXT NOT NULL,
        media_type TEXT NOT NULL,
        data BLOB NOT NULL,
        PRIMARY KEY (cid, id)
    );
    """,
    # how the index stores vectors (quantization) and re-scores its candidates, and the
    # beam width the last build found the recall target at
    """
    ALTER TABLE collections ADD COLUMN quantization TEXT NOT NULL DEFAULT 'none';
    ALTER TABLE collections ADD COLUMN rescore INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE collections ADD COLUMN oversample REAL NOT NULL DEFAULT 1.0;
    ALTER TABLE collections ADD COLUMN recall_target REAL NOT NULL DEFAULT 0.95;
    ALTER TABLE collections ADD COLUMN snapshot_ef INTEGER NOT NULL DEFAULT 0;
    """,
)


VACUUM_STEP_PAGES = 2048
"""Free pages handed back per write transaction (8 MB at SQLite's 4 KiB pages)."""


class Database:
    """A SQLite file with one connection per thread for reads and one shared writer.

    ``migrations`` are the schema's versions in order (the store's by default);
    the file's ``user_version`` records how many have run.
    """

    def __init__(self, path: Path, migrations: tuple[str, ...] = MIGRATIONS) -> None:
        self.path = path
        self.migrations = migrations
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._writer = self._connect()
        self._migrate()

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self.path,
                timeout=BUSY_TIMEOUT_S,
                isolation_level=None,
                check_same_thread=False,
            )
            # Before anything else: a new file then frees pages (give_back); no effect on
            # a file that has tables already.
            conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute(f"PRAGMA mmap_size={MMAP_BYTES}")
        except sqlite3.Error as exc:
            raise Unavailable(f"cannot open the database {self.path}: {exc}") from exc
        with self._connections_lock:
            self._connections.append(conn)
        return conn

    def give_back(self, step_pages: int = VACUUM_STEP_PAGES) -> int:
        """Hand the file's free pages back to the file system, ``step_pages`` per write
        transaction so that writers wait at most one step; returns the pages freed.
        Only a database made with ``auto_vacuum=INCREMENTAL`` (every one this class
        made) can shrink; an older file keeps its free pages for its next writes."""
        freed = 0
        while True:
            with self._write_lock:
                conn = self._writer
                free = conn.execute("PRAGMA freelist_count").fetchone()[0]
                if free == 0 or conn.execute("PRAGMA auto_vacuum").fetchone()[0] != 2:
                    return freed
                # executescript steps the pragma to the end; execute() frees one page
                conn.executescript(f"PRAGMA incremental_vacuum({step_pages});")
                freed += free - conn.execute("PRAGMA freelist_count").fetchone()[0]

    def _migrate(self) -> None:
        with self.write() as conn:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            for number, script in enumerate(self.migrations[version:], start=version + 1):
                for statement in script.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version={number}")

    def reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
        return conn

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: every query inside sees the same committed state."""
        conn = self.reader()
        try:
            conn.execute("BEGIN")
            try:
                yield conn
            finally:
                conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            raise Unavailable(f"database read failed: {exc}") from exc

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction holding the database's write lock; commits durably on exit."""
        with self._write_lock:
            conn = self._writer
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise Unavailable(f"database is busy: {exc}") from exc
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            try:
                conn.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                raise Unavailable(f"database commit failed: {exc}") from exc

    @contextmanager
    def deferred_checkpoints(self) -> Iterator[None]:
        """Commits in the block append to the WAL only; the pages are copied into the
        database file afterwards, in a thread, beside whatever the caller does next.

        Each commit stays durable (the WAL is synced); a bulk load just stops paying
        for a checkpoint every ~4 MB while it writes, which halves its disk writes.
        """
        with self._write_lock:
            self._writer.execute("PRAGMA wal_autocheckpoint=0")
        try:
            yield
        finally:
            with self._write_lock:
                self._writer.execute(f"PRAGMA wal_autocheckpoint={AUTOCHECKPOINT_PAGES}")
            threading.Thread(target=self._checkpoint, name="spyglass-checkpoint").start()

    def _checkpoint(self) -> None:
        try:
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
            try:
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            finally:
                conn.close()
        except sqlite3.Error as exc:  # the next automatic checkpoint will do it
            log.warning("checkpoint of %s failed: %s", self.path, exc)

    def close(self) -> None:
        with self._connections_lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
