"""API keys in PostgreSQL, shared by every Spyglass instance that uses the same database.

Always read from the primary: a key just revoked must not keep working on a
lagging replica. Every change draws from the ``spyglass_keys_version`` sequence;
workers compare its value with what they loaded, asking at most once per
``recheck_s``, so a revocation takes effect everywhere within about a second
without a query per request.
"""

from __future__ import annotations

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

RECHECK_S = 1.0
COLUMNS = "id, tenant, scopes, label, created_at, revoked_at"


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
        self._lock = threading.Lock()
        self._version = 0
        self._checked = 0.0

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
            conn.execute("SELECT nextval('spyglass_keys_version')")
            conn.execute(
                "INSERT INTO spyglass_keys (id, hash, tenant, scopes, label, created_at)"
                " VALUES (%s, %s, %s, %s, %s, %s)",
                (info.id, digest, info.tenant, ",".join(info.scopes), info.label, info.created_at),
            )
        self._checked = 0.0

    def list(self, include_revoked: bool = False) -> list[KeyInfo]:
        where = "" if include_revoked else " WHERE revoked_at IS NULL"
        with self._transaction() as conn:
            rows = conn.execute(
                f"SELECT {COLUMNS} FROM spyglass_keys{where} ORDER BY created_at, id"
            ).fetchall()
        return [key_info(row) for row in rows]

    def revoke(self, key_id: str) -> KeyInfo:
        with self._transaction() as conn:
            conn.execute("SELECT nextval('spyglass_keys_version')")
            conn.execute(
                "UPDATE spyglass_keys SET revoked_at = %s WHERE id = %s AND revoked_at IS NULL",
                (time.time(), key_id),
            )
            row = conn.execute(
                f"SELECT {COLUMNS} FROM spyglass_keys WHERE id = %s", (key_id,)
            ).fetchone()
        self._checked = 0.0
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
        now = time.monotonic()
        with self._lock:
            if now - self._checked < self.recheck_s:
                return self._version
        with self._transaction() as conn:
            row = conn.execute(
                "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM spyglass_keys_version"
            ).fetchone()
        with self._lock:
            self._version, self._checked = int(row[0]) if row else 0, now
            return self._version

    def close(self) -> None:
        self.pool.close()
