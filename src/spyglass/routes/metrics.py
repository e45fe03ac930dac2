"""``GET /metrics``: Prometheus text of the whole server, whichever worker answers.

Besides what the middleware and the engine counted, ``spyglass_collection_items``
and the index's state (``spyglass_index_items``, ``spyglass_index_building``,
``spyglass_index_last_build_seconds``) are read from the store at each scrape (in
the worker's thread pool, since the store blocks). Its ``collection`` label takes
the names of collections, which the operator creates; clients cannot add values to
it.
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from spyglass.engine import Engine
from spyglass.metrics import CollectionItems, Metrics
from spyglass.middleware.metrics import HttpCounts, MetricsMiddleware
from spyglass.routes.deps import run
from spyglass.stores.base import IndexState

router = APIRouter(tags=["metrics"])


def install_metrics(app: FastAPI, metrics: Metrics) -> Metrics:
    """Count requests into ``metrics`` and serve them at ``/metrics``.

    Call it after adding the rate limiter and admission control, so that this
    middleware wraps them and sees their 429s and 503s.
    """
    app.state.metrics = metrics
    app.state.http_counts = counts = HttpCounts(metrics)
    app.add_middleware(MetricsMiddleware, counts=counts)
    app.include_router(router)
    return metrics


def _counts(engine: Engine) -> list[tuple[str, int, IndexState | None]]:
    store = engine.store
    return [
        (info.spec.name, info.count, store.index_state(info.spec.name))
        for info in store.list_collections()
    ]


@router.get("/metrics", include_in_schema=False)
async def metrics_text(request: Request) -> Response:
    """Every Spyglass metric in the Prometheus text format."""
    metrics: Metrics = request.app.state.metrics
    engine: Engine | None = getattr(request.app.state, "engine", None)
    counts = [] if engine is None else await run(request, _counts, engine)
    body = metrics.exposition([CollectionItems(counts)])
    return Response(body, media_type=CONTENT_TYPE_LATEST)
