"""The engine: validates what clients send, encodes it, and calls the store.

Everything a client can get wrong is checked here, once, for every store and
every entry point (HTTP and CLI), and reported as a ``ProblemError`` naming
the field. The store below receives only valid, encoded input.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from spyglass import filters
from spyglass.encoders import ENCODERS, create_encoder
from spyglass.encoders.base import Encoder
from spyglass.errors import InvalidRequest, PayloadTooLarge
from spyglass.schema import CollectionIn, SearchIn
from spyglass.settings import Settings
from spyglass.stores.base import (
    CollectionInfo,
    CollectionSpec,
    Hit,
    IndexParams,
    Item,
    Query,
    Store,
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


MAX_PAYLOAD_DEPTH = 32
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
ENCODER_NAMES = ("none", *ENCODERS)


class Encoders:
    """The encoders of one process, each loaded once on first use."""

    def __init__(self, threads: int) -> None:
        self._threads = threads
        self._loaded: dict[str, Encoder] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> Encoder:
        encoder = self._loaded.get(name)
        if encoder is None:
            with self._lock:
                encoder = self._loaded.get(name)
                if encoder is None:
                    encoder = create_encoder(name, threads=self._threads)
                    self._loaded[name] = encoder
        return encoder

    def loaded(self) -> list[str]:
        return sorted(self._loaded)


class Engine:
    """Collections, items and search over one store, with one set of encoders."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self.encoders = Encoders(settings.encoder_threads or 1)

    def warm_up(self) -> None:
        """Load the encoders the existing collections use, so the first query is fast."""
        for info in self.store.list_collections():
            if info.spec.encoder != "none":
                self.encoders.get(info.spec.encoder)

    # collections

    def create_collection(self, name: str, body: CollectionIn) -> tuple[CollectionInfo, bool]:
        check_name(name)
        if body.encoder not in ENCODER_NAMES:
            raise InvalidRequest(
                f"unknown encoder {body.encoder!r}; known: {', '.join(ENCODER_NAMES)}",
                field="encoder",
            )
        dim = body.dim
        if body.encoder != "none":
            encoder_dim = self.encoders.get(body.encoder).dim
            if dim is not None and dim != encoder_dim:
                raise InvalidRequest(
                    f"encoder {body.encoder!r} makes {encoder_dim}-d vectors, not {dim}",
                    field="dim",
                )
            dim = encoder_dim
        if dim is None:
            raise InvalidRequest("dim is required when encoder is 'none'", field="dim")
        spec = CollectionSpec(
            name=name,
            dim=dim,
            metric=body.metric,
            encoder=body.encoder,
            index=IndexParams(**body.index.model_dump()),
        )
        return self.store.create_collection(spec)

    def get_collection(self, name: str) -> CollectionInfo:
        check_name(name)
        return self.store.get_collection(name)

    # items

    def upsert(self, name: str, items: Sequence[ItemLike]) -> int:
        self._check_batch(len(items), "items")
        info = self.get_collection(name)
        vectors: list[np.ndarray | None] = [None] * len(items)
        given: list[int] = []
        to_encode: list[int] = []
        for i, item in enumerate(items):
            check_payload(item.payload, f"items[{i}].payload")
            if item.vector is not None:
                given.append(i)
            elif item.text is not None and info.spec.encoder != "none":
                to_encode.append(i)
            elif item.text is not None:
                raise InvalidRequest(
                    f"collection {name!r} has no encoder; send a vector", field=f"items[{i}].vector"
                )
            else:
                raise InvalidRequest("an item needs a vector or a text", field=f"items[{i}]")
        if given:
            matrix = self._vectors(
                info, [items[i].vector for i in given], "items[{}].vector", given
            )
            for i, row in zip(given, matrix, strict=True):
                vectors[i] = row
        if to_encode:
            encoded = self.encoders.get(info.spec.encoder).encode(
                [items[i].text or "" for i in to_encode]
            )
            for i, row in zip(to_encode, encoded, strict=True):
                vectors[i] = row
        stored = [
            Item(id=item.id, vector=vector, text=item.text, payload=item.payload)
            for item, vector in zip(items, vectors, strict=True)
            if vector is not None
        ]
        return self.store.upsert(name, stored)

    def get_item(self, name: str, item_id: str) -> Item:
        check_name(name)
        return self.store.get_item(name, item_id)

    def delete_items(self, name: str, ids: Sequence[str]) -> tuple[int, int]:
        check_name(name)
        self._check_batch(len(ids), "ids")
        return self.store.delete_items(name, ids)

    # search

    def search(self, name: str, requests: Sequence[SearchIn], field: str = "") -> list[list[Hit]]:
        self._check_batch(len(requests), "queries")
        info = self.get_collection(name)
        texts = [(i, r.text) for i, r in enumerate(requests) if r.vector is None and r.text]
        encoded: dict[int, np.ndarray] = {}
        if texts:
            if info.spec.encoder == "none":
                raise InvalidRequest(
                    f"collection {name!r} has no encoder; search with a vector",
                    field=_at(field, texts[0][0], "text"),
                )
            rows = self.encoders.get(info.spec.encoder).encode([t for _, t in texts])
            encoded = {i: row for (i, _), row in zip(texts, rows, strict=True)}
        queries = []
        for i, request in enumerate(requests):
            if (request.vector is None) == (request.text is None):
                raise InvalidRequest(
                    "give exactly one of vector or text", field=_at(field, i, "vector")
                )
            if request.k > self.settings.max_k:
                raise InvalidRequest(
                    f"k is {request.k}; the most this server returns is {self.settings.max_k}",
                    field=_at(field, i, "k"),
                )
            if request.vector is not None:
                vector = self._vector(info, request.vector, _at(field, i, "vector"))
            elif i in encoded:
                vector = encoded[i]
            else:
                raise InvalidRequest("text must not be empty", field=_at(field, i, "text"))
            flt = filters.parse(request.filter, field=_at(field, i, "filter"))
            queries.append(
                Query(vector=vector, k=request.k, filter=flt, ef=request.ef, exact=request.exact)
            )
        return self.store.search(name, queries)

    # checks

    def _check_batch(self, size: int, field: str) -> None:
        if size == 0:
            raise InvalidRequest(f"{field} must not be empty", field=field)
        if size > self.settings.max_batch:
            raise PayloadTooLarge(
                f"{size} {field} in one request; the most is {self.settings.max_batch}",
                field=field,
            )

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


def check_name(name: str) -> None:
    """Collection names: 1-64 letters, digits, '_', '-', '.', starting with a letter or digit."""
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
