"""The document sources of the ``sources`` setting, kept ingested by the server.

``spyglass serve --config FILE`` with ``[[sources]]`` tables ingests each source at
start-up, in a background thread of every worker, and ``/readyz`` stays unready until
the first build is done; ``POST /build`` runs it again. Builds go through the
incremental document ingest, so a file that did not change since the last build is
skipped without being read, and a build of an unchanged folder costs one item lookup
per file.

Workers of one server share the data directory: a file lock there makes them build
one at a time, so the first does the work and the others find every file unchanged.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field

import filelock

from spyglass.engine import Engine
from spyglass.errors import ConfigError, SpyglassError
from spyglass.ingest.passages import DocumentSource
from spyglass.ingest.pipeline import ingest
from spyglass.ingest.readers import DOCUMENT_SUFFIXES
from spyglass.ingest.report import IngestReport
from spyglass.settings import Settings, SourceSetting

__all__ = ["BuildState", "SourceBuilder", "check_sources", "document_source"]

log = logging.getLogger(__name__)


def document_source(spec: SourceSetting, settings: Settings) -> DocumentSource:
    """The files of ``spec`` (hidden ones skipped, sorted) as a source to ingest."""
    path = spec.path.expanduser()
    suffixes = _suffixes(spec)
    if path.is_file():
        if path.suffix.lower() not in suffixes:
            raise ConfigError(f"source {path}: not a document of the types {', '.join(suffixes)}")
        root, files = path.parent, [path]
    elif path.is_dir():
        root = path
        pattern = "**/*" if spec.recursive else "*"
        files = sorted(
            (
                file
                for file in path.glob(pattern)
                if file.is_file()
                and file.suffix.lower() in suffixes
                and not any(part.startswith(".") for part in file.relative_to(path).parts)
            ),
            key=lambda file: file.relative_to(path).as_posix(),
        )
    else:
        raise ConfigError(f"source {path} does not exist")
    return DocumentSource(
        path,
        root,
        tuple(files),
        batch_size=1000,
        chunk_tokens=settings.chunk_tokens,
        chunk_overlap=settings.chunk_overlap,
    )


def check_sources(settings: Settings) -> None:
    """Refuse, before anything starts, sources that do not exist or name unknown types."""
    for spec in settings.sources:
        document_source(spec, settings)


def _suffixes(spec: SourceSetting) -> tuple[str, ...]:
    if not spec.types:
        return DOCUMENT_SUFFIXES
    wanted = tuple("." + kind.lower().lstrip(".") for kind in spec.types)
    unknown = [kind for kind in wanted if kind not in DOCUMENT_SUFFIXES]
    if unknown:
        raise ConfigError(
            f"source {spec.path}: unknown document type {unknown[0]!r};"
            f" known: {', '.join(DOCUMENT_SUFFIXES)}"
        )
    return wanted


@dataclass
class BuildState:
    """What the builder did last: for ``/readyz``, ``GET /build`` and the logs."""

    status: str = "pending"
    """``pending`` (never built), ``building``, ``done`` or ``failed``."""
    built_once: bool = False
    started_at: float | None = None
    finished_at: float | None = None
    reports: list[IngestReport] = field(default_factory=list)
    error: str | None = None


class SourceBuilder:
    """Ingests the configured sources, in the background or on request."""

    def __init__(self, engine: Engine, settings: Settings) -> None:
        self.engine = engine
        self.settings = settings
        self.state = BuildState(status="done" if not settings.sources else "pending")
        self.state.built_once = not settings.sources
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def ready(self) -> bool:
        """Every source was ingested at least once since this worker started."""
        return self.state.built_once

    def start(self) -> bool:
        """Build in a background thread; False if a build is already running."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return False
            self.state.status = "building"
            self.state.started_at = time.time()
            self._thread = threading.Thread(target=self._run, name="spyglass-sources", daemon=True)
            self._thread.start()
            return True

    def join(self, timeout: float | None = None) -> None:
        thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def _run(self) -> None:
        try:
            reports = self.build()
        except (SpyglassError, OSError) as exc:
            log.error("building the document sources failed: %s", exc)
            self.state.status, self.state.error = "failed", str(exc)
        except Exception as exc:
            log.exception("building the document sources failed")
            self.state.status, self.state.error = "failed", f"{type(exc).__name__}: {exc}"
        else:
            self.state.reports, self.state.error = reports, None
            self.state.status, self.state.built_once = "done", True
        self.state.finished_at = time.time()

    def build(self) -> list[IngestReport]:
        """Ingest every source now, one worker at a time; the reports, in order."""
        data_dir = self.settings.data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        reports = []
        with filelock.FileLock(str(data_dir / "sources.lock")):
            for spec in self.settings.sources:
                collection = spec.collection or self.settings.default_collection
                source = document_source(spec, self.settings)
                report = ingest(self.engine, collection, source, encoder=spec.encoder)
                log.info("source %s (pid %d): %s", spec.path, os.getpid(), report.summary())
                reports.append(report)
        return reports
