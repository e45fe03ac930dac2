"""The one declaration of every Spyglass setting.

Each field below is a setting: its name, type, default and help. The CLI flags
of ``spyglass serve`` (``--data-dir``), the ``SPYGLASS_*`` environment variables,
the keys of the config file (TOML or JSON, ``--config``) and docs/settings.md
are all derived from it. Precedence, highest first: CLI flag, environment
variable, config file, default.
"""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from spyglass.errors import ConfigError

ENV_PREFIX = "SPYGLASS_"


class SourceSetting(BaseModel):
    """Documents ``spyglass serve`` keeps ingested: one entry of the ``sources`` setting."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: Path = Field(description="A folder of documents, or one document file.")
    types: tuple[str, ...] = Field(
        (), description='File types to read ("md", ".pdf"); empty: every document type.'
    )
    recursive: bool = Field(True, description="Read the folders inside the folder too.")
    collection: str | None = Field(
        None, description="Collection to ingest into; unset: the default_collection setting."
    )
    encoder: str = Field("text", description="Encoder of the collection, if it is created.")


class Settings(BaseSettings):
    """Server, store and limit settings; see docs/settings.md for the generated table."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)

    config: Path | None = Field(
        None, description="TOML or JSON file with settings (keys are the setting names)."
    )
    data_dir: Path = Field(
        Path("spyglass-data"),
        description="Directory of the embedded store: the SQLite file and the index snapshots.",
    )
    store: str | None = Field(
        None,
        description="Where collections live: a directory (the embedded store) or a"
        " postgresql://user:password@host/db URL (PostgreSQL with pgvector, shared by every"
        " instance; API keys then live there too). Unset: the embedded store in data_dir.",
    )
    store_replicas: str = Field(
        "",
        description="Comma-separated postgresql:// URLs of streaming replicas of the store;"
        " searches and reads go to a healthy one (round robin), writes to the primary.",
    )
    store_pool_size: int = Field(
        10, ge=1, le=1000, description="Most PostgreSQL connections per worker, per server."
    )
    store_timeout_s: float = Field(
        5.0,
        gt=0,
        description="Longest wait to connect to PostgreSQL or for a free pooled connection;"
        " past it the request is a 503.",
    )
    store_statement_timeout_s: float = Field(
        30.0, gt=0, description="Longest a single PostgreSQL statement may run (0.001 s steps)."
    )
    replica_wait_s: float = Field(
        0.5,
        ge=0,
        description="How long a read-your-writes search waits for a replica to replay the"
        " write it names before asking the primary.",
    )
    replica_retry_s: float = Field(
        5.0, gt=0, description="How long a replica that failed is skipped before it is tried again."
    )
    host: str = Field("127.0.0.1", description="Address to listen on.")
    port: int = Field(8000, ge=0, le=65535, description="Port to listen on.")
    workers: int = Field(
        0,
        ge=0,
        le=64,
        description="Worker processes; they share one data directory and index. 0: one per CPU"
        " core (search is CPU-bound, and FAISS releases the GIL, so a core per worker keeps"
        " every core busy; each extra worker costs its own model sessions, not the index).",
    )
    log_level: str = Field("info", description="Log level: debug, info, warning or error.")
    max_k: int = Field(1000, ge=1, description="Largest k a search may ask for.")
    max_batch: int = Field(
        1000,
        ge=1,
        description="Most items per upsert, ids per delete and queries per batch search.",
    )
    search_threads: int = Field(
        8,
        ge=1,
        description="Threads per worker for blocking work other than searches (writes, reads,"
        " asks); each search lane has threads of its own (`admission_search_in_flight`).",
    )
    encoder_threads: int | None = Field(
        None,
        ge=1,
        description="Threads one model inference may use. Unset: 1 in a server (its workers"
        " and threads already share the cores), every core in `spyglass ingest`.",
    )
    snapshot_tail: int = Field(
        20000,
        ge=1,
        description="Writes newer than the index snapshot that trigger a background build,"
        " which extends the snapshot with them.",
    )
    compact_ratio: float = Field(
        0.2,
        gt=0,
        le=1,
        description="Share of a snapshot's items deleted or replaced since it was built from"
        " scratch past which the collection is indexed again without them (compaction)"
        " instead of the snapshot being extended.",
    )
    exact_below: int = Field(
        5000,
        ge=0,
        description="Collections or filter matches smaller than this are searched exactly.",
    )

    max_image_bytes: int = Field(
        20 * 1024 * 1024, ge=1024, description="Largest image file a request or ingest may carry."
    )
    max_image_pixels: int = Field(
        40_000_000,
        ge=1024,
        description="Most pixels (width x height) an image may have; refused before decoding.",
    )
    keep_images: bool = Field(
        True,
        description="Keep the image file an item was made from, in the store, so that"
        " GET /collections/{name}/images/{id} and the web UI can show it.",
    )
    image_urls: bool = Field(
        False,
        description="Accept images by URL (`image_url`). Private, loopback and link-local"
        " addresses are refused even then.",
    )
    image_url_timeout: float = Field(
        10.0, gt=0, le=300, description="Seconds to fetch one image by URL."
    )
    clip_model_path: Path | None = Field(
        None,
        description="Folder of a CLIP model exported to ONNX, for the `clip` encoder"
        " (see docs/encoders-images.md).",
    )
    rerank_candidates: int = Field(
        200,
        ge=1,
        le=10000,
        description="Index candidates a reranked search (color, accurate mode) reorders.",
    )
    color_sinkhorn_reg: float = Field(
        0.02,
        ge=0.002,
        description="Entropic regularisation of the Sinkhorn rerank of color search"
        " (smaller is closer to the exact distance, and needs more iterations).",
    )
    color_sinkhorn_iterations: int = Field(
        20, ge=1, le=10000, description="Sinkhorn iterations of the color rerank."
    )
    face_threshold: float = Field(
        0.6,
        gt=0,
        description="Face distance beyond which a face is `unknown` (collections may override).",
    )
    face_session_window: int = Field(
        10, ge=1, le=1000, description="Frames of a face session that confirmation looks at."
    )
    face_session_needed: int = Field(
        5, ge=1, le=1000, description="Frames of the window a person needs to be confirmed."
    )
    face_session_ttl: float = Field(
        600.0, gt=0, description="Seconds after its last frame that a face session is forgotten."
    )
    face_sessions: int = Field(
        10000, ge=1, description="Most face sessions a worker remembers (least recent dropped)."
    )
    chunk_tokens: int = Field(
        256, ge=16, le=8192, description="Most tokens in one document chunk (encoder's tokens)."
    )
    chunk_overlap: int = Field(
        32, ge=0, description="Tokens a document chunk repeats from the end of the one before."
    )
    image_batch: int = Field(
        64, ge=1, le=4096, description="Images per batch when `spyglass ingest` reads a folder."
    )
    compat_image_collection: str = Field(
        "products",
        description="Collection behind the Find This Fit routes `/search_by_image` and"
        " `/search_by_text`.",
    )
    compat_color_collection: str = Field(
        "colors", description="Collection behind the Chromatica route `GET /search`."
    )

    admission_search_in_flight: int | None = Field(
        None,
        ge=1,
        description="Vector searches (collections without an encoder) one worker runs at once,"
        " each on a thread of its own. Unset: the cores per worker (measured: more threads than"
        " cores only contend for Python's interpreter lock and queue unseen).",
    )
    admission_encoder_search_in_flight: int = Field(
        8,
        ge=1,
        description="Searches one worker runs at once in each encoder lane (text, image,"
        " color), on the lane's own threads; their queries share the encoder's micro-batches.",
    )
    admission_search_queue: int = Field(
        64, ge=0, description="Search requests that may wait for a slot; beyond this, 503."
    )
    admission_ingest_in_flight: int = Field(
        4, ge=1, description="Write requests one worker runs at once (separate from search)."
    )
    admission_ingest_queue: int = Field(
        8, ge=0, description="Write requests that may wait for a slot; beyond this, 503."
    )
    admission_other_in_flight: int = Field(
        64, ge=1, description="Other requests (reads, docs, admin) one worker runs at once."
    )
    admission_other_queue: int = Field(
        64, ge=0, description="Other requests that may wait for a slot; beyond this, 503."
    )
    admission_queue_wait_ms: int = Field(
        100,
        ge=0,
        description="Longest a request waits for a slot before a 503 (CoDel's interval).",
    )
    admission_target_ms: float = Field(
        5.0,
        gt=0,
        description="Longest a request waits for a slot once a queue has lasted"
        " `admission_queue_wait_ms` (CoDel's target); the newest is then served first.",
    )
    search_timeout_s: float = Field(
        30.0, gt=0, description="Time budget of a search request; over it, cancelled with 503."
    )
    ingest_timeout_s: float = Field(
        300.0, gt=0, description="Time budget of a write request (uploads and encoding)."
    )
    request_timeout_s: float = Field(30.0, gt=0, description="Time budget of other requests.")
    express_search: bool = Field(
        True,
        description="Answer plain vector searches (those a worker runs on its event loop)"
        " from the HTTP protocol, without the ASGI middleware and routing: the same answers,"
        " headers, access-log lines and metrics at about half the CPU. Off: every search"
        " goes through the ASGI app.",
    )
    admission_refusal_rate: float = Field(
        6000.0,
        gt=0,
        description="Most 503s one worker's HTTP protocol sends per second; requests refused"
        " past this pace wait, unread, for their turn (at most 1 s), so that clients which"
        " resend at once cannot spend the CPU on refusals (measured: about 90-120 µs each;"
        " the default is a little over half a core, about six times a worker's capacity for"
        " plain vector searches).",
    )
    retry_after_s: int = Field(
        1, ge=1, description="`Retry-After` seconds on a 503 from admission control."
    )
    max_search_body_bytes: int = Field(
        32 * 1024 * 1024,
        ge=1024,
        description="Largest search request body (keep above max_image_bytes x 4/3 for base64).",
    )
    max_ingest_body_bytes: int = Field(
        64 * 1024 * 1024, ge=1024, description="Largest write or upload request body."
    )
    max_body_bytes: int = Field(
        1024 * 1024, ge=1024, description="Largest body of any other request."
    )

    redis_url: str | None = Field(
        None,
        description="Redis for limits shared by every worker and machine"
        " (redis://host:6379/0); unset: each worker counts alone.",
    )
    rate_limit_search: str = Field(
        "",
        description="Search requests per caller (API key, else client address) in limits"
        ' notation, burst then sustained: "100/second;3000/minute". Empty: no limit.',
    )
    rate_limit_ingest: str = Field(
        "", description='Write requests per caller, e.g. "20/second;600/minute". Empty: no limit.'
    )
    rate_limit_other: str = Field(
        "", description='Other requests per caller, e.g. "200/second". Empty: no limit.'
    )
    rate_limit_admin: str = Field(
        "", description='Admin requests per caller, e.g. "10/second". Empty: no limit.'
    )
    rate_limit_fail_open: bool = Field(
        True,
        description="When Redis is unreachable, let requests through (and warn) instead of"
        " answering 503.",
    )
    trusted_proxies: str = Field(
        "",
        description="Comma-separated addresses or CIDRs of proxies whose X-Forwarded-For is"
        " believed when finding the client address.",
    )
    cache_max_bytes: int = Field(
        64 * 1024 * 1024,
        ge=0,
        description="Memory for each worker's cache of search results and text embeddings;"
        " 0: off. Ignored when redis_url is set (the cache is then shared in Redis).",
    )
    cache_ttl_s: int = Field(
        3600,
        ge=1,
        description="Seconds a Redis cache entry lives. Only bounds Redis memory: a write"
        " makes older entries unreachable at once (the collection version is in the key).",
    )
    encoder_batch: int = Field(
        32, ge=1, description="Most texts per micro-batch of concurrent encodes; 1: no batching."
    )
    encoder_batch_wait_ms: float = Field(
        2.0, ge=0, description="How long a micro-batch waits for more texts after its first."
    )
    encoder_batch_workers: int = Field(
        2, ge=1, description="Threads running micro-batches (one per core with encoder_threads 1)."
    )
    hybrid_rrf_k: int = Field(
        60,
        ge=1,
        description="Reciprocal rank fusion constant of hybrid search: a hit at rank r of a"
        " mode adds weight / (k + r); larger k flattens the difference between ranks.",
    )
    hybrid_vector_weight: float = Field(
        1.0, ge=0, description="Weight of the vector ranking in hybrid search."
    )
    hybrid_keyword_weight: float = Field(
        1.0, ge=0, description="Weight of the keyword (BM25) ranking in hybrid search."
    )
    hybrid_candidates: int = Field(
        50, ge=1, le=10000, description="Hits each mode contributes to a hybrid search's fusion."
    )
    llm_base_url: str | None = Field(
        None,
        description="OpenAI-compatible chat-completions API that /ask and /chat use"
        " (https://api.openai.com/v1, or a vLLM, llama.cpp or Ollama server's /v1). Unset:"
        " answers are extracted from the retrieved passages.",
    )
    llm_model: str = Field("gpt-4o-mini", description="Model name sent to the LLM API.")
    llm_api_key: SecretStr | None = Field(
        None, description="Bearer key of the LLM API (sent only to llm_base_url)."
    )
    llm_timeout_s: float = Field(
        60.0, gt=0, description="Longest one LLM call may take, streaming included."
    )
    llm_connect_timeout_s: float = Field(
        5.0, gt=0, description="Longest wait to connect to the LLM API."
    )
    llm_max_connections: int = Field(
        16, ge=1, le=1000, description="Most open connections to the LLM API per worker."
    )
    llm_retries: int = Field(
        3,
        ge=0,
        le=10,
        description="Retries of an LLM call that failed with 429, a 5xx or a broken"
        " connection (exponential backoff with jitter; a Retry-After is honoured).",
    )
    llm_backoff_s: float = Field(
        0.5, gt=0, description="First retry delay of an LLM call; doubles per retry."
    )
    llm_backoff_max_s: float = Field(
        8.0, gt=0, description="Longest delay between two tries of an LLM call."
    )
    llm_breaker_failures: int = Field(
        5,
        ge=1,
        description="Failed LLM calls in a row that open the circuit breaker: calls then fail"
        " at once (503) until llm_breaker_reset_s has passed and a trial call succeeds.",
    )
    llm_breaker_reset_s: float = Field(
        30.0, gt=0, description="Seconds the LLM circuit breaker stays open before a trial call."
    )
    llm_cache: bool = Field(
        True,
        description="Cache LLM answers to identical prompts (in the query cache: memory, or"
        " Redis when redis_url is set).",
    )
    llm_max_tokens: int = Field(512, ge=1, description="Most tokens an LLM answer may have.")
    llm_temperature: float = Field(
        0.0, ge=0, le=2, description="Sampling temperature of LLM answers (0: repeatable)."
    )
    embedding_models: str = Field(
        "all-MiniLM-L6-v2=text",
        description="Model names /v1/embeddings accepts besides the encoder names, as"
        " comma-separated name=encoder pairs.",
    )
    remote_embedding_url: str | None = Field(
        None,
        description="OpenAI-compatible embeddings API of the remote encoder, ending in /v1"
        " (https://api.openai.com/v1, or a vLLM, llama.cpp or Ollama server's /v1). Retries,"
        " backoff, circuit breaker, connection pool and connect timeout are the llm_* ones.",
    )
    remote_embedding_model: str = Field(
        "text-embedding-3-small", description="Model name the remote encoder sends."
    )
    remote_embedding_api_key: SecretStr | None = Field(
        None, description="Bearer key of the embeddings API (sent only to remote_embedding_url)."
    )
    remote_embedding_dim: int | None = Field(
        None,
        ge=1,
        description="Dimension of the remote encoder's vectors, sent as `dimensions`. Unset:"
        " the model's own, learnt by one request when the encoder loads.",
    )
    remote_embedding_batch: int = Field(
        64, ge=1, le=2048, description="Most texts the remote encoder sends in one request."
    )
    remote_embedding_timeout_s: float = Field(
        30.0,
        gt=0,
        description="Longest one request of the remote encoder may take, retries included.",
    )
    sources: tuple[SourceSetting, ...] = Field(
        (),
        description="Documents to keep ingested, as a list of tables in the config file"
        ' ([[sources]] path = "docs" types = ["md", "pdf"] recursive = true collection = "docs")'
        " or JSON in the environment. `serve` ingests them (unchanged files skipped) before"
        " /readyz turns ready; POST /build does it again.",
    )
    default_collection: str = Field(
        "docs", description="Collection of /chat, and of sources that name none."
    )
    chat_turns: int = Field(
        3, ge=0, le=100, description="Earlier turns of a /chat session a follow-up question sees."
    )
    chat_session_ttl_s: float = Field(
        1800.0, gt=0, description="Seconds after its last turn that a /chat session is forgotten."
    )
    chat_sessions: int = Field(
        10000,
        ge=1,
        description="Most /chat sessions a worker keeps in memory (least recent dropped);"
        " with redis_url they live in Redis instead.",
    )
    admission_ask_in_flight: int = Field(
        4,
        ge=1,
        description="Question-answering requests (/ask, /chat) one worker runs at once; an LLM"
        " call costs far more than a search, so they have their own budget.",
    )
    admission_ask_queue: int = Field(
        16, ge=0, description="Question-answering requests that may wait for a slot; beyond, 503."
    )
    ask_timeout_s: float = Field(
        120.0, gt=0, description="Time budget of a question-answering request, LLM call included."
    )
    rate_limit_ask: str = Field(
        "", description='Question-answering requests per caller, e.g. "2/second;60/minute".'
    )
    admin_key: SecretStr | None = Field(
        None,
        min_length=16,
        description="An operator key with every scope (read, write, admin) for the default"
        " tenant, from the environment or a secret store; at least 16 characters. Other keys:"
        " `spyglass keys create`.",
    )
    insecure: bool = Field(
        False,
        description="Serve without any API key on an address other than loopback (refused"
        " otherwise: an open server answers anyone who can reach it).",
    )
    metrics_public: bool = Field(
        False,
        description="Serve /metrics without a key (for a scraper on a private network);"
        " otherwise it needs an admin key.",
    )
    log_json: bool = Field(
        True,
        description="Write every log line as one JSON object (the access log: request id, route,"
        " status, duration, tenant; never keys or bodies).",
    )
    hsts: bool = Field(
        False,
        description="Send Strict-Transport-Security; only when clients reach the server over"
        " HTTPS (e.g. through a TLS proxy).",
    )
    hsts_max_age: int = Field(
        31_536_000, ge=0, description="Seconds browsers should remember to use HTTPS only."
    )
    cors_origins: str = Field(
        "",
        description="Comma-separated origins allowed to call the API from a browser"
        " (https://ui.example.com); empty: CORS off.",
    )

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        value = value.lower()
        if value not in {"debug", "info", "warning", "error"}:
            raise ValueError("must be one of debug, info, warning, error")
        return value

    @model_validator(mode="before")
    @classmethod
    def _store_directory(cls, values: Any) -> Any:
        """A directory given as ``store`` is the embedded store's: it becomes ``data_dir``."""
        if not isinstance(values, dict):
            return values
        store = values.get("store")
        if store is None or "://" in str(store):
            return values
        given = values.get("data_dir")
        if given is not None and Path(given) != Path(store):
            raise ValueError("store is a directory and data_dir another: give one of them")
        return {**values, "data_dir": store, "store": None}

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.face_session_needed > self.face_session_window:
            raise ValueError("face_session_needed must not exceed face_session_window")
        if self.chunk_overlap >= self.chunk_tokens:
            raise ValueError("chunk_overlap must be smaller than chunk_tokens")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (
            init_settings,
            env_settings,
            ConfigFileSource(settings_cls, init_settings, env_settings),
        )


