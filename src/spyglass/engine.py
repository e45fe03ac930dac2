"""The engine: validates what clients send, encodes it, and calls the store.

Everything a client can get wrong is checked here, once, for every store and
every entry point (HTTP and CLI), and reported as a ``ProblemError`` naming
the field. The store below receives only valid, encoded input.
"""

from __future__ import annotations

import functools
import math
import re
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import numpy as np

from spyglass import filters
from spyglass.auth.tenancy import shown
from spyglass.cache import (
    Cache,
    MemoryCache,
    dump_hits,
    dump_vector,
    embedding_key,
    load_hits,
    load_vector,
    search_key,
)
from spyglass.encoders import ENCODERS, load_encoder
from spyglass.encoders.base import Encoder
from spyglass.encoders.batching import BatchingEncoder
from spyglass.encoders.metered import MeteredEncoder, OnCall
from spyglass.errors import ConfigError, InvalidRequest, PayloadTooLarge, Unavailable
from spyglass.fusion import fuse
from spyglass.images import decode_image, fetch_image
from spyglass.images.decode import base64_image_bytes, sniff_format
from spyglass.keywords import query_terms
from spyglass.overload.deadline import check as check_deadline
from spyglass.schema import CollectionIn, SearchIn
from spyglass.settings import Settings

if TYPE_CHECKING:
    from PIL import Image

from spyglass.stores.base import (
    CollectionInfo,
    CollectionSpec,
    Hit,
    IndexParams,
    IndexState,
    Item,
    KeywordQuery,
    Metric,
    Query,
    Store,
    StoredFile,
)


class ItemLike(Protocol):
    """An item to upsert: an API ``ItemIn`` or a loader ``Record``."""

    @property
    def id(self) -> str: ...
    @property
    def vector(self) -> list[float] | np.ndarray | None: ...
    @property
    def text(self) -> str | None: ...
    @property
    def payload(self) -> dict[str, Any]: ...
    @property
    def image(self) -> bytes | str | None:
        """Raw file bytes (ingest) or base64 text (the API); an API item may also carry
        ``image_url``."""


