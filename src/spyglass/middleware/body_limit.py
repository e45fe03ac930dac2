"""Request bodies over the limit of their route class are refused with 413.

A ``Content-Length`` over the limit is refused before the app runs and before a
byte of the body is read (so an oversized upload never takes an admission slot).
A body without a length (chunked) is counted as the app reads it; the read that
crosses the limit raises :class:`BodyTooLarge` into the app, everything the app
sends after that is dropped, and the client gets the 413 problem instead, as
long as no response had started.

Why not FastAPI's built-in ``max_body_size`` (Starlette's
``RequestBodyLimitMiddleware``): it is set per app, router or route in code the
routes own, while our limits follow the route class; it checks
``Content-Length`` only when the endpoint reads the body, after routing and
dependencies ran; and its 413 is ``text/plain`` (or a generic ``http-error``
problem), not ``urn:spyglass:problem:payload-too-large``.
"""

from __future__ import annotations

from collections.abc import Mapping

from fastapi import FastAPI
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from spyglass.errors import PayloadTooLarge
from spyglass.middleware.route_class import INGEST, SEARCH, route_class
from spyglass.problems import problem_response

MIB = 1024 * 1024


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` when a streamed body crosses its limit.

    An ``HTTPException`` so FastAPI passes it on instead of calling it a
    malformed body; the middleware answers 413 whatever the app makes of it.
    """

    def __init__(self) -> None:
        super().__init__(status_code=413, detail="request body too large")


class BodyLimitMiddleware:
    """413 for bodies over ``limits[route class]`` (``default`` for classes not listed)."""

    def __init__(self, app: ASGIApp, limits: Mapping[str, int], default: int) -> None:
        self.app = app
        self.limits = dict(limits)
        self.default = default

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        name = route_class(scope["method"], scope["path"])
        limit = self.limits.get(name, self.default)
        length = _content_length(scope)
        if length is not None and length > limit:
            await _refuse(f"the body is {length} bytes", name, limit, scope, receive, send)
            return

        seen = 0
        exceeded = False
        started = False

        async def receive_counting() -> Message:
            nonlocal seen, exceeded
            if exceeded:
                raise BodyTooLarge
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    exceeded = True
                    raise BodyTooLarge
            return message

        async def send_unless_exceeded(message: Message) -> None:
            nonlocal started
            if exceeded and not started:
                return  # the app's answer to BodyTooLarge; ours replaces it
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive_counting, send_unless_exceeded)
        except Exception:
            if not exceeded or started:
                raise
        if exceeded and not started:
            await _refuse(f"the body is over {limit} bytes", name, limit, scope, receive, send)


async def _refuse(
    what: str, name: str, limit: int, scope: Scope, receive: Receive, send: Send
) -> None:
    detail = f"{what}; {name} requests may send at most {limit} bytes"
    error = PayloadTooLarge(detail, field="body")
    await problem_response(error, Request(scope))(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", ()):
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server rejects a malformed length itself
    return None


def install_body_limit(
    app: FastAPI,
    *,
    search: int = 32 * MIB,
    ingest: int = 64 * MIB,
    other: int = 1 * MIB,
) -> None:
    """Add the body size limit to ``app`` (before it starts): ``search`` and
    ``ingest`` for those route classes, ``other`` for every other class."""
    app.add_middleware(BodyLimitMiddleware, limits={SEARCH: search, INGEST: ingest}, default=other)
