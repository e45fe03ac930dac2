"""What a load run sends: the scenario file, and requests sampled from the collection.

A scenario (TOML or JSON, the same keys either way) says which request types to
mix and in what proportions, the k of searches, the offered rates and how long
each is held, the think time of a user, and how arrivals are spread. Any key may
be left out; without a ``mix`` the request types follow the collection's encoder
(:func:`default_mix`)::

    mix = { text = 0.7, vector = 0.3 }   # vector, text, color, image, ask
    k = 10
    rates = [50, 100, 200, 400]          # requests per second, one step each
    step_s = 10
    think_s = 0.5
    arrival = "poisson"                  # or "constant"

Payloads come from the collection itself, through the public HTTP API only
(:func:`sample_requests`): searches with random vectors (and, where items have
texts, keyword searches with their words) find real items; their vectors
(``GET .../items/{id}``), texts and image files (``GET .../images/{id}``) become
the queries. ``pool`` distinct payloads are prepared per type and drawn at
random, so a query cache sees each one about ``requests / pool`` times.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import httpx
import numpy as np
import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from spyglass.errors import ConfigError

KINDS = ("vector", "text", "color", "image", "ask")
"""The request types a scenario can mix."""

_TEXT_ENCODERS = frozenset({"text", "text-fast", "clip", "remote"})
_IMAGE_ENCODERS = frozenset({"image", "clip"})
_MAX_IMAGES = 50  # image payloads held in memory (each a base64 file)
MAX_ITEMS = 1000
"""Items sampled at most; a larger ``pool`` varies them (vector noise, word runs)."""


class Scenario(BaseModel):
    """One load scenario; every field has a default, so an empty file is a valid one."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mix: dict[Literal["vector", "text", "color", "image", "ask"], float] = Field(
        default_factory=dict,
        description="Weight of each request type; empty: chosen from the collection's encoder.",
    )
    k: int = Field(10, ge=1, description="Hits per search.")
    text_mode: Literal["vector", "keyword", "hybrid"] | None = Field(
        None, description="`mode` of text searches; None: the server's default."
    )
    rates: list[float] = Field(
        default_factory=lambda: [50.0, 100.0, 200.0, 400.0],
        description="Offered rates (requests/s) of `bench load`, one step each.",
    )
    step_s: float = Field(10.0, gt=0, description="Seconds each rate is held.")
    think_s: float = Field(0.5, ge=0, description="A user's pause between requests (Little).")
    arrival: Literal["poisson", "constant"] = Field(
        "poisson", description="Poisson (random gaps) or evenly spaced arrivals."
    )
    timeout_s: float = Field(10.0, gt=0, description="A request unanswered by then is an error.")
    max_outstanding: int = Field(
        4000, ge=1, description="Safety valve: requests in flight beyond it are dropped, counted."
    )
    lag_limit_ms: float = Field(
        10.0, gt=0, description="Generator lag p99 above which a step is flagged as behind."
    )
    pool: int = Field(1000, ge=1, description="Distinct payloads prepared per request type.")
    connections: list[int] = Field(
        default_factory=lambda: [64], description="`--engine wrk`: connections, one step each."
    )
    seed: int = Field(0, description="Seeds sampling and arrival times.")