MAX_PAYLOAD_DEPTH = 32
#: A collection name, qualified by its tenant (``acme~products``) unless the default tenant's.
NAME_PATTERN = re.compile(r"(?:[A-Za-z0-9][A-Za-z0-9_.-]{0,63}~)?[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
ENCODER_NAMES = ("none", *ENCODERS)


class Encoders:
    """The encoders of one process, each loaded once on first use."""

    def __init__(self, settings: Settings, on_call: OnCall | None = None) -> None:
        self._settings = settings
        self._on_call = on_call
        self._loaded: dict[str, Encoder] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> Encoder:
        """The loaded encoder ``name``; ``ConfigError`` when this server cannot load it."""
        encoder = self._loaded.get(name)
        if encoder is None:
            with self._lock:
                encoder = self._loaded.get(name)
                if encoder is None:
                    encoder = load_encoder(name, self._settings)
                    if self._on_call is not None:
                        encoder = MeteredEncoder(encoder, self._on_call)
                    settings = self._settings
                    if "text" in encoder.inputs and settings.encoder_batch > 1:
                        encoder = BatchingEncoder(
                            encoder,
                            settings.encoder_batch,
                            settings.encoder_batch_wait_ms,
                            settings.encoder_batch_workers,
                        )
                    self._loaded[name] = encoder
        return encoder

    def close(self) -> None:
        """Stop the batching threads and close what the encoders hold open (a remote
        encoder's connections); calls after this run unbatched."""
        for encoder in self._loaded.values():
            layer: Any = encoder
            while layer is not None:  # the batcher, the meter, then the encoder itself
                if callable(type(layer).__dict__.get("close")):
                    layer.close()
                layer = layer.__dict__.get("inner")

    def loaded(self) -> list[str]:
        return sorted(self._loaded)


class Engine:
    """Collections, items and search over one store, with one set of encoders."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        cache: Cache | None = None,
        on_encode: OnCall | None = None,
        on_collection: Callable[[str, str], None] | None = None,
    ) -> None:
        """``on_encode`` hears of every model call (encoder, batch size, seconds);
        ``on_collection`` of every collection looked up (the name its tenant gave it,
        its encoder), so admission control can give its searches their lane."""
        self.settings = settings
        self.store = store
        self.encoders = Encoders(settings, on_encode)
        self.cache = cache
        self.on_collection = on_collection
        self._plain: dict[str, bool] = {}
        """Collections looked up so far: whether they hold plain vectors (no encoder)."""
        self._widen: dict[str, float] = {}
        """And how many candidates per hit their index re-scores (a quantized one)."""

    def warm_up(self) -> dict[str, str]:
        """Load the encoders and indexes the existing collections use, so the first query
        is fast (a face organization is ready before ``/readyz`` says so).

        Returns the encoders that failed to load, with why (a missing extra, an
        unset model path): the server still starts, ``/readyz`` reports them and
        their collections answer 503 until the setting is fixed.
        """
        failed: dict[str, str] = {}
        for info in self.store.list_collections():
            self.store.warm(info.spec.name)
            if info.spec.encoder != "none" and info.spec.encoder not in failed:
                try:
                    self.encoders.get(info.spec.encoder)
                except ConfigError as exc:
                    failed[info.spec.encoder] = str(exc)
        return failed

    def encoder(self, name: str, collection: str | None = None) -> Encoder:
        """The loaded encoder ``name``: for a new collection (a 422 naming ``encoder`` if it
        cannot load here) or for an existing ``collection`` (a 503: the server's setup)."""
        try:
            return self.encoders.get(name)
        except ConfigError as exc:
            if collection is None:
                raise InvalidRequest(str(exc), field="encoder") from exc
            raise Unavailable(f"collection {collection!r} cannot encode: {exc}") from exc

    # collections

    def create_collection(self, name: str, body: CollectionIn) -> tuple[CollectionInfo, bool]:
        check_name(name)
        if body.encoder not in ENCODER_NAMES:
            raise InvalidRequest(
                f"unknown encoder {body.encoder!r}; known: {', '.join(ENCODER_NAMES)}",
                field="encoder",
            )
        dim = body.dim
        metric: Metric = body.metric or "cosine"
        if body.encoder != "none":
            encoder = self.encoder(body.encoder)
            if dim is not None and dim != encoder.dim:
                raise InvalidRequest(
                    f"encoder {body.encoder!r} makes {encoder.dim}-d vectors, not {dim}",
                    field="dim",
                )
            dim = encoder.dim
            metric = body.metric or _metric(encoder.metric)
        if dim is None:
            raise InvalidRequest("dim is required when encoder is 'none'", field="dim")
        spec = CollectionSpec(
            name=name,
            dim=dim,
            metric=metric,
            encoder=body.encoder,
            index=IndexParams(**body.index.model_dump(exclude_none=True)),
            options=check_options(body.encoder, body.options),
        )
        return self.store.create_collection(spec)

    def get_collection(self, name: str) -> CollectionInfo:
        check_name(name)
        info = self.store.get_collection(name)
        self._plain[name] = info.spec.encoder == "none"
        self._widen[name] = max(1.0, info.spec.index.rescored)
        if self.on_collection is not None:
            self.on_collection(shown(name), info.spec.encoder)
        return info

    def index_state(self, name: str) -> IndexState | None:
        check_name(name)
        return self.store.index_state(name)

    # items

    def upsert(self, name: str, items: Sequence[ItemLike]) -> int:
        """Check, encode and store a batch; returns the collection's new version."""
        self._check_batch(len(items), "items")
        info = self.get_collection(name)
        encoder = None if info.spec.encoder == "none" else self.encoder(info.spec.encoder, name)
        vectors: list[np.ndarray | None] = [None] * len(items)
        given: list[int] = []
        texts: list[int] = []
        images: list[int] = []
        for i, item in enumerate(items):
            check_payload(item.payload, f"items[{i}].payload")
            image = item.image is not None or getattr(item, "image_url", None) is not None
            if item.vector is not None:
                if image:
                    raise InvalidRequest(
                        "give a vector or an image, not both", field=f"items[{i}].image"
                    )
                given.append(i)
            elif image:
                self._takes(encoder, info, "image", f"items[{i}].image", f"items[{i}].vector")
                images.append(i)
            elif item.text is not None:
                self._takes(encoder, info, "text", f"items[{i}].text", f"items[{i}].vector")
                texts.append(i)
            else:
                raise InvalidRequest(
                    "an item needs a vector, a text or an image", field=f"items[{i}]"
                )
        if given:
            matrix = self._vectors(
                info, [items[i].vector for i in given], "items[{}].vector", given
            )
            for i, row in zip(given, matrix, strict=True):
                vectors[i] = row
        if texts:
            assert encoder is not None
            encoded = encoder.encode([items[i].text or "" for i in texts])
            for i, row in zip(texts, encoded, strict=True):
                vectors[i] = row
        files: dict[int, StoredFile] = {}
        if images:
            assert encoder is not None
            decoded: list[Image.Image] = []
            for i in images:
                file, picture = self.image_file_of(items[i], f"items[{i}]")
                decoded.append(picture)
                if self.settings.keep_images:
                    files[i] = file
            encoded = _encode_images(encoder, decoded, [f"items[{i}].image" for i in images])
            for i, row in zip(images, encoded, strict=True):
                vectors[i] = row
        stored = [
            Item(id=item.id, vector=vector, text=item.text, payload=item.payload, file=files.get(i))
            for i, (item, vector) in enumerate(zip(items, vectors, strict=True))
            if vector is not None
        ]
        return self.store.upsert(name, stored)

    def get_item(self, name: str, item_id: str) -> Item:
        check_name(name)
        return self.store.get_item(name, item_id)

    def get_file(self, name: str, item_id: str) -> StoredFile:
        check_name(name)
        return self.store.get_file(name, item_id)

    def delete_items(self, name: str, ids: Sequence[str]) -> tuple[int, int]:
        check_name(name)
        self._check_batch(len(ids), "ids")
        return self.store.delete_items(name, ids)

    # search

    def runs_inline(self, name: str, request: SearchIn) -> bool:
        """Whether ``request`` is a search so short and so free of waiting that a worker
        serves it on its event loop instead of handing it to a thread.

        A nearest-neighbour search for a plain vector, in a collection of plain vectors
        that this process's memory holds, with no filter to evaluate, no brute force and
        a modest k and beam, costs a fraction of a millisecond of CPU; handing it to a
        thread and back costs about as much again (two wake-ups and the interpreter
        lock changing hands), and a thread that must wait for the lock is what makes
        one core serve fewer searches. Anything else (encoders, filters, remote
        stores or caches, large k) goes to a thread, where it cannot stall the loop.
        """
        return (
            self.store.local
            and (self.cache is None or isinstance(self.cache, MemoryCache))
            and request.vector is not None
            and request.filter is None
            and not request.exact
            and request.k <= INLINE_MAX_K
            and (request.ef or 0) <= INLINE_MAX_EF
            and self._plain.get(name, False)
            and request.k * self._widen.get(name, 1.0) <= INLINE_MAX_EF
        )

    def search_plain(self, name: str, request: SearchIn) -> list[Hit] | None:
        """The hits of one plain vector search by the shortest way; None when
        ``request`` asks for anything else (:meth:`search` then answers it, errors
        included). The hottest route, with none of the general path's bookkeeping
        for batches, modes, encoders and the cache."""
        if (
            self.cache is not None
            or request.vector is None
            or request.filter is not None
            or request.exact
            or request.mode not in (None, "vector")
            or request.k > self.settings.max_k
            or request.weights is not None
            or request.dominant_colors
            or any(
                value is not None
                for value in (request.text, request.image, request.image_url, request.colors)
            )
        ):
            return None
        check_deadline()
        info = self.get_collection(name)
        if info.spec.encoder != "none":
            return None
        query = Query(
            vector=self._vector(info, request.vector, "vector"), k=request.k, ef=request.ef
        )
        return self.store.search(name, [query], min_version=request.after_version or 0)[0]

    def search(self, name: str, requests: Sequence[SearchIn], field: str = "") -> list[list[Hit]]:
        """Hits per request, best first; ``field`` prefixes error fields (batch searches)."""
        self._check_batch(len(requests), "queries")
        info = self.get_collection(name)
        encoder = None if info.spec.encoder == "none" else self.encoder(info.spec.encoder, name)
        texts: list[int] = []
        vectors: dict[int, np.ndarray] = {}
        kinds: list[str] = []
        modes: list[str] = []
        for i, request in enumerate(requests):
            check_deadline()
            at = functools.partial(_at, field, i)
            given = [key for key in QUERY_KINDS if getattr(request, key) is not None]
            if len(given) != 1:
                raise InvalidRequest(
                    f"give exactly one of {', '.join(QUERY_KINDS)}"
                    + (f"; got {' and '.join(given)}" if given else ""),
                    field=at(given[0] if given else "vector"),
                )
            if request.k > self.settings.max_k:
                raise InvalidRequest(
                    f"k is {request.k}; the most this server returns is {self.settings.max_k}",
                    field=at("k"),
                )
            if request.weights is not None and request.colors is None:
                raise InvalidRequest("weights go with colors", field=at("weights"))
            if request.dominant_colors and not hasattr(encoder, "dominant_colors"):
                raise InvalidRequest(
                    "dominant_colors is for color collections", field=at("dominant_colors")
                )
            kind = given[0]
            kinds.append(kind)
            modes.append(_mode(request.mode, kind, encoder, at("mode")))
            if kind == "vector":
                vectors[i] = self._vector(info, request.vector or [], at("vector"))
            elif kind == "text":
                if not request.text:
                    raise InvalidRequest("text must not be empty", field=at("text"))
                if modes[i] != "keyword":
                    self._takes(encoder, info, "text", at("text"))
                    texts.append(i)
            elif kind == "colors":
                self._takes(encoder, info, "colors", at("colors"))
                assert encoder is not None and request.colors is not None
                palette = encoder.encode_palette(request.colors, request.weights, at("colors"))
                vectors[i] = palette[0]
            else:
                self._takes(encoder, info, "image", at(kind))
                assert encoder is not None
                image = self.image_of(request, f"{field}[{i}]" if field else "")
                vectors[i] = _encode_images(encoder, [image], [at(kind)])[0]
        if texts:
            assert encoder is not None
            check_deadline()
            rows = self._embed(encoder, [requests[i].text or "" for i in texts])
            vectors.update(zip(texts, rows, strict=True))
        reranked = [
            encoder is not None
            and request.rerank
            and modes[i] == "vector"
            and kinds[i] in encoder.reranks
            for i, request in enumerate(requests)
        ]
        candidates = self.settings.hybrid_candidates
        queries: dict[int, Query] = {}
        keyword_queries: dict[int, KeywordQuery] = {}
        for i, request in enumerate(requests):
            flt = filters.parse(request.filter, field=_at(field, i, "filter"))
            k = request.k
            if reranked[i]:
                k = max(k, self.settings.rerank_candidates)
            elif modes[i] == "hybrid":
                k = max(k, candidates)
            if modes[i] != "keyword":
                queries[i] = Query(
                    vector=vectors[i],
                    k=k,
                    filter=flt,
                    ef=request.ef,
                    exact=request.exact,
                    vectors=reranked[i] or request.dominant_colors > 0,
                )
            if modes[i] != "vector":
                keyword_queries[i] = KeywordQuery(query_terms(request.text or ""), k, flt)
        after = max(request.after_version or 0 for request in requests)
        cached = self.cache is not None and after <= info.version
        keys = [
            search_key(name, info.version, request.model_dump(mode="json", exclude=NOT_KEYED))
            if cached and kinds[i] in CACHED_KINDS
            else None
            for i, request in enumerate(requests)
        ]
        results: list[list[Hit] | None] = [self._cached_hits(key) for key in keys]
        missing = [i for i, found in enumerate(results) if found is None]
        if missing:
            check_deadline()
            # Hits stored under info.version must not predate it (a lagging replica).
            floor = max(after, info.version if any(keys) else 0)
            by_vector = _by_position(queries, missing, self.store.search, name, floor)
            by_words = _by_position(
                keyword_queries, missing, self.store.keyword_search, name, floor
            )
            for i in missing:
                if modes[i] == "keyword":
                    hits = by_words[i]
                elif modes[i] == "hybrid":
                    weights = (
                        self.settings.hybrid_vector_weight,
                        self.settings.hybrid_keyword_weight,
                    )
                    hits = fuse(
                        [(weights[0], by_vector[i]), (weights[1], by_words[i])],
                        rrf_k=self.settings.hybrid_rrf_k,
                        k=requests[i].k,
                    )
                else:
                    hits = by_vector[i]
                if reranked[i] and hits:
                    assert encoder is not None
                    check_deadline()
                    hits = rerank_hits(encoder, vectors[i], hits, requests[i].k)
                if requests[i].dominant_colors:
                    _add_colors(encoder, hits, requests[i].dominant_colors)
                key = keys[i]
                if key is not None and self.cache is not None:
                    self.cache.set(key, dump_hits(hits))
                results[i] = hits
        return [hits or [] for hits in results]

    def _cached_hits(self, key: bytes | None) -> list[Hit] | None:
        data = None if key is None or self.cache is None else self.cache.get(key)
        if data is None:
            return None
        try:
            return load_hits(data)
        except ValueError:
            return None

    def _embed(self, encoder: Encoder, texts: list[str]) -> np.ndarray:
        """Vectors of ``texts``, from the embedding cache where it has them."""
        cache = self.cache
        if cache is None:
            return encoder.encode(texts)
        name = getattr(encoder, "cache_name", encoder.name)  # remote: the URL and model too
        keys = [embedding_key(name, text) for text in texts]
        rows: list[np.ndarray | None] = []
        for key in keys:
            data = cache.get(key)
            rows.append(None if data is None else load_vector(data))
        missing = [i for i, row in enumerate(rows) if row is None or row.shape != (encoder.dim,)]
        if missing:
            encoded = encoder.encode([texts[i] for i in missing])
            for i, row in zip(missing, encoded, strict=True):
                rows[i] = row
                cache.set(keys[i], dump_vector(row))
        return np.stack([row for row in rows if row is not None])

    # checks

    def _check_batch(self, size: int, field: str) -> None:
        if size == 0:
            raise InvalidRequest(f"{field} must not be empty", field=field)
        if size > self.settings.max_batch:
            raise PayloadTooLarge(
                f"{size} {field} in one request; the most is {self.settings.max_batch}",
                field=field,
            )

    def _takes(
        self,
        encoder: Encoder | None,
        info: CollectionInfo,
        kind: str,
        field: str,
        missing: str | None = None,
    ) -> None:
        """Refuse an input the collection's encoder cannot turn into a vector.

        ``missing`` is the field to name when the collection has no encoder at all
        (an item's ``vector``), if not ``field`` itself.
        """
        if encoder is None:
            raise InvalidRequest(
                f"collection {info.spec.name!r} has no encoder; send a vector",
                field=field if missing is None else missing,
            )
        if kind not in encoder.inputs:
            takes = " or ".join(sorted(encoder.inputs))
            raise InvalidRequest(
                f"collection {info.spec.name!r} uses the {encoder.name!r} encoder, which takes"
                f" {takes}, not {kind}",
                field=field,
            )

    def image_of(self, item: Any, prefix: str = "") -> Image.Image:
        """The decoded image of an item or query, from bytes, base64 or a URL."""
        return self.image_file_of(item, prefix)[1]

    def image_file_of(self, item: Any, prefix: str = "") -> tuple[StoredFile, Image.Image]:
        """The image file of an item or query (its bytes and media type) and the image
        decoded from it, from bytes, base64 or a URL."""
        settings = self.settings
        where = f"{prefix}." if prefix else ""
        image = getattr(item, "image", None)
        url = getattr(item, "image_url", None)
        if image is not None and url is not None:
            raise InvalidRequest("give image or image_url, not both", field=f"{where}image_url")
        limits = {"max_bytes": settings.max_image_bytes, "max_pixels": settings.max_image_pixels}
        if image is not None:
            data = (
                image
                if isinstance(image, bytes)
                else base64_image_bytes(
                    image, field=f"{where}image", max_bytes=settings.max_image_bytes
                )
            )
            decoded = decode_image(data, field=f"{where}image", **limits)
            return _stored(data, decoded), decoded
        if not settings.image_urls:
            raise InvalidRequest(
                "this server does not fetch images by URL (setting image_urls); send the image",
                field=f"{where}image_url",
            )
        data = fetch_image(
            str(url),
            field=f"{where}image_url",
            max_bytes=settings.max_image_bytes,
            timeout=settings.image_url_timeout,
        )
        decoded = decode_image(data, field=f"{where}image_url", **limits)
        return _stored(data, decoded), decoded

    def _vectors(
        self,
        info: CollectionInfo,
        rows: Sequence[list[float] | np.ndarray | None],
        field: str,
        positions: Sequence[int],
    ) -> np.ndarray:
        """Many vectors checked at once; on a problem, the first bad one is named."""
        try:
            matrix = np.asarray(rows, dtype=np.float32)
        except (ValueError, TypeError):
            matrix = np.empty(0, dtype=np.float32)
        if matrix.shape == (len(rows), info.spec.dim) and np.isfinite(matrix).all():
            if info.spec.metric != "cosine" or np.einsum("ij,ij->i", matrix, matrix).all():
                return matrix
        for row, position in zip(rows, positions, strict=True):
            self._vector(info, row if row is not None else [], field.format(position))
        return matrix

    def _vector(
        self, info: CollectionInfo, values: list[float] | np.ndarray, field: str
    ) -> np.ndarray:
        vector = np.asarray(values, dtype=np.float32)
        if vector.shape != (info.spec.dim,):
            raise InvalidRequest(
                f"vector has {vector.size} dimensions; collection {info.spec.name!r} "
                f"has {info.spec.dim}",
                field=field,
            )
        if not np.isfinite(vector).all():
            raise InvalidRequest("vector holds NaN or infinity", field=field)
        if info.spec.metric == "cosine" and not vector.any():
            raise InvalidRequest("a zero vector has no direction for cosine", field=field)
        return vector


COLLECTION_OPTIONS: dict[str, dict[str, tuple[float, float]]] = {
    "face": {"threshold": (0.0, 2.0)},
}
"""The options each encoder's collections take, with their open-closed numeric range."""


def check_options(encoder: str, options: dict[str, Any]) -> dict[str, Any]:
    """A collection's options, checked against what its encoder takes."""
    known = COLLECTION_OPTIONS.get(encoder, {})
    for key, value in options.items():
        field = f"options.{key}"
        if key not in known:
            takes = ", ".join(sorted(known)) or "none"
            raise InvalidRequest(
                f"the {encoder!r} encoder takes no option {key!r} (options: {takes})", field=field
            )
        low, high = known[key]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidRequest("must be a number", field=field)
        if not low < value <= high:
            raise InvalidRequest(f"must be above {low} and at most {high}", field=field)
    return dict(options)


def check_name(name: str) -> None:
    """Collection names: 1-64 letters, digits, '_', '-', '.', starting with a letter or digit
    (after the ``tenant~`` of a tenant's collection)."""
    if not NAME_PATTERN.fullmatch(name):
        raise InvalidRequest(
            f"bad collection name {name!r}: use 1-64 letters, digits, '_', '-' or '.',"
            " starting with a letter or digit",
            field="name",
        )


def check_payload(value: object, field: str, depth: int = 0) -> None:
    """Payloads are plain JSON: finite numbers, 64-bit integers, at most 32 levels deep."""
    if depth > MAX_PAYLOAD_DEPTH:
        raise InvalidRequest(f"nested deeper than {MAX_PAYLOAD_DEPTH} levels", field=field)
    if isinstance(value, dict):
        for key, inner in value.items():
            check_payload(inner, f"{field}.{key}", depth + 1)
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            check_payload(inner, f"{field}[{index}]", depth + 1)
    elif isinstance(value, float) and not math.isfinite(value):
        raise InvalidRequest("NaN and infinity are not JSON numbers", field=field)
    elif isinstance(value, int) and not -(2**63) <= value < 2**64:
        raise InvalidRequest("integers must fit in 64 bits", field=field)


def _at(prefix: str, index: int, name: str) -> str:
    return f"{prefix}[{index}].{name}" if prefix else name


#: The largest k and beam (ef) of a search served on the event loop (see ``runs_inline``).
INLINE_MAX_K = 100
INLINE_MAX_EF = 512

QUERY_KINDS = ("vector", "text", "image", "image_url", "colors")
"""What a search may give to find neighbours of; exactly one per query."""

CACHED_KINDS = frozenset({"vector", "text", "colors"})
"""Queries whose results are cached; an image costs more to key than to search again, and
what a URL points at may change."""
NOT_KEYED = {"after_version"}
Q = TypeVar("Q", Query, KeywordQuery)
"""Request fields that do not change the answer, left out of the cache key."""


def _by_position(
    queries: dict[int, Q],
    wanted: list[int],
    search: Callable[..., list[list[Hit]]],
    name: str,
    min_version: int,
) -> dict[int, list[Hit]]:
    """The hits of the ``wanted`` requests that have a query in ``queries``, from one
    ``search`` call (the store's vector or keyword search), by request position."""
    at = [i for i in wanted if i in queries]
    if not at:
        return {}
    found = search(name, [queries[i] for i in at], min_version=min_version)
    return dict(zip(at, found, strict=True))


def _mode(given: str | None, kind: str, encoder: Encoder | None, field: str) -> str:
    """How a query is matched: ``given``, checked against the query and the collection,
    or the default (hybrid for a text query in a text collection, else vector)."""
    inputs = encoder.inputs if encoder is not None else frozenset()
    takes_text = "text" in inputs
    if given is None:
        return "hybrid" if kind == "text" and inputs == {"text"} else "vector"
    if given != "vector" and kind != "text":
        raise InvalidRequest(f"mode {given!r} matches words: send a text query", field=field)
    if given == "hybrid" and not takes_text:
        raise InvalidRequest(
            "mode 'hybrid' needs a collection whose encoder embeds text; use 'keyword'",
            field=field,
        )
    return given


def _add_colors(encoder: Any, hits: list[Hit], count: int) -> None:
    """Give each hit its ``count`` dominant colors (a color encoder's reading of its vector)."""
    for hit in hits:
        if hit.vector is not None:
            hit.colors = [
                (color.hex, round(float(color.weight), 4))
                for color in encoder.dominant_colors(hit.vector, count)
            ]


def _stored(data: bytes, image: Image.Image) -> StoredFile:
    """An image's file as the store keeps it: its bytes and the media type of its format
    (read from the bytes: the decoded ``image`` may be a converted copy)."""
    kind = sniff_format(data) or image.format
    return StoredFile(data, f"image/{kind.lower()}" if kind else "application/octet-stream")


def _encode_images(encoder: Encoder, images: list[Image.Image], fields: list[str]) -> np.ndarray:
    """Encode a batch; when the encoder refuses one image, name that image's field."""
    try:
        return encoder.encode_images(images)
    except InvalidRequest as exc:
        if len(images) == 1:
            raise InvalidRequest(exc.detail, field=fields[0]) from exc
    for image, field in zip(images, fields, strict=True):
        try:
            encoder.encode_images([image])
        except InvalidRequest as exc:
            raise InvalidRequest(exc.detail, field=field) from exc
    raise AssertionError("the batch was refused but no image alone was")


def rerank_hits(encoder: Encoder, query: np.ndarray, hits: list[Hit], k: int) -> list[Hit]:
    """The ``k`` best of ``hits`` (fetched with their vectors) by the encoder's finer
    distance; each score is minus that distance, and each hit keeps its vector."""
    candidates = np.stack([hit.vector for hit in hits if hit.vector is not None])
    distances = encoder.rerank(query, candidates)
    if distances is None:
        return hits[:k]
    order = np.argsort(distances, kind="stable")[:k]
    return [
        Hit(hits[j].id, -float(distances[j]), hits[j].payload, hits[j].text, hits[j].vector)
        for j in order.tolist()
    ]


def _metric(name: str) -> Metric:
    if name == "ip":
        return "ip"
    return "l2" if name == "l2" else "cosine"
