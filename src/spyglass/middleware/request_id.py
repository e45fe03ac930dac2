"""Every request gets an id: the client's ``X-Request-ID`` if it is sane, else a new one.

The id lets one request be followed through the access log, the server log and
a client's own logs. A client (or a proxy in front of us) may send its own id;
it is kept only when it is 1 to 128 characters of ``[A-Za-z0-9._-]``, so that
nothing a client sends can forge log lines or smuggle markup into them.
Anything else is replaced by a fresh random id (32 hex digits, as a uuid4's).

The id is stored where the rest of the server can find it:

- ``scope["state"]["request_id"]`` (``request.state.request_id`` in a route),
- the ``current_request_id`` context variable, which ``JsonFormatter`` adds to
  every log line written while the request is served,

and it is returned to the client as the ``X-Request-ID`` response header.
"""

from __future__ import annotations

import os
import re
from contextvars import ContextVar

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = "x-request-id"
SANE_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")

current_request_id: ContextVar[str | None] = ContextVar("spyglass_request_id", default=None)
"""The id of the request being served in this context; None outside a request."""


def request_id_from(scope: Scope) -> str:
    """The client's X-Request-ID if it is sane, else 128 fresh random bits in hex."""
    for name, value in scope.get("headers", ()):
        if name == HEADER.encode():
            candidate: str = value.decode("latin-1")
            if SANE_ID.fullmatch(candidate):
                return candidate
            break
    return os.urandom(16).hex()


class RequestIdMiddleware:
    """Assigns the request id, exposes it to inner layers and returns it on the response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_from(scope)
        # A fresh dict: a server may hand every request the same lifespan state.
        scope["state"] = {**scope.get("state", {}), "request_id": request_id}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["X-Request-ID"] = request_id
            await send(message)

        token = current_request_id.set(request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            current_request_id.reset(token)