class ConfigFileSource(PydanticBaseSettingsSource):
    """Reads the file named by the ``config`` setting (from the CLI or the environment)."""

    def __init__(
        self,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
    ) -> None:
        super().__init__(settings_cls)
        self._init = init_settings
        self._env = env_settings

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = self._init().get("config") or self._env().get("config")
        if not path:
            return {}
        return read_config_file(Path(path))


def read_config_file(path: Path) -> dict[str, Any]:
    """The settings in a TOML or JSON file, with unknown keys refused by name."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    try:
        if path.suffix == ".json":
            values = json.loads(raw)
        else:
            values = tomllib.loads(raw.decode())
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} does not parse: {exc}") from exc
    if not isinstance(values, dict):
        raise ConfigError(f"config file {path} must hold a table of settings")
    values = {key.replace("-", "_"): value for key, value in values.items()}
    unknown = sorted(set(values) - set(Settings.model_fields) | ({"config"} & set(values)))
    if unknown:
        raise ConfigError(f"config file {path}: unknown setting {unknown[0]!r}")
    return values


def load_settings(**overrides: Any) -> Settings:
    """Settings from overrides (CLI flags), the environment and the config file.

    A bad value is a ``ConfigError`` naming the setting, never a traceback.
    """
    given = {key: value for key, value in overrides.items() if value is not None}
    try:
        return Settings(**given)
    except ValidationError as exc:
        first = exc.errors()[0]
        name = ".".join(str(part) for part in first["loc"]) or "settings"
        raise ConfigError(f"setting {name}: {first['msg']}") from exc


def settings_table() -> list[tuple[str, str, str, str]]:
    """(name, environment variable, default, help) for every setting, for docs and --help."""
    rows = []
    for name, field in Settings.model_fields.items():
        default = "" if field.default is None else str(field.default)
        rows.append((name, ENV_PREFIX + name.upper(), default, field.description or ""))
    return rows


def settings_json(settings: Settings) -> str:
    """Every setting as JSON, secrets included: what ``spyglass serve`` hands its workers."""
    values = settings.model_dump(mode="json")
    for name, value in settings:
        if isinstance(value, SecretStr):
            values[name] = value.get_secret_value()
    return json.dumps(values)


def masked_settings(settings: Settings) -> dict[str, Any]:
    """Every setting as JSON values, with secrets and URL passwords replaced by ``***``."""
    values = settings.model_dump(mode="json")
    for name, value in settings:
        if isinstance(value, SecretStr):
            values[name] = "***"
        elif isinstance(value, str) and "://" in value:
            values[name] = ",".join(_mask_url(url) for url in value.split(","))
    return values


def _mask_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")[2]
    user = f"{parts.username}:" if parts.username else ":"
    return urlunsplit(parts._replace(netloc=f"{user}***@{netloc}"))


SETTINGS_ENV = "SPYGLASS__RESOLVED_SETTINGS"
"""Where ``spyglass serve`` hands its resolved settings down to its workers."""


def cores() -> int:
    """The cores this process may run on (its CPU affinity, as ``taskset`` or a
    container's cpuset sets it), not every core of the machine."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def cores_per_worker(workers: int) -> int:
    """The cores each of ``workers`` processes has (0 workers: one per core)."""
    return max(1, cores() // workers) if workers else 1
