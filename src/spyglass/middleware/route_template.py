"""The route *template* a request went to (``/collections/{name}/search``), never its path.

Logs and metrics label requests by template: the raw path holds collection
names and item ids, which would make a label set unbounded and leak data into
logs. FastAPI records its matched route (with every router prefix) in
``scope["fastapi"]``; a plain Starlette route records itself in
``scope["route"]``; a request refused before routing (a 413, 429 or 503 from
outer middleware) records nothing, so its template is found by matching the
app's routes, descending into included routers through their ``_match`` as
FastAPI's own telemetry does (should a release drop it, such requests read
``unmatched`` rather than fail).
"""

from __future__ import annotations

from starlette.routing import BaseRoute, Match, Mount
from starlette.types import Scope

UNMATCHED = "unmatched"


def route_template(scope: Scope) -> str:
    """The template of the route that handled ``scope``, or would have; else ``unmatched``.

    Found once per request and kept in the scope: the access log and the metrics
    both ask.
    """
    known = scope.get(_KEY)
    if known is None:
        known = scope[_KEY] = _find(scope)
    return str(known)


_KEY = "spyglass.route_template"
_MEMO = "spyglass_route_templates"
#: Paths whose template is remembered: matching every route again costs about as much
#: as a vector search's HTTP handling (FastAPI's router records no template for us).
MEMO_SIZE = 4096


def _find(scope: Scope) -> str:
    fastapi_state = scope.get("fastapi")
    if isinstance(fastapi_state, dict):
        template = getattr(fastapi_state.get("effective_route_context"), "path_format", None)
        if isinstance(template, str) and template:
            return template
    found = _template(scope.get("route"))
    if found is not None:
        return found
    app = scope.get("app")
    key = (scope.get("method"), scope.get("root_path", ""), scope.get("path"))
    memo: dict[object, str] | None = getattr(getattr(app, "state", None), _MEMO, None)
    if memo is None:
        memo = {}
        if app is not None:
            setattr(app.state, _MEMO, memo)
    found = memo.get(key)
    if found is None:
        found = _match(app, scope)
        if len(memo) >= MEMO_SIZE:  # paths hold item ids: a bounded memo of the busy ones
            memo.clear()
        memo[key] = found
    return found


def _match(app: object, scope: Scope) -> str:
    routes: list[BaseRoute] = list(getattr(getattr(app, "router", None), "routes", ()))
    root = str(scope.get("root_path", ""))
    for route in routes:  # a mount that served the request moved its path into root_path
        if isinstance(route, Mount) and route.path and root.endswith(route.path):
            return _template(route) or UNMATCHED
    partial: str | None = None
    for route in routes:
        match, _ = route.matches(scope)
        if match is Match.FULL:
            return _resolve(route, scope) or UNMATCHED
        if match is Match.PARTIAL and partial is None:
            partial = _resolve(route, scope)
    return partial or UNMATCHED


def _template(route: object) -> str | None:
    path = getattr(route, "path", None)
    if not isinstance(path, str):
        return None
    if isinstance(route, Mount):
        return f"{path}/{{path}}"
    return path or "/"


def _resolve(route: object, scope: Scope) -> str | None:
    """The template of ``route``, descending into included routers."""
    for _ in range(16):  # nesting depth guard
        resolve = getattr(route, "_match", None)
        if resolve is None:
            return _template(route)
        _, _, inner, context = resolve(scope)
        path = getattr(context, "path_format", None)
        if isinstance(path, str):
            return path
        route = inner
    return None
