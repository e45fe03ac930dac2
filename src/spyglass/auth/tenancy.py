"""Tenants own collections: each sees its own, under the names it gave them.

A tenant's collection ``products`` is stored as ``acme~products``; the default
tenant's as plain ``products``. Clients never write ``~`` (a name holding one is
refused as not found), so no key can name another tenant's collection: such a
collection does not exist for it, which is the 404 the API answers. Operators
may use qualified names in the CLI (``spyglass ingest acme~products ...``).
"""

from __future__ import annotations

from typing import Final

from starlette.requests import Request

from spyglass.auth.keys import DEFAULT_TENANT, Principal
from spyglass.errors import NotFound

SEPARATOR: Final = "~"
NOBODY: Final = Principal(None, DEFAULT_TENANT, frozenset())


def principal_of(request: Request) -> Principal:
    """The caller the auth middleware recorded; nobody (no scopes) if none ran."""
    principal = request.scope.get("state", {}).get("principal")
    return principal if isinstance(principal, Principal) else NOBODY


def qualified(tenant: str, name: str) -> str:
    """The stored name of ``tenant``'s collection ``name``; a client name with ``~`` is a 404."""
    if SEPARATOR in name:
        raise NotFound(f"collection {name!r} not found", field="name")
    return name if tenant == DEFAULT_TENANT else f"{tenant}{SEPARATOR}{name}"


def collection_for(request: Request, name: str) -> str:
    """The stored name of the caller's collection ``name`` (for names outside the path)."""
    return qualified(principal_of(request).tenant, name)


def shown(stored: str) -> str:
    """The name its tenant gave a collection."""
    return stored.rpartition(SEPARATOR)[2]


def owned_by(tenant: str, stored: str) -> bool:
    if tenant == DEFAULT_TENANT:
        return SEPARATOR not in stored
    return stored.startswith(tenant + SEPARATOR)
