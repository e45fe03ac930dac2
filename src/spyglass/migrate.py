"""Copy collections from one store to another: vectors, texts and payloads, no re-embedding.

Items are read in id order, a page at a time, and written with idempotent
upserts. After each page the last id copied is saved to a checkpoint file, so
an interrupted run started again with the same arguments goes on from there
(at most one page is written twice, which changes nothing). At the end the
counts of both sides must agree, and the checkpoint is removed.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from spyglass.errors import ConfigError, SpyglassError
from spyglass.stores.base import Store

PAGE = 1000
#: Encoders whose items never carry an image file; pages of the others are 16 times
#: smaller, since each item may bring its image (up to max_image_bytes) along.
WITHOUT_FILES = frozenset({"none", "text", "text-fast", "remote"})


@dataclass(frozen=True)
class Copied:
    """What one collection's copy did."""

    name: str
    items: int
    resumed_after: str | None


class CountMismatch(SpyglassError):
    """The destination holds another number of items than the source."""


def checkpoint_path(directory: Path, source: str, destination: str) -> Path:
    """The checkpoint file of copying ``source`` to ``destination`` (locations as given)."""
    digest = hashlib.sha256(f"{source}\n{destination}".encode()).hexdigest()[:16]
    return directory / f".spyglass-migrate-{digest}.json"


def migrate(
    source: Store,
    destination: Store,
    checkpoint: Path,
    names: Sequence[str] = (),
    *,
    page: int = PAGE,
    on_start: Callable[[str, int], None] = lambda name, total: None,
    on_page: Callable[[int], None] = lambda n: None,
) -> list[Copied]:
    """Copy ``names`` (every collection when empty) from ``source`` to ``destination``."""
    done = _load(checkpoint)
    chosen = list(names) or [info.spec.name for info in source.list_collections()]
    results = []
    for name in chosen:
        info = source.get_collection(name)
        destination.create_collection(info.spec)  # Conflict if it exists with other settings
        after = done.get(name)
        on_start(name, info.count)
        copied = 0
        with destination.bulk():
            cursor = after
            size = page if info.spec.encoder in WITHOUT_FILES else max(1, page // 16)
            while batch := source.scan(name, cursor, size):
                destination.upsert(name, batch)
                cursor = batch[-1].id
                copied += len(batch)
                done[name] = cursor
                _save(checkpoint, done)
                on_page(len(batch))
        destination.optimize(name)
        want = source.get_collection(name).count
        have = destination.get_collection(name).count
        if want != have:
            done.pop(name, None)  # the next run copies this collection from the start
            _save(checkpoint, done)
            raise CountMismatch(
                f"collection {name!r}: the source holds {want} items and the destination {have}."
                " Was the source written to during the copy? Copy again while it is quiet"
                " (delete the destination collection first if items were deleted meanwhile)."
            )
        done.pop(name, None)
        _save(checkpoint, done)
        results.append(Copied(name, copied, after))
    checkpoint.unlink(missing_ok=True)
    return results


def _load(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"cannot read the checkpoint {path}: {exc}; delete it to start over"
        ) from exc
    if not isinstance(data, dict):
        raise ConfigError(f"the checkpoint {path} is not a migrate checkpoint; delete it")
    return {str(k): str(v) for k, v in data.items()}


def _save(path: Path, done: dict[str, str]) -> None:
    """Write the checkpoint atomically (a crash leaves the old one or the new one)."""
    partial = path.with_suffix(".tmp")
    partial.write_text(json.dumps(done))
    os.replace(partial, path)
