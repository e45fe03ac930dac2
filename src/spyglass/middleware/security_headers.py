"""Security headers on every HTTP response, and CORS off unless origins are listed.

Every response gets ``X-Content-Type-Options: nosniff``, ``X-Frame-Options:
DENY``, ``Referrer-Policy: no-referrer`` and a Content-Security-Policy:

- API answers (JSON, problem+json, anything not HTML): ``default-src 'none';
  frame-ancestors 'none'``: nothing in them may load or be framed.
- HTML (the web UI): ``default-src 'self'`` and no framing, plugins or foreign
  form targets.
- FastAPI's ``/docs`` (Swagger UI) and ``/redoc`` pages load their scripts and
  styles from ``cdn.jsdelivr.net``, a favicon from ``fastapi.tiangolo.com``
  and (ReDoc) fonts from Google; their policies allow exactly those hosts.
  Swagger UI is started by an inline script: its SHA-256 is computed from the
  page and allowed by hash, so no ``'unsafe-inline'`` script is ever allowed.
  Both need inline styles (``style-src 'unsafe-inline'``), and ReDoc a
  ``blob:`` worker.

A header a route already set is left alone. ``Strict-Transport-Security`` is
sent only when ``hsts`` is on: only the operator knows that clients reach the
server over TLS (usually through a proxy, so the ASGI scheme cannot tell).
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable, Sequence
from typing import Any

from fastapi import FastAPI
from starlette.datastructures import MutableHeaders
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

API_CSP = "default-src 'none'; frame-ancestors 'none'"
HTML_CSP = (
    "default-src 'self'; img-src 'self' data: blob:; object-src 'none'; base-uri 'self';"
    " form-action 'self'; frame-ancestors 'none'"
)
CDN = "https://cdn.jsdelivr.net"
FAVICON_HOST = "https://fastapi.tiangolo.com"
SWAGGER_CSP = (
    f"default-src 'self'; script-src 'self' {CDN} {{hashes}}; style-src 'self' {CDN}"
    f" 'unsafe-inline'; img-src 'self' data: {FAVICON_HOST}; connect-src 'self';"
    " object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
)
REDOC_CSP = (
    f"default-src 'self'; script-src 'self' {CDN}; style-src 'self' 'unsafe-inline'"
    f" https://fonts.googleapis.com; font-src 'self' https://fonts.gstatic.com;"
    f" img-src 'self' data: {FAVICON_HOST} https://cdn.redoc.ly; worker-src 'self' blob:;"
    " connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self';"
    " frame-ancestors 'none'"
)
HSTS_MAX_AGE = 31_536_000  # one year
INLINE_SCRIPT = re.compile(rb"<script>(.*?)</script>", re.DOTALL)


def script_hashes(html: bytes) -> str:
    """CSP sources (``'sha256-...'``) for every inline ``<script>`` of a page."""
    return " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(body).digest()).decode()}'"
        for body in INLINE_SCRIPT.findall(html)
    )


def hsts_value(hsts: bool, max_age: int = HSTS_MAX_AGE) -> str | None:
    """The ``Strict-Transport-Security`` value when ``hsts`` is on, else None."""
    return f"max-age={max_age}; includeSubDomains" if hsts else None


def common_headers(hsts: str | None) -> list[tuple[str, str]]:
    """The headers every response gets whatever its type (HSTS when given)."""
    headers = [
        ("X-Content-Type-Options", "nosniff"),
        ("X-Frame-Options", "DENY"),
        ("Referrer-Policy", "no-referrer"),
    ]
    if hsts is not None:
        headers.append(("Strict-Transport-Security", hsts))
    return headers


class SecurityHeadersMiddleware:
    """Adds the security headers to every HTTP response (see the module docstring)."""

    def __init__(
        self,
        app: ASGIApp,
        hsts: bool = False,
        hsts_max_age: int = HSTS_MAX_AGE,
        swagger_path: str | None = "/docs",
        redoc_path: str | None = "/redoc",
    ) -> None:
        self.app = app
        self.hsts = hsts_value(hsts, hsts_max_age)
        self.swagger_path = swagger_path
        self.redoc_path = redoc_path

    def common(self, headers: MutableHeaders) -> None:
        for name, value in common_headers(self.hsts):
            headers.setdefault(name, value)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] == self.swagger_path:
            await self._swagger(scope, receive, send)
            return
        csp_for_html = REDOC_CSP if scope["path"] == self.redoc_path else HTML_CSP

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                self.common(headers)
                html = headers.get("content-type", "").startswith("text/html")
                headers.setdefault("Content-Security-Policy", csp_for_html if html else API_CSP)
            await send(message)

        await self.app(scope, receive, send_with_headers)

    async def _swagger(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Buffers the (small) Swagger UI page to allow its inline script by hash."""
        start: Message | None = None
        chunks: list[bytes] = []

        async def buffer(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
                return
            if message["type"] != "http.response.body" or start is None:
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            body = b"".join(chunks)
            headers = MutableHeaders(scope=start)
            self.common(headers)
            if headers.get("content-type", "").startswith("text/html"):
                policy = SWAGGER_CSP.format(hashes=script_hashes(body))
            else:
                policy = API_CSP
            headers.setdefault("Content-Security-Policy", policy)
            await send(start)
            await send({"type": "http.response.body", "body": body, "more_body": False})

        await self.app(scope, receive, buffer)


def cors_options(origins: Sequence[str]) -> dict[str, Any] | None:
    """Keyword arguments for Starlette's ``CORSMiddleware`` allowing exactly ``origins``;
    None (no CORS middleware, so browsers refuse cross-origin calls) when empty."""
    allowed = [origin.rstrip("/") for origin in origins if origin.strip()]
    if not allowed:
        return None
    return {
        "allow_origins": allowed,
        "allow_methods": ["GET", "POST", "PUT", "PATCH", "DELETE"],
        "allow_headers": ["Authorization", "Content-Type", "X-API-Key", "X-Request-ID"],
        "expose_headers": ["X-Request-ID", "Retry-After"],
        "allow_credentials": False,
        "max_age": 600,
    }


def install_security_headers(
    app: FastAPI,
    *,
    hsts: bool = False,
    hsts_max_age: int = HSTS_MAX_AGE,
    cors_origins: Iterable[str] = (),
) -> None:
    """Adds CORS (only when origins are listed) and, outside it, the security headers,
    so that preflight answers carry them too."""
    options = cors_options(list(cors_origins))
    if options is not None:
        app.add_middleware(CORSMiddleware, **options)
    app.add_middleware(
        SecurityHeadersMiddleware,
        hsts=hsts,
        hsts_max_age=hsts_max_age,
        swagger_path=app.docs_url,
        redoc_path=app.redoc_url,
    )
