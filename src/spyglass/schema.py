"""Request and response bodies of the HTTP API (and of the CLI, which builds the same)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from spyglass.stores.base import IndexParams, Quantization


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


_INDEX = IndexParams()  # the store's defaults, stated once


class IndexIn(Body):
    m: int = Field(_INDEX.m, ge=2, le=128, description="HNSW graph degree.")
    ef_construction: int = Field(
        _INDEX.ef_construction, ge=8, le=4096, description="HNSW build beam width."
    )
    ef_search: int = Field(
        _INDEX.ef_search,
        ge=1,
        le=10000,
        description="Default search beam width, and the floor of what each index build tunes"
        " it to (recall_target): 48 gives recall@10 >= 0.95 on 100k sentence embeddings"
        " (0.964-0.976), a million need about 200 (docs/benchmarks.md).",
    )
    quantization: Quantization = Field(
        _INDEX.quantization,
        description='How the index stores vectors: "none" (float32), "half" (float16, 2x'
        ' smaller), "sq8" (1 byte per dimension, 4x; embedded store), "pq" (1 byte per 8'
        ' dimensions, 32x at 384-d; embedded store), "binary" (1 bit per dimension, 32x;'
        " PostgreSQL store). The exact vectors stay on disk for re-scoring.",
    )
    recall_target: float = Field(
        _INDEX.recall_target,
        ge=0.0,
        le=1.0,
        description="Each index build raises the default beam width past ef_search until"
        " a sample of the collection's own vectors finds this share of their 10 nearest"
        " (embedded store; 0: never raised). A query's own ef still wins.",
    )
    rescore: bool = Field(
        _INDEX.rescore,
        description="Re-score a quantized index's candidates with the exact vectors, so"
        " that scores are exact and recall comes back.",
    )
    oversample: float | None = Field(
        None,
        ge=1.0,
        le=100.0,
        description="Candidates per result re-scored (with rescore, on a quantized index);"
        " omitted: 2 for half, 3 for sq8, 32 for pq, 16 for binary.",
    )


class CollectionIn(Body):
    dim: int | None = Field(
        None, ge=1, le=16000, description="Vector length; may be omitted when the encoder fixes it."
    )
    metric: Literal["cosine", "ip", "l2"] | None = Field(
        None, description="Omitted: the encoder's own (l2 for color and face), else cosine."
    )
    encoder: str = Field(
        "none",
        description='"none" (bring your own vectors), "text", "text-fast", "image", "clip",'
        ' "color" or "face".',
    )
    index: IndexIn = Field(default_factory=IndexIn)
    options: dict[str, Any] = Field(
        default_factory=dict,
        description='Encoder settings of this collection: face collections take {"threshold":'
        " 0.5} (the distance beyond which a face is unknown; default the face_threshold setting).",
    )


class CollectionOut(BaseModel):
    name: str
    dim: int
    metric: str
    encoder: str
    index: IndexIn
    options: dict[str, Any] = Field(default_factory=dict)
    count: int
    version: int = Field(description="Changes on every write to the collection.")
    created_at: float
    index_state: IndexStateOut | None = Field(
        None,
        description="The index's progress; in `GET /collections/{name}` on the embedded store.",
    )


class IndexStateOut(BaseModel):
    """How far the collection's index has come (embedded store only)."""

    indexed: int = Field(description="Items in the index snapshot.")
    tail: int = Field(
        description="Items written since the snapshot, searched exactly until the next build"
        " (`snapshot_tail`)."
    )
    deleted: int = Field(
        description="Items deleted or replaced that the snapshot still holds; past"
        " `compact_ratio` the next build leaves them out."
    )
    building: bool = Field(description="Whether a build runs now.")
    build_started: float | None = Field(None, description="When it started (Unix time).")
    build_added: int = Field(0, description="Items it has added so far.")
    build_to_add: int = Field(0, description="Items it adds in all.")
    last_build_s: float | None = Field(None, description="Seconds the last build took.")
    last_build_extended: bool | None = Field(
        None, description="Whether it extended the snapshot (false: built it from scratch)."
    )
    last_build_at: float | None = Field(None, description="When it finished (Unix time).")
    ef_search: int | None = Field(
        None,
        description="The beam width searches use when they name none: the collection's"
        " ef_search, raised by the last build until its recall estimate met recall_target.",
    )
    recall_estimate: float | None = Field(
        None,
        description="Recall@10 the last build measured at that beam width, on 200 of its"
        " own vectors asked as queries.",
    )


