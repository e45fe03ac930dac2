"""API keys: created, listed and revoked by operators, stored hashed, checked per request.

A key reads ``sg_<id>_<secret>``. The id (12 hex digits) names the key in
lists, in ``keys revoke`` and to the rate limiter; it is not a secret. The
secret is 256 random bits, shown once when the key is created; only the SHA-256
of the whole key is stored. A fast hash is right for a random 256-bit secret
(there is no dictionary to try), and it keeps the check per request to a
microsecond.

Keys live next to the collections: in ``keys.db`` in the data directory, a
SQLite file every worker reads, or in PostgreSQL when that is the store, so
every instance shares them. :class:`KeyRing` is a worker's in-memory copy,
reloaded when the store's ``data_version`` changes, so a key created or revoked
by the CLI or an admin route counts on every worker at its next request (on
PostgreSQL, within a second).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from spyglass.errors import InvalidRequest, NotFound, Unavailable
from spyglass.settings import Settings
from spyglass.stores.sqlite import Database

READ: Final = "read"
WRITE: Final = "write"
ADMIN: Final = "admin"
SCOPES: Final = (READ, WRITE, ADMIN)

#: The tenant whose collections have plain names; open servers and the bootstrap key use it.
DEFAULT_TENANT: Final = "default"
TENANT_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
BOOTSTRAP_KEY_ID: Final = "bootstrap"
KEYS_FILE: Final = "keys.db"

_KEY_PATTERN = re.compile(r"sg_([0-9a-f]{12})_[A-Za-z0-9_-]{43}")

KEY_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE IF NOT EXISTS api_keys (
        id TEXT PRIMARY KEY,
        tenant TEXT NOT NULL,
        scopes TEXT NOT NULL,
        label TEXT NOT NULL DEFAULT '',
        hash TEXT NOT NULL,
        created_at REAL NOT NULL,
        revoked_at REAL
    );
    """,
)


@dataclass(frozen=True)
class Principal:
    """The caller of one request: which key (None when anonymous), tenant and scopes."""

    key_id: str | None
    tenant: str
    scopes: frozenset[str]


#: The caller of a server with no keys at all: everything, as the default tenant.
OPEN: Final = Principal(None, DEFAULT_TENANT, frozenset(SCOPES))


@dataclass(frozen=True)
class KeyInfo:
    """A key as lists show it: everything but the secret."""

    id: str
    tenant: str
    scopes: tuple[str, ...]
    label: str
    created_at: float
    revoked_at: float | None


@dataclass(frozen=True)
class NewKey:
    """A key just created; ``key`` is the only time its secret is seen."""

    info: KeyInfo
    key: str


def check_tenant(tenant: str) -> str:
    if not TENANT_PATTERN.fullmatch(tenant):
        raise InvalidRequest(
            f"bad tenant {tenant!r}: use 1-64 letters, digits, '_', '-' or '.',"
            " starting with a letter or digit",
            field="tenant",
        )
    return tenant


