"""The stores the contract suite runs against, each in the configurations that matter.

``embedded-exact`` answers from the tail by brute force (small collections);
``embedded-hnsw`` forces the HNSW snapshot path with a tiny tail threshold, so
background rebuilds, tombstones and tail merges are all exercised. ``postgres``
is PostgreSQL + pgvector with the default small-collection threshold (exact
below it); ``postgres-hnsw`` searches every collection through its HNSW index.
Both run on a fresh database of the real primary the test command starts.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from spyglass.stores.base import Store
from spyglass.stores.embedded import EmbeddedStore
from spyglass.stores.postgres import PostgresStore

STORE_KINDS = ["embedded-exact", "embedded-hnsw", "postgres", "postgres-hnsw"]


def open_test_store(kind: str, directory: Path, request: pytest.FixtureRequest) -> Store:
    if kind == "embedded-exact":
        return EmbeddedStore(directory)
    if kind == "embedded-hnsw":
        return EmbeddedStore(directory, snapshot_tail=7, exact_below=0)
    if kind.startswith("postgres"):
        primary, _replica = request.getfixturevalue("pg_database")
        return PostgresStore(primary, exact_below=0 if kind == "postgres-hnsw" else 5000)
    raise ValueError(kind)