def load_scenario(path: Path) -> Scenario:
    """The scenario in ``path`` (``.toml``, else JSON); ``ConfigError`` when it is wrong."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read scenario {path}: {exc.strerror}") from exc
    try:
        data = tomllib.loads(raw.decode()) if path.suffix == ".toml" else json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"scenario {path} does not parse: {exc}") from exc
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(top)"
        raise ConfigError(f"scenario {path}: {where}: {first['msg']}") from exc


def parse_mix(text: str) -> dict[str, float]:
    """``"text=0.7,vector=0.3"`` as a mix; ``ConfigError`` for unknown types or bad weights."""
    mix: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, weight = part.partition("=")
        if name not in KINDS:
            raise ConfigError(f"--mix: unknown request type {name!r}; known: {', '.join(KINDS)}")
        try:
            mix[name] = float(weight) if weight else 1.0
        except ValueError as exc:
            raise ConfigError(f"--mix: {part!r} has no numeric weight") from exc
    return mix


def default_mix(encoder: str) -> dict[str, float]:
    """The request mix used without a scenario ``mix``: what the encoder can answer."""
    if encoder == "color":
        return {"color": 0.8, "vector": 0.2}
    if encoder == "clip":
        return {"text": 0.4, "image": 0.3, "vector": 0.3}
    if encoder in _IMAGE_ENCODERS:
        return {"image": 0.5, "vector": 0.5}
    if encoder in _TEXT_ENCODERS:
        return {"text": 0.7, "vector": 0.3}
    return {"vector": 1.0}


@dataclass(frozen=True)
class CollectionInfo:
    """What ``GET /collections/{name}`` says about the collection under load."""

    name: str
    encoder: str
    dim: int
    count: int


@dataclass(frozen=True)
class Prepared:
    """One ready request: method, path (quoted) and JSON body."""

    kind: str
    method: str
    path: str
    body: bytes


@dataclass
class RequestMix:
    """Prepared requests per type and the weights to draw types by."""

    weights: dict[str, float]
    pools: dict[str, list[Prepared]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def picker(self, rng: random.Random) -> Callable[[], Prepared]:
        """A function returning the next request: a type by weight, then a payload at random."""
        kinds = [k for k in self.weights if self.pools.get(k)]
        weights = [self.weights[k] for k in kinds]
        pools = [self.pools[k] for k in kinds]
        index = range(len(kinds))

        def pick() -> Prepared:
            pool = pools[rng.choices(index, weights)[0]]
            return pool[rng.randrange(len(pool))]

        return pick


async def collection_info(client: httpx.AsyncClient, name: str) -> CollectionInfo:
    """The collection's encoder, dim and count; ``ConfigError`` if it cannot be read."""
    answer = await _get(client, f"/collections/{quote(name, safe='')}")
    data = answer.json()
    return CollectionInfo(name=name, encoder=data["encoder"], dim=data["dim"], count=data["count"])


async def sample_requests(
    client: httpx.AsyncClient, info: CollectionInfo, scenario: Scenario
) -> RequestMix:
    """Prepare ``scenario.pool`` payloads of each request type of the mix from real items.

    A type named in the scenario's mix that the collection cannot feed (no texts,
    no image files) is a ``ConfigError``; one from the default mix is left out
    with a note.
    """
    if info.count == 0:
        raise ConfigError(f"collection {info.name!r} is empty: nothing to sample queries from")
    explicit = bool(scenario.mix)
    weights = {k: w for k, w in (scenario.mix or default_mix(info.encoder)).items() if w > 0}
    if not weights:
        raise ConfigError("the scenario's mix has no request type with a positive weight")
    rng = random.Random(scenario.seed)
    items = await _sample_items(client, info, min(scenario.pool, MAX_ITEMS), rng)
    base = f"/collections/{quote(info.name, safe='')}"
    mix = RequestMix(weights=weights)
    texts = [text for text in items.values() if text]
    for kind in weights:
        bodies: list[dict[str, Any]] = []
        if kind == "vector":
            bodies = await _vector_bodies(client, base, list(items), scenario, rng)
        elif kind == "text":
            bodies = [_text_body(rng.choice(texts), scenario, rng) for _ in _n(texts, scenario)]
        elif kind == "ask":
            bodies = [{"question": _first_sentence(t)} for t in texts[: scenario.pool]]
        elif kind == "color" and info.encoder == "color":
            bodies = [_palette(rng, scenario.k) for _ in range(scenario.pool)]
        elif kind == "image":
            bodies = await _image_bodies(client, base, list(items), scenario)
        if not bodies:
            why = _why_empty(kind, info)
            if explicit:
                raise ConfigError(f"cannot make {kind} requests for {info.name!r}: {why}")
            mix.notes.append(f"no {kind} requests: {why}")
            continue
        path = f"{base}/ask" if kind == "ask" else f"{base}/search"
        mix.pools[kind] = [Prepared(kind, "POST", path, orjson.dumps(b)) for b in bodies]
    if not mix.pools:
        raise ConfigError(f"no request of the mix can be made for {info.name!r}")
    mix.weights = {k: w for k, w in weights.items() if k in mix.pools}
    return mix


def _why_empty(kind: str, info: CollectionInfo) -> str:
    if kind in ("text", "ask"):
        return "the sampled items have no texts"
    if kind == "color":
        return f"the encoder is {info.encoder!r}, not color"
    if kind == "image":
        return "the sampled items have no image files (setting keep_images)"
    return "the sampled items have no vectors"


def _n(texts: list[str], scenario: Scenario) -> range:
    return range(scenario.pool if texts else 0)


