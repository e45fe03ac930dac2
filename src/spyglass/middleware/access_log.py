"""One structured access-log record per HTTP request, and JSON formatting of all logs.

``AccessLogMiddleware`` writes one record per request to the ``spyglass.access``
logger, carrying these fields (``record.fields``)::

    ts, request_id, method, route, status, duration_ms, tenant, client

``route`` is the matched route's path template (``/collections/{name}/search``),
never the raw path: raw paths hold collection names and item ids, which are
data, and would make the log an unbounded set of distinct lines. Requests no
route matched are logged as ``unmatched``. Headers (``Authorization``,
``X-API-Key``), query strings and bodies are never read, so they cannot leak
into the log. ``tenant`` is whatever an auth layer put in
``scope["state"]["tenant"]`` (or ``scope["state"]["principal"].tenant``), else null.

``JsonFormatter`` renders any log record as one JSON line (the access fields
at the top level), so that with ``log_config(level)`` handed to uvicorn every
line the server writes is JSON.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime
from typing import Any

import orjson
from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from spyglass.middleware.request_id import RequestIdMiddleware, current_request_id
from spyglass.middleware.route_template import route_template

ACCESS_LOGGER = "spyglass.access"


def tenant_of(scope: Scope) -> str | None:
    """The tenant an auth layer recorded in the scope state, if any."""
    state = scope.get("state") or {}
    tenant = state.get("tenant")
    if tenant is None:
        tenant = getattr(state.get("principal"), "tenant", None)
    return None if tenant is None else str(tenant)


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds")


class AccessLogMiddleware:
    """Logs method, route template, status, duration and tenant of every HTTP request."""

    def __init__(self, app: ASGIApp, logger_name: str = ACCESS_LOGGER) -> None:
        self.app = app
        self.log = logging.getLogger(logger_name)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        wall = time.time()
        started = time.perf_counter()
        status = 500  # what the client gets if the app raises before answering

        async def send_and_watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_watch)
        finally:
            duration_ms = round((time.perf_counter() - started) * 1000, 3)
            self._write(scope, wall, status, duration_ms)

    def _write(self, scope: Scope, wall: float, status: int, duration_ms: float) -> None:
        if not self.log.isEnabledFor(logging.INFO):
            return
        client = scope.get("client")
        write_access_line(
            self.log,
            ts=wall,
            request_id=(scope.get("state") or {}).get("request_id"),
            method=scope["method"],
            route=route_template(scope),
            status=status,
            duration_ms=duration_ms,
            tenant=tenant_of(scope),
            client=client[0] if client else None,
        )


def write_access_line(
    log: logging.Logger,
    *,
    ts: float,
    request_id: str | None,
    method: str,
    route: str,
    status: int,
    duration_ms: float,
    tenant: str | None,
    client: str | None,
) -> None:
    """One access record on ``log``: the middleware's, and the express lane's
    (:mod:`spyglass.routes.express`), which answers without the middleware."""
    fields: dict[str, Any] = {
        "ts": _iso(ts),
        "request_id": request_id,
        "method": method,
        "route": route,
        "status": status,
        "duration_ms": duration_ms,
        "tenant": tenant,
        "client": client,
    }
    # Built here rather than by ``log.info``, which would walk the stack to find a
    # caller that no access line shows (a fifth of the line's cost).
    record = log.makeRecord(
        log.name,
        logging.INFO,
        __file__,
        0,
        "%s %s %d %.1fms",
        (method, route, status, duration_ms),
        None,
        extra={"fields": fields},
    )
    log.handle(record)


class RequestIdFilter(logging.Filter):
    """Stamps each record with the id of the request being served when it was written,
    for handlers that format later (a ``QueueHandler``) or elsewhere."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = current_request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line: ts, level, logger, msg, request_id, extra fields.

    Fields a record carries in ``record.fields`` (the access log's) go at the
    top level; an exception goes in ``exc`` as its formatted traceback.
    """

    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", None)
        known = fields.get("ts") if isinstance(fields, dict) else None
        line: dict[str, Any] = {
            "ts": known or _iso(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None) or current_request_id.get()
        if request_id is not None:
            line["request_id"] = request_id
        if isinstance(fields, dict):
            line.update(fields)
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exc"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        try:
            return orjson.dumps(line, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
        except TypeError:  # what orjson refuses (integers past 64 bits): the slow way
            return json.dumps(line, default=str, ensure_ascii=False, separators=(",", ":"))


def log_config(level: str = "info", json_lines: bool = True) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` dict (uvicorn's ``log_config``): one stderr handler
    on the root logger, JSON lines or plain text, with uvicorn's loggers sent to it."""
    formatter: dict[str, Any] = (
        {"()": f"{__name__}.JsonFormatter"}
        if json_lines
        else {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}
    )
    propagate = {"handlers": [], "propagate": True}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"spyglass": formatter},
        "filters": {"request_id": {"()": f"{__name__}.RequestIdFilter"}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "spyglass",
                "stream": "ext://sys.stderr",
                "filters": ["request_id"],
            }
        },
        "root": {"handlers": ["stderr"], "level": level.upper()},
        "loggers": {
            "uvicorn": {**propagate, "level": level.upper()},
            "uvicorn.error": dict(propagate),
            "uvicorn.access": {**propagate, "level": "WARNING"},
        },
    }


def install_request_log(app: FastAPI, logger_name: str = ACCESS_LOGGER) -> None:
    """Adds the access log and, outside it, the request id; call after the inner
    middlewares are added (``add_middleware`` puts each new one outermost)."""
    app.add_middleware(AccessLogMiddleware, logger_name=logger_name)
    app.add_middleware(RequestIdMiddleware)
