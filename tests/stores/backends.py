"""The stores the contract suite runs against, each in the configurations that matter.

``embedded-exact`` answers from the tail by brute force (small collections);
``embedded-hnsw`` forces the HNSW snapshot path with a tiny tail threshold, so
background rebuilds, tombstones and tail merges are all exercised.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from spyglass.stores.base import Store
from spyglass.stores.embedded import EmbeddedStore

STORE_KINDS = ["embedded-exact", "embedded-hnsw"]


def open_test_store(kind: str, directory: Path, request: pytest.FixtureRequest) -> Store:
    if kind == "embedded-exact":
        return EmbeddedStore(directory)
    if kind == "embedded-hnsw":
        return EmbeddedStore(directory, snapshot_tail=7, exact_below=0)
    raise ValueError(kind)