def check_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    """The scopes in canonical order; an unknown or empty list is refused by name."""
    given = {scope.strip() for scope in scopes if scope.strip()}
    unknown = sorted(given - set(SCOPES))
    if unknown:
        raise InvalidRequest(
            f"unknown scope {unknown[0]!r}: use {', '.join(SCOPES)}", field="scopes"
        )
    if not given:
        raise InvalidRequest(
            f"a key needs at least one scope of {', '.join(SCOPES)}", field="scopes"
        )
    return tuple(scope for scope in SCOPES if scope in given)


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class KeyStore:
    """Where keys are kept: the contract of the SQLite and PostgreSQL key stores."""

    def create(self, tenant: str, scopes: Iterable[str], label: str = "") -> NewKey:
        """A new key for ``tenant`` with ``scopes``; its secret is in the result only."""
        tenant = check_tenant(tenant)
        ordered = check_scopes(scopes)
        if ADMIN in ordered and tenant != DEFAULT_TENANT:
            raise InvalidRequest(
                f"the admin scope manages every tenant's keys: only tenant {DEFAULT_TENANT!r}"
                " (the operator's) may hold it",
                field="scopes",
            )
        key_id = secrets.token_hex(6)
        key = f"sg_{key_id}_{secrets.token_urlsafe(32)}"
        info = KeyInfo(key_id, tenant, ordered, label, time.time(), None)
        self._insert(info, key_hash(key))
        return NewKey(info, key)

    def _insert(self, info: KeyInfo, digest: str) -> None:
        raise NotImplementedError

    def list(self, include_revoked: bool = False) -> list[KeyInfo]:
        """Keys by creation time, without their secrets."""
        raise NotImplementedError

    def revoke(self, key_id: str) -> KeyInfo:
        """Revoke ``key_id`` (again is fine); an unknown id is a 404."""
        raise NotImplementedError

    def active(self) -> tuple[dict[str, tuple[str, Principal]], bool]:
        """key id -> (hash, principal) of every key not revoked, and whether any key was
        ever created (revoked ones included)."""
        raise NotImplementedError

    def data_version(self) -> int:
        """A number that changes when keys change, cheap enough to ask per request."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> KeyStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SqliteKeyStore(KeyStore):
    """The keys of one data directory, in ``<data_dir>/keys.db``."""

    def __init__(self, data_dir: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.db = Database(data_dir / KEYS_FILE, KEY_MIGRATIONS)

    def _insert(self, info: KeyInfo, digest: str) -> None:
        with self.db.write() as conn:
            conn.execute(
                "INSERT INTO api_keys (id, tenant, scopes, label, hash, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (info.id, info.tenant, ",".join(info.scopes), info.label, digest, info.created_at),
            )

    def list(self, include_revoked: bool = False) -> list[KeyInfo]:
        where = "" if include_revoked else " WHERE revoked_at IS NULL"
        with self.db.read() as conn:
            rows = conn.execute(
                "SELECT id, tenant, scopes, label, created_at, revoked_at FROM api_keys"
                f"{where} ORDER BY created_at, id"
            ).fetchall()
        return [key_info(row) for row in rows]

    def revoke(self, key_id: str) -> KeyInfo:
        with self.db.write() as conn:
            conn.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                (time.time(), key_id),
            )
            row = conn.execute(
                "SELECT id, tenant, scopes, label, created_at, revoked_at FROM api_keys"
                " WHERE id = ?",
                (key_id,),
            ).fetchone()
        if row is None:
            raise NotFound(f"no API key {key_id!r}", field="key_id")
        return key_info(row)

    def active(self) -> tuple[dict[str, tuple[str, Principal]], bool]:
        with self.db.read() as conn:
            rows = conn.execute(
                "SELECT id, tenant, scopes, hash FROM api_keys WHERE revoked_at IS NULL"
            ).fetchall()
            ever = conn.execute("SELECT EXISTS (SELECT 1 FROM api_keys)").fetchone()[0]
        return active_keys(rows), bool(ever)

    def data_version(self) -> int:
        """Changes whenever another connection (worker, CLI) commits to the file."""
        try:
            value: int = self.db.reader().execute("PRAGMA data_version").fetchone()[0]
        except sqlite3.Error as exc:
            raise Unavailable(f"cannot read the API keys: {exc}") from exc
        return value

    def close(self) -> None:
        self.db.close()


def open_key_store(settings: Settings) -> KeyStore:
    """The keys next to the collections: in PostgreSQL when that is the store, so every
    instance shares them; else in the data directory."""
    from spyglass.stores import is_postgres

    if is_postgres(settings.store):
        from spyglass.auth.pg_keys import PostgresKeyStore

        assert settings.store is not None
        return PostgresKeyStore(settings.store, timeout_s=settings.store_timeout_s)
    return SqliteKeyStore(settings.data_dir)


def active_keys(rows: Iterable[tuple[str, str, str, str]]) -> dict[str, tuple[str, Principal]]:
    """key id -> (hash, principal) from (id, tenant, scopes, hash) rows."""
    return {
        key_id: (digest, Principal(key_id, tenant, frozenset(scopes.split(","))))
        for key_id, tenant, scopes, digest in rows
    }


def key_info(row: tuple[str, str, str, str, float, float | None]) -> KeyInfo:
    key_id, tenant, scopes, label, created_at, revoked_at = row
    return KeyInfo(key_id, tenant, tuple(scopes.split(",")), label, created_at, revoked_at)


class KeyRing:
    """One worker's view of the keys: answers "who holds this key?" without a query.

    ``bootstrap`` is the operator's key from the environment (``SPYGLASS_ADMIN_KEY``):
    any string of 16 characters or more, with every scope, for the default tenant.
    """

    def __init__(self, store: KeyStore, bootstrap: str | None = None) -> None:
        self.store = store
        self._bootstrap = key_hash(bootstrap) if bootstrap else None
        self._keys: dict[str, tuple[str, Principal]] = {}
        self._ever = False
        self._seen: int | None = None

    def _refresh(self) -> None:
        version = self.store.data_version()
        if version != self._seen:
            self._keys, self._ever = self.store.active()
            self._seen = version

    def reload(self) -> None:
        """Read the keys now (after this process wrote them)."""
        self._seen = None
        self._refresh()

    @property
    def open(self) -> bool:
        """No key was ever created and none comes from the environment: the server answers
        anyone (it is on loopback, or --insecure). Revoking every key does not reopen it."""
        self._refresh()
        return not self._ever and self._bootstrap is None

    def authenticate(self, presented: str) -> Principal | None:
        """The principal of ``presented``, or None for an unknown, revoked or garbled key."""
        self._refresh()
        digest = key_hash(presented)
        if self._bootstrap is not None and hmac.compare_digest(digest, self._bootstrap):
            return Principal(BOOTSTRAP_KEY_ID, DEFAULT_TENANT, frozenset(SCOPES))
        match = _KEY_PATTERN.fullmatch(presented)
        if match is None:
            return None
        known = self._keys.get(match.group(1))
        if known is None or not hmac.compare_digest(digest, known[0]):
            return None
        return known[1]
