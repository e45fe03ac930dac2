"""``build.json``: what every process of a data directory knows about index builds.

A build runs in one process (the one holding the collection's ``build.lock``);
``GET /collections/{name}``, ``spyglass collections`` and ``/metrics`` may be
answered by any other. So the builder writes down, in the collection's index
directory, that it runs, since when and how far it has come, and how the last
build went; a reader trusts a running build only while its process lives.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson

from spyglass.processes import alive
from spyglass.stores.snapshot import Page


class BuildFile:
    """``build.json`` in a collection's index directory: the build running (its
    process, start, and items added so far) and the last one finished, for every
    process to report."""

    def __init__(self, directory: Path):
        self.path = directory / "build.json"
        self.state: dict[str, Any] = {}

    def begin(self, *, extending: bool, to_add: int) -> None:
        last = self._load().get("last")
        self.state = {
            "running": {
                "pid": os.getpid(),
                "started": time.time(),
                "extending": extending,
                "added": 0,
                "to_add": to_add,
            },
            "last": last,
        }
        self._save()

    def counted(self, pages: Iterable[Page]) -> Iterator[Page]:
        """``pages``, with the items added so far written down after each one."""
        for page in pages:
            yield page
            self.state["running"]["added"] += len(page[0])
            self._save()

    def end(self, seconds: float, *, ef: int | None = None, recall: float | None = None) -> None:
        """The build finished in ``seconds``; ``ef`` and ``recall``: what it tuned."""
        running = self.state["running"]
        self.state = {
            "running": None,
            "last": {
                "finished": time.time(),
                "seconds": round(seconds, 3),
                "extended": running["extending"],
                "added": running["added"],
                "ef": ef,
                "recall": recall,
            },
        }
        self._save()

    def abandon(self) -> None:
        """The build failed: none runs, and the last one finished is still the last."""
        self.state = {"running": None, "last": self.state.get("last")}
        self._save()

    def read(self) -> dict[str, Any]:
        """The :class:`~spyglass.stores.base.IndexState` fields about builds."""
        state = self._load()
        running, last = state.get("running"), state.get("last")
        if running is not None and not alive(running["pid"]):
            running = None  # killed midway: the next build starts over
        return {
            "building": running is not None,
            "build_started": running["started"] if running else None,
            "build_added": running["added"] if running else 0,
            "build_to_add": running["to_add"] if running else 0,
            "last_build_s": last["seconds"] if last else None,
            "last_build_extended": last["extended"] if last else None,
            "last_build_at": last["finished"] if last else None,
            "recall_estimate": last.get("recall") if last else None,
        }

    def _load(self) -> dict[str, Any]:
        try:
            loaded: dict[str, Any] = orjson.loads(self.path.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return {}
        return loaded

    def _save(self) -> None:
        temp = self.path.with_name(f".build.json.{os.getpid()}.tmp")
        temp.write_bytes(orjson.dumps(self.state))
        os.replace(temp, self.path)