async def _get(client: httpx.AsyncClient, path: str) -> httpx.Response:
    try:
        answer = await client.get(path)
    except httpx.HTTPError as exc:
        raise ConfigError(f"cannot reach {client.base_url}: {exc}") from exc
    if answer.status_code in (401, 403):
        raise ConfigError(f"{path}: {answer.status_code}: give a key with read scope (--key)")
    if answer.status_code == 404:
        raise ConfigError(f"{path}: not found at {client.base_url}")
    if answer.status_code != 200:
        raise ConfigError(f"{path}: HTTP {answer.status_code}")
    return answer


async def _sample_items(
    client: httpx.AsyncClient, info: CollectionInfo, wanted: int, rng: random.Random
) -> dict[str, str | None]:
    """Ids (and texts) of up to ``wanted`` real items, found by random and keyword searches."""
    path = f"/collections/{quote(info.name, safe='')}/search"
    found: dict[str, str | None] = {}
    gen = np.random.default_rng(rng.randrange(2**32))
    wanted = min(wanted, info.count)
    for _ in range(max(10, wanted // 10)):
        if len(found) >= wanted:
            break
        bodies: list[dict[str, Any]] = []
        for _ in range(8):
            bodies.append({"vector": gen.standard_normal(info.dim).tolist(), "k": 50})
            words = _words(rng.choice([t for t in found.values() if t] or [""]))
            if words:
                bodies.append({"text": rng.choice(words), "mode": "keyword", "k": 50})
        answers = await asyncio.gather(*(client.post(path, json=b) for b in bodies))
        for answer in answers:
            if answer.status_code == 200:
                for hit in answer.json()["hits"]:
                    found.setdefault(hit["id"], hit.get("text"))
    if not found:
        raise ConfigError(f"searches of {info.name!r} found no items to sample")
    return dict(list(found.items())[:wanted])


async def _vector_bodies(
    client: httpx.AsyncClient,
    base: str,
    ids: list[str],
    scenario: Scenario,
    rng: random.Random,
) -> list[dict[str, Any]]:
    """Item vectors with a little noise (each query distinct, each near real data)."""
    limit = asyncio.Semaphore(16)

    async def vector(item_id: str) -> list[float] | None:
        async with limit:
            answer = await client.get(f"{base}/items/{quote(item_id, safe='')}")
        return answer.json()["vector"] if answer.status_code == 200 else None

    found = [v for v in await asyncio.gather(*(vector(i) for i in ids)) if v]
    if not found:
        return []
    gen = np.random.default_rng(rng.randrange(2**32))
    bodies = []
    for i in range(scenario.pool):
        v = np.asarray(found[i % len(found)], dtype=np.float64)
        scale = 0.05 * (float(np.linalg.norm(v)) or 1.0) / np.sqrt(len(v))
        query = v + gen.standard_normal(len(v)) * scale
        bodies.append({"vector": [round(float(x), 6) for x in query], "k": scenario.k})
    return bodies


async def _image_bodies(
    client: httpx.AsyncClient, base: str, ids: list[str], scenario: Scenario
) -> list[dict[str, Any]]:
    bodies = []
    for item_id in ids[: _MAX_IMAGES * 4]:
        answer = await client.get(f"{base}/images/{quote(item_id, safe='')}")
        if answer.status_code == 200:
            image = base64.b64encode(answer.content).decode()
            bodies.append({"image": image, "k": scenario.k})
            if len(bodies) >= min(_MAX_IMAGES, scenario.pool):
                break
    return bodies


def _words(text: str | None) -> list[str]:
    return re.findall(r"[A-Za-z]{4,}", text or "")


def _text_body(text: str, scenario: Scenario, rng: random.Random) -> dict[str, Any]:
    """A search for a run of 3-10 words of an item's text, as a person might type."""
    words = text.split()
    size = min(len(words), rng.randint(3, 10))
    start = rng.randrange(len(words) - size + 1) if words else 0
    body: dict[str, Any] = {"text": " ".join(words[start : start + size]) or text, "k": scenario.k}
    if scenario.text_mode:
        body["mode"] = scenario.text_mode
    return body


def _first_sentence(text: str) -> str:
    sentence = re.split(r"(?<=[.!?])\s", text.strip(), maxsplit=1)[0]
    return sentence[:300]


def _palette(rng: random.Random, k: int) -> dict[str, Any]:
    n = rng.randint(1, 5)
    colors = [f"#{rng.randrange(0x1000000):06x}" for _ in range(n)]
    weights = [round(rng.uniform(0.1, 1.0), 3) for _ in range(n)]
    return {"colors": colors, "weights": weights, "k": k}
