"""Stores keep collections and answer searches; ``open_store`` picks one from the settings.

``stores/base.py`` holds the contract; each backend is one module, chosen by the
``store`` setting: a ``postgresql://`` URL is PostgreSQL with pgvector
(``postgres.py``), a directory is the embedded store (``embedded.py``).
"""

from __future__ import annotations

from pathlib import Path

from spyglass.errors import ConfigError
from spyglass.settings import Settings
from spyglass.stores.base import Store

POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_postgres(location: str | None) -> bool:
    """Whether a store location names PostgreSQL rather than a directory."""
    return location is not None and location.startswith(POSTGRES_SCHEMES)


def open_store(settings: Settings, location: str | None = None) -> Store:
    """The store at ``location``: a URL or a directory (default: ``store``, else ``data_dir``)."""
    location = location or settings.store
    if is_postgres(location):
        assert location is not None
        return open_postgres(settings, location)
    if location is not None and "://" in location:
        raise ConfigError(
            f"store {location.split('://')[0]}://... is not a store: give a directory"
            " or a postgresql:// URL"
        )
    return open_embedded(settings, Path(location) if location else settings.data_dir)


def open_postgres(settings: Settings, url: str) -> Store:
    from spyglass.stores.postgres import PostgresStore

    replicas = [u.strip() for u in settings.store_replicas.split(",") if u.strip()]
    for replica in replicas:
        if not is_postgres(replica):
            raise ConfigError("store_replicas: each replica must be a postgresql:// URL")
    return PostgresStore(
        url,
        replicas,
        pool_size=settings.store_pool_size,
        timeout_s=settings.store_timeout_s,
        statement_timeout_s=settings.store_statement_timeout_s,
        replica_wait_s=settings.replica_wait_s,
        replica_retry_s=settings.replica_retry_s,
        exact_below=settings.exact_below,
    )


def open_embedded(settings: Settings, directory: Path) -> Store:
    from spyglass.stores.embedded import EmbeddedStore

    try:
        return EmbeddedStore(
            directory,
            snapshot_tail=settings.snapshot_tail,
            exact_below=settings.exact_below,
            compact_ratio=settings.compact_ratio,
        )
    except OSError as exc:
        raise ConfigError(f"cannot use data directory {directory}: {exc}") from exc
