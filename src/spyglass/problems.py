"""Every error answer is an RFC 9457 ``application/problem+json`` document.

Handlers for Spyglass's own errors, for FastAPI's request validation (a bad
field is a 422 naming it; unparseable JSON is a 400), for Starlette's HTTP
errors (unknown route, wrong method) and, as a last resort, for bugs (500).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse

from spyglass.auth.keys import DEFAULT_TENANT
from spyglass.auth.tenancy import SEPARATOR
from spyglass.errors import PROBLEM_CONTENT_TYPE, InvalidRequest, MalformedBody, ProblemError

log = logging.getLogger(__name__)


#: Where the auth layer keeps the path the client sent, before tenant qualification.
CLIENT_PATH = "spyglass.client_path"


def problem_response(error: ProblemError, request: Request) -> JSONResponse:
    """The problem document of ``error`` in the client's terms: ``instance`` is the path
    it sent, and collection names are the names it gave (without its tenant prefix)."""
    body = error.to_problem(instance=request.scope.get(CLIENT_PATH) or request.url.path)
    tenant = getattr(request.scope.get("state", {}).get("principal"), "tenant", None)
    if tenant and tenant != DEFAULT_TENANT:
        prefix = f"'{tenant}{SEPARATOR}"
        body["detail"] = body["detail"].replace(prefix, "'")
        for entry in body.get("errors", ()):
            entry["message"] = str(entry["message"]).replace(prefix, "'")
    return JSONResponse(
        body,
        status_code=error.status,
        headers=error.headers,
        media_type=PROBLEM_CONTENT_TYPE,
    )


def field_path(loc: tuple[Any, ...] | list[Any]) -> str:
    """('body', 'items', 3, 'vector') -> 'items[3].vector'."""
    parts = list(loc)
    if parts and parts[0] in {"body", "query", "path", "header"}:
        parts = parts[1:]
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "body"


async def _on_problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ProblemError)
    return problem_response(exc, request)


async def _on_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    raw = list(exc.errors())
    if any(e.get("type") == "json_invalid" for e in raw):
        bad = next(e for e in raw if e.get("type") == "json_invalid")
        detail = f"request body is not valid JSON: {bad.get('ctx', {}).get('error', bad['msg'])}"
        return problem_response(MalformedBody(detail, field="body"), request)
    errors = [{"field": field_path(e["loc"]), "message": e["msg"]} for e in raw]
    first = errors[0] if errors else {"field": "body", "message": "invalid request"}
    error = InvalidRequest(f"{first['field']}: {first['message']}", errors=errors)
    return problem_response(error, request)


async def _on_http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    error = ProblemError(str(exc.detail), headers=dict(exc.headers or {}))
    error.status = exc.status_code
    error.slug = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
    error.title = {404: "Not found", 405: "Method not allowed"}.get(exc.status_code, "HTTP error")
    return problem_response(error, request)


def internal_error(request: Request) -> JSONResponse:
    """The answer to a bug: logged with its traceback (call from an ``except``), no details
    to the client."""
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return problem_response(ProblemError("internal error; see the server log"), request)


async def _on_bug(request: Request, exc: Exception) -> JSONResponse:
    return internal_error(request)


def install(app: FastAPI) -> None:
    app.add_exception_handler(ProblemError, _on_problem)
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(HTTPException, _on_http)
    app.add_exception_handler(Exception, _on_bug)