class CollectionList(BaseModel):
    collections: list[CollectionOut]


class ItemIn(Body):
    id: str = Field(min_length=1, max_length=512)
    vector: list[float] | None = None
    text: str | None = None
    image: str | None = Field(
        None, description="An image as base64 or a data: URL, for image encoders."
    )
    image_url: str | None = Field(
        None, description="An image to fetch, when the server allows it (setting image_urls)."
    )
    payload: dict[str, Any] = Field(default_factory=dict)

    @field_validator("id", mode="before")
    @classmethod
    def _int_ids(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        return value


class UpsertIn(Body):
    items: list[ItemIn]


class UpsertOut(BaseModel):
    upserted: int
    version: int


class ItemOut(BaseModel):
    id: str
    vector: list[float]
    text: str | None = None
    payload: dict[str, Any]


class DeleteIn(Body):
    ids: list[str]


class DeleteOut(BaseModel):
    deleted: int
    version: int


class SearchIn(Body):
    vector: list[float] | None = None
    text: str | None = None
    image: str | None = Field(None, description="A query image as base64 or a data: URL.")
    image_url: str | None = Field(None, description="A query image to fetch (setting image_urls).")
    colors: list[str] | None = Field(
        None, description='A palette for color collections: hex colors such as "#ff0000" or "0f0".'
    )
    weights: list[float] | None = Field(
        None, description="How much of each color (positive; normalised). Omitted: equal."
    )
    rerank: bool = Field(
        True,
        description="Rerank the candidates by the encoder's finer measure where it has one"
        " (color: Sinkhorn earth mover's distance). False: the index order only.",
    )
    k: int = Field(10, ge=1)
    mode: Literal["vector", "keyword", "hybrid"] | None = Field(
        None,
        description="How a text query is matched: by meaning (vector), by its words (keyword:"
        " BM25 over the items' texts; works without an encoder) or both, fused by rank"
        " (hybrid). Omitted: hybrid in text collections, vector otherwise.",
    )
    filter: dict[str, Any] | None = None
    ef: int | None = Field(None, ge=1, le=10000, description="HNSW beam width for this query.")
    exact: bool = Field(False, description="Brute-force search: exact, slower on big collections.")
    dominant_colors: int = Field(
        0,
        ge=0,
        le=16,
        description="Color collections: give each hit its this many dominant colors, as"
        ' `colors: [{"hex": "#rrggbb", "weight": 0.31}, ...]` (for swatches).',
    )
    after_version: int | None = Field(
        None,
        ge=0,
        description="Read your writes: a version a write returned. The search sees that write"
        " (on a PostgreSQL replica that has replayed it, else on the primary).",
    )


class ColorOut(BaseModel):
    hex: str
    weight: float


class HitOut(BaseModel):
    id: str
    score: float
    payload: dict[str, Any]
    text: str | None = None
    colors: list[ColorOut] | None = Field(
        None, description="Only when the search asked for dominant_colors."
    )


class SearchOut(BaseModel):
    hits: list[HitOut]
    took_ms: float


class BatchSearchIn(Body):
    queries: list[SearchIn]


class BatchSearchOut(BaseModel):
    results: list[list[HitOut]]
    took_ms: float


class Health(BaseModel):
    status: str
    checks: dict[str, str] = Field(default_factory=dict)
