"""Which budget a request draws on: its *route class*.

Admission control and the body size limit give each class its own budget, so a
flood of one kind of work cannot starve another (ingest cannot starve search).
The classes:

``search``  expensive reads: vector, text, image and face queries, and OpenAI's
            ``/v1/embeddings`` (it runs the model).
``ingest``  writes: upserts, uploads, deletes, creating and dropping collections.
``ask``     question answering (``/collections/{name}/ask``, ``/chat``): a retrieval
            plus an LLM call or a sentence encoder, far dearer than a search.
``admin``   operator routes (``/admin/*``, ``/status``, ``/build``).
``health``  probes and metrics (``/livez``, ``/readyz``, ``/metrics``); never shed,
            so a load balancer does not take a busy worker for a dead one.
``other``   everything else: cheap reads (``GET`` an item or collection), docs.

Searches are split further by what their collection's encoder costs
(:func:`search_lane`): ``search`` (vectors given), ``search-text``, ``search-image``
and ``search-color``, each with its own admission lane, so that a flood of text
searches cannot starve vector searches. Admission learns each collection's
encoder from the engine as collections are looked up; until then a collection's
searches go to ``search``.

Classification looks only at the method and the path, so it runs before routing
and costs no more than splitting the path. A new route that does real work must
be added here; ``tests/middleware/test_admission.py`` fails until it is.
"""

from __future__ import annotations

from typing import Final

SEARCH: Final = "search"
INGEST: Final = "ingest"
ASK: Final = "ask"
ADMIN: Final = "admin"
HEALTH: Final = "health"
OTHER: Final = "other"

ROUTE_CLASSES: Final = (SEARCH, INGEST, ASK, ADMIN, HEALTH, OTHER)

#: The admission lane of a collection's searches, by its encoder's family.
SEARCH_LANES: Final = {
    "text": "search-text",
    "text-fast": "search-text",
    "remote": "search-text",
    "image": "search-image",
    "clip": "search-image",
    "face": "search-image",
    "color": "search-color",
}

#: The lanes of the search routes that name no collection (the compatibility routes of
#: the apps Spyglass replaces, and OpenAI's), by what their model costs.
TOP_SEARCH_LANES: Final = {
    "/search": "search-color",  # Chromatica's palette search
    "/search_by_image": "search-image",  # Find This Fit
    "/search_by_text": "search-image",  # Find This Fit, CLIP's text tower
    "/upload": "search-image",  # face lookup
    "/v1/embeddings": "search-text",
}

_HEALTH_PATHS = frozenset({"/livez", "/readyz", "/metrics"})
_ADMIN_PATHS = frozenset({"/status", "/admin", "/build"})
# POST /collections/{name}/<rest>
_COLLECTION_SEARCH = frozenset(
    {("search",), ("search", "batch"), ("search", "upload"), ("identify",)}
)
_COLLECTION_INGEST = frozenset({("items",), ("items", "upload"), ("delete",), ("faces",)})
# POST at the top level: compatibility routes of the apps Spyglass replaces, and OpenAI's.
_TOP_SEARCH_POST = frozenset({"/search_by_image", "/search_by_text", "/upload", "/v1/embeddings"})
_READ_METHODS = frozenset({"GET", "HEAD"})


def route_class(method: str, path: str) -> str:
    """The route class of ``method path``: one of :data:`ROUTE_CLASSES`."""
    method = method.upper()
    if path in _HEALTH_PATHS:
        return HEALTH
    if path in _ADMIN_PATHS or path.startswith("/admin/"):
        return ADMIN
    if path == "/chat" and method == "POST":
        return ASK
    parts = tuple(p for p in path.split("/") if p)
    if len(parts) >= 2 and parts[0] == "collections":
        rest = parts[2:]
        if not rest:
            return INGEST if method in {"PUT", "DELETE"} else OTHER
        if method == "POST" and rest == ("ask",):
            return ASK
        if method == "POST" and rest in _COLLECTION_SEARCH:
            return SEARCH
        if method == "POST" and rest in _COLLECTION_INGEST:
            return INGEST
        return OTHER
    if path == "/search" and method in _READ_METHODS:  # Chromatica palette search
        return SEARCH
    if path in _TOP_SEARCH_POST and method == "POST":
        return SEARCH
    return OTHER


def search_lane(encoder: str) -> str:
    """The admission lane of searches in a collection of ``encoder``: ``search`` for
    collections searched by the vectors clients give (``none``) or unknown encoders."""
    return SEARCH_LANES.get(encoder, SEARCH)


def collection_of(path: str) -> str | None:
    """The collection a ``/collections/{name}/...`` path names, as the client wrote it."""
    if not path.startswith("/collections/"):
        return None
    name = path[13:].split("/", 1)[0]
    return name or None
