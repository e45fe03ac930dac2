"""Authentication, scopes and tenants, before any other layer that refuses work.

Every request but the public ones (probes, API docs; ``/metrics`` when
``metrics_public``) presents an API key as ``Authorization: Bearer <key>`` or
``X-API-Key: <key>``:

- no key, or one unknown or revoked: 401 with ``WWW-Authenticate``;
- a key without the scope the route needs: 403. Searches and ``GET`` need
  ``read``; writes need ``write``; ``/admin/*`` and ``/status`` need ``admin``;
- a key of tenant ``acme`` reaches only ``acme``'s collections: the collection
  name in the path is qualified with the tenant before routing (see
  :mod:`spyglass.auth.tenancy`), so another tenant's collection is simply not
  found, a 404.

A server with no key at all (none created, no ``SPYGLASS_ADMIN_KEY``) is *open*:
every caller acts as the default tenant with every scope. ``spyglass serve``
refuses to run open on an address other than loopback unless ``--insecure``.

The caller is recorded as ``scope["state"]["principal"]`` for the rate limiter
(which counts per key) and the access log (which logs the tenant, never the key).
"""

from __future__ import annotations

from typing import Final

from fastapi import FastAPI
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from spyglass.auth import keys, tenancy
from spyglass.auth.keys import KeyRing, Principal
from spyglass.errors import Forbidden, NotFound, ProblemError, Unauthorized
from spyglass.middleware.route_class import ADMIN, ASK, INGEST, SEARCH, route_class
from spyglass.problems import CLIENT_PATH, problem_response

PUBLIC_PATHS: Final = frozenset(
    {"/", "/livez", "/readyz", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"}
)
METRICS_PATH: Final = "/metrics"
UI_ASSETS: Final = "/ui/"
"""The web UI's scripts and styles: public, like the page (``/``) and the API docs."""


def required_scope(method: str, path: str, *, metrics_public: bool = False) -> str | None:
    """The scope ``method path`` needs, or None for a public route."""
    if (
        path in PUBLIC_PATHS
        or path.startswith(UI_ASSETS)
        or (path == METRICS_PATH and metrics_public)
    ):
        return None
    if path == METRICS_PATH:
        return keys.ADMIN
    kind = route_class(method, path)
    if kind == ADMIN:
        return keys.ADMIN
    if kind in (SEARCH, ASK):
        return keys.READ
    if kind == INGEST:
        return keys.WRITE
    return keys.READ if method.upper() in {"GET", "HEAD"} else keys.WRITE


def presented_key(scope: Scope) -> str | None:
    """The key in ``Authorization: Bearer`` or ``X-API-Key``, if the request carries one."""
    headers: list[tuple[bytes, bytes]] = scope["headers"]
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
        elif name == b"x-api-key" and value.strip():
            return value.decode("latin-1").strip()
    return None


class AuthMiddleware:
    """401, 403 or a tenant-qualified path; see the module docstring."""

    def __init__(self, app: ASGIApp, ring: KeyRing, *, metrics_public: bool = False) -> None:
        self.app = app
        self.ring = ring
        self.metrics_public = metrics_public

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        root: str = scope.get("root_path", "")
        if root and not path.startswith(root):
            root = ""
        route_path = path[len(root) :]  # what routing matches, as Starlette's get_route_path
        needed = required_scope(scope["method"], route_path, metrics_public=self.metrics_public)
        if needed is None:
            await self.app(scope, receive, send)
            return
        try:
            principal = self._principal(scope, needed)
            scope["path"] = root + self._qualified_path(route_path, principal)
        except ProblemError as error:
            await problem_response(error, Request(scope))(scope, receive, send)
            return
        scope.setdefault("state", {})["principal"] = principal
        if scope["path"] != path:
            scope[CLIENT_PATH] = path
        await self.app(scope, receive, send)

    def _principal(self, scope: Scope, needed: str) -> Principal:
        presented = presented_key(scope)
        if presented is None:
            if self.ring.open:
                return keys.OPEN
            raise Unauthorized("this route needs an API key: send 'Authorization: Bearer <key>'")
        principal = self.ring.authenticate(presented)
        if principal is None:
            raise Unauthorized("the API key is not valid (unknown, revoked or mistyped)")
        if needed not in principal.scopes:
            held = ", ".join(sorted(principal.scopes))
            raise Forbidden(f"this route needs the {needed!r} scope; the key has {held}")
        return principal

    @staticmethod
    def _qualified_path(path: str, principal: Principal) -> str:
        parts = path.split("/")
        if len(parts) < 3 or parts[1] != "collections" or not parts[2]:
            return path
        name = parts[2]
        if tenancy.SEPARATOR in name:
            raise NotFound(f"collection {name!r} not found", field="name")
        parts[2] = tenancy.qualified(principal.tenant, name)
        return "/".join(parts)


def install_auth(app: FastAPI, ring: KeyRing, *, metrics_public: bool = False) -> None:
    """Add the auth layer and keep the key ring as ``app.state.key_ring`` (admin routes)."""
    app.state.key_ring = ring
    app.add_middleware(AuthMiddleware, ring=ring, metrics_public=metrics_public)
