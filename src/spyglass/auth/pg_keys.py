"""API keys in PostgreSQL, shared by every Spyglass instance that uses the same database.

Always read from the primary: a key just revoked must not keep working on a
lagging replica. Every change bumps ``spyglass_keys_version`` in its own
transaction, so the new number is seen only with the change itself. A thread
per worker reads that number every ``recheck_s`` and the request path only
compares it with what the worker loaded: a revocation takes effect everywhere
within about a second, and no request waits on the database to learn it (when
the primary is down, the last keys read keep working).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from spyglass.auth.keys import KeyInfo, KeyStore, Principal, active_keys, key_info
from spyglass.errors import ConfigError, NotFound, Unavailable
from spyglass.stores.pg_pools import DRIVER_ERRORS, connection_options
from spyglass.stores.pg_schema import migrate

log = logging.getLogger(__name__)

RECHECK_S = 1.0
COLUMNS = "id, tenant, scopes, label, created_at, revoked_at"
BUMP = "UPDATE spyglass_keys_version SET version = version + 1"


class PostgresKeyStore(KeyStore):
    """The keys in the ``spyglass_keys`` table of the store's database."""

    def __init__(self, url: str, *, timeout_s: float = 5.0, recheck_s: float = RECHECK_S) -> None:
        options = connection_options(timeout_s, 30.0)
        try:
            with psycopg.connect(url, **options) as conn:
                migrate(conn)
        except DRIVER_ERRORS as exc:
            raise ConfigError(f"cannot use the PostgreSQL store for keys: {exc}") from exc
        self.pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            url,
            min_size=1,
            max_size=2,
            timeout=timeout_s,
            kwargs={**options, "application_name": "spyglass-keys"},
            check=ConnectionPool.check_connection,
            name="spyglass-keys",
            open=True,
        )
        self.recheck_s = recheck_s
        self._closed = threading.Event()
        self._version = 0
        self._watcher: threading.Thread | None = None
        if recheck_s > 0:
            self._read_version()
            self._watcher = threading.Thread(target=self._watch, name="spyglass-keys", daemon=True)
            self._watcher.start()

    @contextmanager
    def _transaction(self) -> Iterator[psycopg.Connection[Any]]:
        try:
            with self.pool.connection() as conn, conn.transaction():
                yield conn
        except DRIVER_ERRORS as exc:
            raise Unavailable(
                "cannot reach the API keys in the database", headers={"Retry-After": "1"}
            ) from exc

    def _insert(self, info: KeyInfo, digest: str) -> None:
        with self._transaction() as conn:
            conn.execute(BUMP)
            conn.execute(
                "INSERT INTO spyglass_keys (id, hash, tenant, scopes, label, created_at)"
                " VALUES (%s, %s, %s, %s, %s, %s)",
                (info.id, digest, info.tenant, ",".join(info.scopes), info.label, info.created_at),
            )

    def list(self, include_revoked: bool = False) -> list[KeyInfo]:
        where = "" if include_revoked else " WHERE revoked_at IS NULL"
        with self._transaction() as conn:
            rows = conn.execute(
                f"SELECT {COLUMNS} FROM spyglass_keys{where} ORDER BY created_at, id"
            ).fetchall()
        return [key_info(row) for row in rows]

    def revoke(self, key_id: str) -> KeyInfo:
        with self._transaction() as conn:
            conn.execute(BUMP)
            conn.execute(
                "UPDATE spyglass_keys SET revoked_at = %s WHERE id = %s AND revoked_at IS NULL",
                (time.time(), key_id),
            )
            row = conn.execute(
                f"SELECT {COLUMNS} FROM spyglass_keys WHERE id = %s", (key_id,)
            ).fetchone()
        if row is None:
            raise NotFound(f"no API key {key_id!r}", field="key_id")
        return key_info(row)

    def active(self) -> tuple[dict[str, tuple[str, Principal]], bool]:
        with self._transaction() as conn:
            rows = conn.execute(
                "SELECT id, tenant, scopes, hash FROM spyglass_keys WHERE revoked_at IS NULL"
            ).fetchall()
            ever = conn.execute("SELECT EXISTS (SELECT 1 FROM spyglass_keys)").fetchone()
        return active_keys(rows), bool(ever and ever[0])

    def data_version(self) -> int:
        if self.recheck_s <= 0:
            return self._read_version()
        return self._version

    def _read_version(self) -> int:
        with self._transaction() as conn:
            row = conn.execute("SELECT version FROM spyglass_keys_version").fetchone()
        self._version = int(row[0]) if row else 0
        return self._version

    def _watch(self) -> None:
        while not self._closed.wait(self.recheck_s):
            try:
                self._read_version()
            except Unavailable:
                log.warning("cannot read the API keys' version; the last keys read stay in force")

    def close(self) -> None:
        self._closed.set()
        if self._watcher is not None:
            self._watcher.join()
        self.pool.close()
