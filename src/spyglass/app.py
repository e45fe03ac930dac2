"""``create_app(settings)``: the ASGI application, with no global state."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

import orjson
from fastapi import FastAPI
from starlette.routing import Route

from spyglass import __version__, problems
from spyglass.auth.keys import KeyRing, open_key_store
from spyglass.cache import open_cache
from spyglass.engine import Engine
from spyglass.ingest.sources import SourceBuilder, check_sources
from spyglass.llm.client import LLMClient
from spyglass.metrics import Metrics, multiprocess_dir_from_environment
from spyglass.middleware.access_log import install_request_log
from spyglass.middleware.admission import Budget, install_admission
from spyglass.middleware.auth import install_auth
from spyglass.middleware.body_limit import install_body_limit
from spyglass.middleware.crash_guard import CrashGuardMiddleware
from spyglass.middleware.door import DOOR_STATE, install_door
from spyglass.middleware.rate_limit import install_rate_limit
from spyglass.middleware.security_headers import hsts_value, install_security_headers
from spyglass.rag.ask import Asker
from spyglass.rag.sessions import open_sessions
from spyglass.routes import (
    admin,
    ask,
    chromatica,
    collections,
    faces,
    findthisfit,
    health,
    items,
    openai_compat,
    search,
    ui,
    uploads,
)
from spyglass.routes.express import EXPRESS_STATE, Express
from spyglass.routes.metrics import install_metrics
from spyglass.settings import SETTINGS_ENV, Settings, cores_per_worker
from spyglass.stores import open_store

log = logging.getLogger(__name__)


def create_app(settings: Settings) -> FastAPI:
    """The Spyglass API for ``settings``; the store and models open in the lifespan."""

    check_sources(settings)
    key_store = open_key_store(settings)
    admin_key = settings.admin_key.get_secret_value() if settings.admin_key else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        app.state.started_at = time.time()
        store = open_store(settings)
        cache = None
        if settings.redis_url or settings.cache_max_bytes:
            cache = open_cache(
                settings.redis_url,
                settings.cache_max_bytes,
                ttl_s=settings.cache_ttl_s,
                on_lookup=app.state.metrics.cache,
            )
        engine = Engine(
            settings,
            store,
            cache,
            on_encode=app.state.metrics.encoder_batch,
            on_collection=app.state.admission.learn,
        )
        app.state.engine = engine
        llm = (
            LLMClient.from_settings(settings, cache=cache, on_call=app.state.metrics.llm_call)
            if settings.llm_base_url
            else None
        )
        app.state.asker = Asker(engine, llm)
        app.state.sessions = open_sessions(
            settings.redis_url,
            turns=settings.chat_turns,
            ttl_s=settings.chat_session_ttl_s,
            max_sessions=settings.chat_sessions,
        )
        app.state.sources = SourceBuilder(engine, settings)
        executor = ThreadPoolExecutor(settings.search_threads, thread_name_prefix="spyglass")
        app.state.executor = executor
        app.state.admission.open_pools()
        app.state.face_sessions = faces.sessions_for(engine)
        app.state.ready = False
        try:
            app.state.encoder_failures = engine.warm_up()
            for name, why in app.state.encoder_failures.items():
                log.error("encoder %s cannot load: %s", name, why)
            app.state.ready = True
            if settings.sources:
                app.state.sources.start()  # /readyz waits for its first build
            state: dict[str, Any] = {DOOR_STATE: app.state.door}  # for the HTTP protocol
            app.state.express = None
            if settings.express_search and not app.state.rate_limited:
                state[EXPRESS_STATE] = app.state.express = Express(
                    engine,
                    app.state.admission,
                    app.state.key_ring,
                    app.state.http_counts,
                    refusals=app.state.door.answers,
                    hsts=hsts_value(settings.hsts, settings.hsts_max_age),
                    metrics_public=settings.metrics_public,
                )
            yield state
        finally:
            app.state.sources.join(timeout=10)  # an abandoned build resumes next time
            if llm is not None:
                await llm.aclose()
            app.state.sessions.close()
            limiter = getattr(app.state, "rate_limiter", None)
            if limiter is not None:
                await limiter.close()
            executor.shutdown(wait=True)
            app.state.admission.close_pools()
            engine.encoders.close()
            if cache is not None:
                cache.close()
            store.close()
            key_store.close()

    app = FastAPI(
        title="Spyglass",
        version=__version__,
        summary="Similarity search over text, images, colors, faces and vectors.",
        lifespan=lifespan,
        redirect_slashes=False,  # a redirect would be built from the tenant-qualified path
    )
    problems.install(app)
    install_middleware(app, settings, KeyRing(key_store, admin_key))
    app.router.routes.append(
        Route("/collections/{name}/search", search.lean_search, methods=["POST"])
    )
    routers = (
        health,
        admin,
        collections,
        items,
        search,
        ask,
        uploads,
        faces,
        findthisfit,
        chromatica,
    )
    for module in routers:
        app.include_router(module.router)
    openai_compat.install(app, settings)  # a malformed embedding_models stops the start here
    ui.install(app)
    return app


def app_from_environment() -> FastAPI:
    """The app for a uvicorn worker: settings handed down by ``spyglass serve``."""
    raw = os.environ.get(SETTINGS_ENV)
    settings = Settings(**orjson.loads(raw)) if raw else Settings()
    return create_app(settings)


def install_middleware(app: FastAPI, settings: Settings, ring: KeyRing) -> None:
    """The middleware stack, outermost last (``add_middleware`` wraps what came before).

    A request meets: the door (which refuses, before anything else runs, what its
    route class's lane has no room for), request id and access log, security headers (and CORS when
    configured), metrics (outside the layers that refuse, so it counts their
    401s, 413s, 429s and 503s), authentication (before the body is read or a
    slot taken; it also names the caller the rate limit counts), the body size
    limit, the rate limit, admission control, and innermost the crash guard,
    which turns a bug into a 500 problem that the layers above still see (with
    its request id and headers).
    """
    app.add_middleware(CrashGuardMiddleware)
    wait = settings.admission_queue_wait_ms
    target = settings.admission_target_ms
    admission = install_admission(
        app,
        search=Budget(
            settings.admission_search_in_flight or cores_per_worker(settings.workers),
            settings.admission_search_queue,
            wait,
            settings.search_timeout_s,
            target,
        ),
        encoder_search=Budget(
            settings.admission_encoder_search_in_flight,
            settings.admission_search_queue,
            wait,
            settings.search_timeout_s,
            target,
        ),
        ingest=Budget(
            settings.admission_ingest_in_flight,
            settings.admission_ingest_queue,
            wait,
            settings.ingest_timeout_s,
            target,
        ),
        other=Budget(
            settings.admission_other_in_flight,
            settings.admission_other_queue,
            wait,
            settings.request_timeout_s,
            target,
        ),
        ask=Budget(
            settings.admission_ask_in_flight,
            settings.admission_ask_queue,
            wait,
            settings.ask_timeout_s,
            target,
        ),
        retry_after_s=settings.retry_after_s,
    )
    limits = {
        "search": settings.rate_limit_search,
        "ingest": settings.rate_limit_ingest,
        "ask": settings.rate_limit_ask,
        "other": settings.rate_limit_other,
        "admin": settings.rate_limit_admin,
    }
    app.state.rate_limited = any(limits.values())
    if app.state.rate_limited:  # no limits configured: no layer at all, not an empty one
        install_rate_limit(
            app,
            limits_by_class=limits,
            storage_uri=settings.redis_url,
            fail_open=settings.rate_limit_fail_open,
            trusted_proxies=[cidr for cidr in settings.trusted_proxies.split(",") if cidr.strip()],
            retry_after_s=settings.retry_after_s,
        )
    install_body_limit(
        app,
        search=settings.max_search_body_bytes,
        ingest=settings.max_ingest_body_bytes,
        other=settings.max_body_bytes,
    )
    install_auth(app, ring, metrics_public=settings.metrics_public)
    metrics = install_metrics(app, Metrics(multiprocess_dir_from_environment()))
    admission.on_shed = metrics.admission_refused
    admission.on_admit = metrics.admission_admitted
    for name, gate in admission.gates.items():
        metrics.admission_limit.labels(name).set(gate.lane.limit)
    origins = [origin.strip() for origin in settings.cors_origins.split(",") if origin.strip()]
    install_security_headers(
        app, hsts=settings.hsts, hsts_max_age=settings.hsts_max_age, cors_origins=origins
    )
    install_request_log(app)
    install_door(
        app,
        admission,
        hsts=hsts_value(settings.hsts, settings.hsts_max_age),
        refusal_rate=settings.admission_refusal_rate,
    )
