"""Every Prometheus metric Spyglass exports, declared once, in a ``Metrics`` object.

Names carry the ``spyglass_`` prefix and base units (seconds); counters end in
``_total``. Labels are bounded: route *templates* (``/collections/{name}``, never
a raw path), HTTP methods folded to a fixed set, status codes, route classes,
encoder names and collection names (both chosen by the operator, not by clients).
Nothing keyed by API key, client address or item id.

No global state, despite prometheus-client's default registry:

- Single process: each ``Metrics`` owns a private ``CollectorRegistry``. Two apps
  in one process (tests) count independently, and nothing is registered in
  ``prometheus_client.REGISTRY``.
- Several workers (``spyglass serve --workers N``): prometheus-client decides at
  import time, from ``PROMETHEUS_MULTIPROC_DIR``, to keep every value in a
  per-process memory-mapped file in that directory. That switch is the one piece
  of process-wide state, and it is the library's, not ours. ``multiproc_dir``
  creates a fresh directory and sets the variable in the supervisor before the
  workers start; each scrape then builds a throw-away registry with a
  ``MultiProcessCollector`` that sums the files of every worker, so any worker
  answers ``/metrics`` with the server's totals.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from spyglass.errors import ConfigError
from spyglass.processes import alive
from spyglass.stores.base import IndexState

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

QUEUE_DELAY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
#: Seconds of an LLM call: a cached answer, a quick model, a long streamed answer.
LLM_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


def multiprocess_enabled() -> bool:
    """Whether prometheus-client was imported in multiprocess mode (the env var was set)."""
    return bool(getattr(values.ValueClass, "_multiprocess", False))


class Metrics:
    """The metrics of one app: HTTP traffic, shedding, cache, encoders, collections.

    ``multiprocess_dir`` is the directory of a multi-worker server (the value of
    ``PROMETHEUS_MULTIPROC_DIR`` that ``multiproc_dir`` set), or ``None`` for one
    process. It must agree with how prometheus-client was imported: values
    written by one process only and read as if shared (or the reverse) would be
    silently wrong numbers, so a mismatch is a ``ConfigError``.
    """

    def __init__(self, multiprocess_dir: Path | None = None) -> None:
        if (multiprocess_dir is not None) != multiprocess_enabled():
            state = "set" if multiprocess_enabled() else "unset"
            raise ConfigError(
                f"metrics: multiprocess_dir={multiprocess_dir} but {MULTIPROC_ENV} was "
                f"{state} when prometheus_client was imported"
            )
        self.multiprocess_dir = multiprocess_dir
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "spyglass_http_requests",
            "HTTP requests answered, by route template, method and status code.",
            ["route", "method", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "spyglass_http_request_duration_seconds",
            "Time from receiving a request to the end of its response, by route template.",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge(
            "spyglass_http_requests_in_flight",
            "Requests being handled now (summed over live workers).",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.shed = Counter(
            "spyglass_http_shed",
            "Requests refused with 503 because the server was full or not ready, by route class.",
            ["route_class"],
            registry=r,
        )
        self.admission_shed = Counter(
            "spyglass_admission_shed",
            "Requests refused by admission control, by route class and reason: queue_full"
            " (at the door, or no room to wait), queue_delay (waited too long) or budget"
            " (cancelled over its time budget).",
            ["route_class", "reason"],
            registry=r,
        )
        self.admission_queue_delay = Histogram(
            "spyglass_admission_queue_delay_seconds",
            "Time admitted requests waited for a slot (0 when one was free), by route class.",
            ["route_class"],
            buckets=QUEUE_DELAY_BUCKETS,
            registry=r,
        )
        self.admission_limit = Gauge(
            "spyglass_admission_limit",
            "Requests of a route class that may run at once, summed over live workers.",
            ["route_class"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self._shed_children: dict[tuple[str, str], tuple[Any, Any]] = {}
        self._delay_children: dict[str, Any] = {}
        self.rate_limited = Counter(
            "spyglass_http_rate_limited",
            "Requests refused with 429 because the client was over its limit, by route class.",
            ["route_class"],
            registry=r,
        )
        self.cache_hits = Counter(
            "spyglass_cache_hits", "Query cache lookups that found an answer.", registry=r
        )
        self.cache_misses = Counter(
            "spyglass_cache_misses", "Query cache lookups that found nothing.", registry=r
        )
        self.encoder_batch_size = Histogram(
            "spyglass_encoder_batch_size",
            "Inputs per encoder call (batching across requests makes these larger).",
            ["encoder"],
            buckets=BATCH_SIZE_BUCKETS,
            registry=r,
        )
        self.encoder_latency = Histogram(
            "spyglass_encoder_batch_duration_seconds",
            "Time one encoder call took for its whole batch.",
            ["encoder"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )

        self.llm_calls = Counter(
            "spyglass_llm_calls",
            "Calls to the LLM API by outcome: ok, cached, open (circuit breaker), rejected,"
            " failed, timeout, broken or abandoned (streams).",
            ["outcome"],
            registry=r,
        )
        self.llm_latency = Histogram(
            "spyglass_llm_call_duration_seconds",
            "Time one LLM call took, retries and streaming included.",
            buckets=LLM_BUCKETS,
            registry=r,
        )

    def admission_refused(
        self, route_class: str, reason: str, count: int = 1, *, door: bool = False
    ) -> None:
        """Count ``count`` refusals by admission control; ``door``: refused before the
        metrics layer, so counted in ``spyglass_http_shed_total`` here too."""
        children = self._shed_children.get((route_class, reason))
        if children is None:
            children = (
                self.admission_shed.labels(route_class, reason),
                self.shed.labels(route_class),
            )
            self._shed_children[(route_class, reason)] = children
        children[0].inc(count)
        if door:
            children[1].inc(count)

    def door_refused(self, route_class: str, reason: str, count: int = 1) -> None:
        """Count refusals at the door (see :mod:`spyglass.middleware.door`)."""
        self.admission_refused(route_class, reason, count, door=True)

    def admission_admitted(self, route_class: str, waited_s: float) -> None:
        """Record how long an admitted request waited for its slot."""
        child = self._delay_children.get(route_class)
        if child is None:
            child = self._delay_children[route_class] = self.admission_queue_delay.labels(
                route_class
            )
        child.observe(waited_s)

    def llm_call(self, outcome: str, seconds: float) -> None:
        """Record one LLM call; ``outcome`` is one of the client's few fixed words."""
        self.llm_calls.labels(outcome).inc()
        self.llm_latency.observe(seconds)

    def cache(self, hit: bool) -> None:
        """Count one query cache lookup."""
        (self.cache_hits if hit else self.cache_misses).inc()

    def encoder_batch(self, encoder: str, size: int, seconds: float) -> None:
        """Record one encoder call: ``encoder`` is the encoder's registered name (bounded)."""
        self.encoder_batch_size.labels(encoder).observe(size)
        self.encoder_latency.labels(encoder).observe(seconds)

    def exposition(self, extra: Iterable[Collector] = ()) -> bytes:
        """The Prometheus text of every metric, plus ``extra`` collectors computed now.

        In multiprocess mode the values come from every worker's files, not from
        this process's objects; ``extra`` (gauges read from the shared store) is
        computed once, by the worker that answers the scrape.
        """
        registry = CollectorRegistry(auto_describe=False)
        if self.multiprocess_dir is not None:
            reap_dead_workers(self.multiprocess_dir)
            _WorkerFiles(self.multiprocess_dir, registry)
        else:
            registry.register(_Forward(self.registry))
        for collector in extra:
            registry.register(collector)
        return generate_latest(registry)


