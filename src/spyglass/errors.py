"""The one exception tree of Spyglass.

::

    SpyglassError                      anything Spyglass raises on purpose
    ├── ProblemError                   rendered over HTTP as RFC 9457 problem+json
    │   ├── InvalidRequest       422   a field of the request is wrong (names the field)
    │   │   └── FilterError      422   the filter does not parse
    │   ├── Unauthorized         401   no API key, or one that is unknown or revoked
    │   ├── Forbidden            403   the key lacks the scope the route needs
    │   ├── NotFound             404   unknown collection or item (or another tenant's)
    │   ├── Conflict             409   the collection exists with other settings
    │   ├── PayloadTooLarge      413   batch or body over the configured limit
    │   ├── RateLimited          429   the caller is over its rate limit
    │   └── Unavailable          503   store or model not ready, server full; retry later
    │       └── Abandoned        503   the request's work was stopped (over its budget)
    └── ConfigError                    bad settings or CLI input (one line, exit 2)

Every store and encoder raises these and only these for conditions a client can
cause, so the HTTP layer and the CLI render them the same way whichever backend
is in use. Driver errors are wrapped with ``raise ... from exc``.
"""

from __future__ import annotations

from typing import Any

PROBLEM_CONTENT_TYPE = "application/problem+json"


class SpyglassError(Exception):
    """Base of every error Spyglass raises on purpose."""


class ConfigError(SpyglassError):
    """Settings, a config file or a command-line argument is wrong."""


class ProblemError(SpyglassError):
    """An error with an HTTP status, rendered as an RFC 9457 problem document."""

    status: int = 500
    slug: str = "internal"
    title: str = "Internal error"

    def __init__(
        self,
        detail: str,
        *,
        field: str | None = None,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field
        self.errors = errors
        self.headers = headers or {}

    @property
    def type_uri(self) -> str:
        return f"urn:spyglass:problem:{self.slug}"

    def to_problem(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": self.type_uri,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if instance is not None:
            body["instance"] = instance
        errors = self.errors
        if errors is None and self.field is not None:
            errors = [{"field": self.field, "message": self.detail}]
        if errors:
            body["errors"] = errors
        return body


class InvalidRequest(ProblemError):
    status = 422
    slug = "invalid-request"
    title = "Invalid request"


class FilterError(InvalidRequest):
    slug = "invalid-filter"
    title = "Invalid filter"


class MalformedBody(ProblemError):
    status = 400
    slug = "malformed-body"
    title = "Malformed request body"


class Unauthorized(ProblemError):
    """No valid API key; ``WWW-Authenticate`` tells the client how to send one."""

    status = 401
    slug = "unauthorized"
    title = "Unauthorized"

    def __init__(self, detail: str) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": 'Bearer realm="spyglass"'})


class Forbidden(ProblemError):
    status = 403
    slug = "forbidden"
    title = "Forbidden"


class NotFound(ProblemError):
    status = 404
    slug = "not-found"
    title = "Not found"


class Conflict(ProblemError):
    status = 409
    slug = "conflict"
    title = "Conflict"


class PayloadTooLarge(ProblemError):
    status = 413
    slug = "payload-too-large"
    title = "Payload too large"


class RateLimited(ProblemError):
    """The caller is over one of its rate limits; retry after ``Retry-After``."""

    status = 429
    slug = "rate-limited"
    title = "Too many requests"


class Unavailable(ProblemError):
    status = 503
    slug = "unavailable"
    title = "Service unavailable"


class Abandoned(Unavailable):
    """The request's work was stopped: over its time budget, or given up
    (see :mod:`spyglass.overload.deadline`)."""