class _WorkerFiles(Collector):
    """Every worker's metric files, summed, skipping a file a starting worker has only
    just created.

    prometheus-client's own collector reads every ``*.db`` file and fails on one
    that is still empty (a worker that uvicorn just started, or restarted, creates
    its files as its first metrics appear); such a file holds no values yet.
    """

    def __init__(self, path: Path, registry: CollectorRegistry) -> None:
        self.path = path
        registry.register(self)

    def collect(self) -> Iterable[Metric]:
        for attempt in range(3):
            try:
                merged: Iterable[Metric] = multiprocess.MultiProcessCollector.merge(  # type: ignore[no-untyped-call]
                    self._settled(), accumulate=True
                )
                return merged
            except FileNotFoundError:  # a dead worker's live gauge, reaped by another scrape
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _settled(self) -> list[str]:
        files = []
        for file in self.path.glob("*.db"):
            try:
                if file.stat().st_size >= _HEADER_BYTES:
                    files.append(str(file))
            except FileNotFoundError:
                continue
        return files


_HEADER_BYTES = 8
"""A metric file starts with its used length and padding; shorter is still being made."""


class _Forward(Collector):
    """Yields another registry's metrics, so a scrape registry can combine them with extras."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self) -> Iterable[Metric]:
        return self.registry.collect()


class CollectionItems(Collector):
    """``spyglass_collection_items{collection}`` and the index's state, read from the
    store at scrape: ``spyglass_index_items{collection,state}`` (indexed, tail,
    deleted), ``spyglass_index_building{collection}``,
    ``spyglass_index_last_build_seconds{collection}`` and the tuned default beam width
    with its measured recall, ``spyglass_index_ef_search{collection}`` and
    ``spyglass_index_recall_estimate{collection}`` (embedded store only).

    Collection names are bounded by the operator, who creates collections; a
    client cannot add label values by sending requests.
    """

    def __init__(self, counts: Sequence[tuple[str, int, IndexState | None]]) -> None:
        self.counts = counts

    def collect(self) -> Iterable[Metric]:
        items = GaugeMetricFamily(
            "spyglass_collection_items", "Items stored per collection.", labels=["collection"]
        )
        index = GaugeMetricFamily(
            "spyglass_index_items",
            "Items per collection in the index snapshot (indexed), written since it and"
            " searched exactly (tail), and gone but still in it (deleted).",
            labels=["collection", "state"],
        )
        building = GaugeMetricFamily(
            "spyglass_index_building", "1 while a build of the index runs.", labels=["collection"]
        )
        last = GaugeMetricFamily(
            "spyglass_index_last_build_seconds",
            "Seconds the last build of the index took.",
            labels=["collection"],
        )
        ef = GaugeMetricFamily(
            "spyglass_index_ef_search",
            "The beam width searches use when they name none (tuned by the last build).",
            labels=["collection"],
        )
        recall = GaugeMetricFamily(
            "spyglass_index_recall_estimate",
            "Recall@10 the last build measured at that beam width on a sample of its vectors.",
            labels=["collection"],
        )
        for name, count, state in self.counts:
            items.add_metric([name], count)
            if state is None:
                continue
            for kind, value in (
                ("indexed", state.indexed),
                ("tail", state.tail),
                ("deleted", state.deleted),
            ):
                index.add_metric([name, kind], value)
            building.add_metric([name], int(state.building))
            if state.last_build_s is not None:
                last.add_metric([name], state.last_build_s)
            if state.ef_search is not None:
                ef.add_metric([name], state.ef_search)
            if state.recall_estimate is not None:
                recall.add_metric([name], state.recall_estimate)
        yield from (items, index, building, last, ef, recall)


def reap_dead_workers(path: Path) -> None:
    """Forget the live gauges (in-flight) of workers that died without cleaning up.

    A worker killed by a signal leaves its ``gauge_live*_<pid>.db`` file behind and
    its last in-flight value would be summed forever. Counters and histograms of
    dead workers are kept: they are counts of what happened. A pid reused by an
    unrelated process keeps its stale file until that process goes too.
    """
    for file in path.glob("gauge_live*_*.db"):
        pid_text = file.stem.rsplit("_", 1)[-1]
        if not pid_text.isdigit():
            continue
        pid = int(pid_text)
        if not alive(pid):
            multiprocess.mark_process_dead(pid, str(path))  # type: ignore[no-untyped-call]


@contextmanager
def multiproc_dir(workers: int, path: Path | None = None) -> Iterator[Path | None]:
    """Around ``uvicorn.run`` in ``spyglass serve``: a fresh metrics directory for the workers.

    With one worker, nothing (``None``): one process needs no shared files. With
    several, ``path`` (or a new temporary directory) is emptied of stale ``*.db``
    files from an earlier run, and ``PROMETHEUS_MULTIPROC_DIR`` is set in this
    process so every worker inherits it before it imports prometheus-client.
    On exit the variable is restored and a temporary directory removed.
    """
    if workers <= 1:
        yield None
        return
    owned = path is None
    directory = Path(tempfile.mkdtemp(prefix="spyglass-metrics-")) if path is None else path
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink()
    before = os.environ.get(MULTIPROC_ENV)
    os.environ[MULTIPROC_ENV] = str(directory)
    try:
        yield directory
    finally:
        if before is None:
            os.environ.pop(MULTIPROC_ENV, None)
        else:
            os.environ[MULTIPROC_ENV] = before
        if owned:
            shutil.rmtree(directory, ignore_errors=True)


def multiprocess_dir_from_environment() -> Path | None:
    """In a worker: the directory ``multiproc_dir`` handed down, or ``None``."""
    raw = os.environ.get(MULTIPROC_ENV)
    return Path(raw) if raw else None
