"""OpenAI's ``POST /v1/embeddings`` and ``GET /v1/models``, so any OpenAI SDK embeds here.

A client points its SDK at ``http://host:port/v1`` with a Spyglass key as its API
key (the SDK sends ``Authorization: Bearer``). Model names are the encoders that
take text and load on this server (``text``; ``clip`` when its model is set up)
plus the aliases of the ``embedding_models`` setting (``all-MiniLM-L6-v2=text``).

Encoding goes through the engine's shared encoders, in the worker's thread pool,
so concurrent requests are micro-batched together and counted in ``/metrics``
like any other text. Inputs longer than the model reads are truncated, as
everywhere in Spyglass, and ``usage`` counts the tokens the model read: the
encoder's own tokenizer, special tokens included, up to that limit.

An unknown model is a 404 naming ``model`` (with the models served here in the
detail): the status OpenAI gives, so the SDK raises ``NotFoundError`` as it does
against OpenAI, and not a 503 the SDK would retry for a model that will not come.
The problem documents of these routes also carry OpenAI's ``error`` member (an
RFC 9457 extension), since the SDK puts only ``error.message`` in its exception
text: without it a client would read just "Error code: 404".
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Literal

import numpy as np
import orjson
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from spyglass.encoders import ENCODERS
from spyglass.encoders.base import Encoder
from spyglass.engine import Encoders
from spyglass.errors import (
    PROBLEM_CONTENT_TYPE,
    ConfigError,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    ProblemError,
)
from spyglass.problems import problem_response
from spyglass.routes.deps import engine, run
from spyglass.routes.fastjson import FastJSONRoute
from spyglass.schema import Body
from spyglass.settings import Settings


class OpenAIRoute(FastJSONRoute):
    """A route whose problem documents also hold OpenAI's ``error`` object."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def answer(request: Request) -> Response:
            try:
                return await handler(request)
            except ProblemError as exc:
                return with_openai_error(problem_response(exc, request))
            except RequestValidationError as exc:  # rendered by the app's own handler
                render = request.app.exception_handlers[RequestValidationError]
                return with_openai_error(await render(request, exc))

        return answer


def with_openai_error(response: Response) -> Response:
    """``response``, a problem document, with ``error: {message, type, param, code}``."""
    body = orjson.loads(bytes(response.body))
    fields = [entry["field"] for entry in body.get("errors", ())]
    body["error"] = {
        "message": body["detail"],
        "type": "invalid_request_error" if body["status"] < 500 else "server_error",
        "param": fields[0] if fields else None,
        "code": body["type"].rpartition(":")[2],
    }
    headers = {
        k: v for k, v in response.headers.items() if k not in {"content-length", "content-type"}
    }
    return JSONResponse(
        body, status_code=response.status_code, headers=headers, media_type=PROBLEM_CONTENT_TYPE
    )


router = APIRouter(prefix="/v1", tags=["compatibility: OpenAI"], route_class=OpenAIRoute)

#: Encoders whose vectors a text can ask for.
TEXT_ENCODERS = tuple(name for name, cls in ENCODERS.items() if "text" in cls.inputs)


class EmbeddingsIn(Body):
    input: str | list[str | int | list[int]] = Field(
        description="A text or a list of texts. OpenAI's token arrays are refused: this server"
        " tokenizes with its own model's tokenizer."
    )
    model: str = Field(description="A name from GET /v1/models.")
    encoding_format: Literal["float", "base64"] | None = Field(
        None,
        description="float (default): JSON numbers; base64: the little-endian float32 bytes.",
    )
    dimensions: int | None = Field(None, description="If given, the model's own dimension.")
    user: str | None = Field(None, description="Accepted and ignored.")


class EmbeddingOut(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class UsageOut(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingsOut(BaseModel):
    object: Literal["list"] = "list"
    data: list[EmbeddingOut]
    model: str
    usage: UsageOut


class ModelOut(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = Field(description="When this server started (Unix seconds).")
    owned_by: str = "spyglass"


class ModelsOut(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelOut]


def parse_aliases(value: str) -> dict[str, str]:
    """``"name=encoder,name2=encoder2"`` as a dict; ``ConfigError`` naming what is wrong."""
    aliases: dict[str, str] = {}
    for entry in (part.strip() for part in value.split(",")):
        if not entry:
            continue
        name, sep, encoder = (s.strip() for s in entry.partition("="))
        where = f"embedding_models: {entry!r}"
        if not sep or not name or not encoder:
            raise ConfigError(f"{where} is not name=encoder")
        if encoder not in TEXT_ENCODERS:
            raise ConfigError(f"{where}: encoder must be one of {', '.join(TEXT_ENCODERS)}")
        if name in ENCODERS:
            raise ConfigError(f"{where}: {name!r} is already an encoder's name")
        if name in aliases:
            raise ConfigError(f"{where}: {name!r} is named twice")
        aliases[name] = encoder
    return aliases


class ModelTable:
    """The model names of one app and the encoder each means; remembers encoders that
    failed to load, so a missing CLIP model costs one attempt, not one per request."""

    def __init__(self, aliases: dict[str, str]) -> None:
        self.encoder_of = {**aliases, **{name: name for name in TEXT_ENCODERS}}
        self._failed: dict[str, str] = {}  # encoder name: why it cannot load

    def encoder(self, encoders: Encoders, model: str) -> Encoder:
        """The loaded encoder of ``model``; a 404 naming ``model`` when it is not served."""
        name = self.encoder_of.get(model)
        found = None if name is None else self._load(encoders, name)
        if found is None:
            why = "" if name is None else f" (encoder {name!r} cannot load: {self._failed[name]})"
            known = ", ".join(self.served(encoders)) or "none"
            raise NotFound(
                f"model {model!r} is not served here{why}; models: {known}", field="model"
            )
        return found

    def served(self, encoders: Encoders) -> list[str]:
        """The names whose encoder loads here: aliases in their configured order, then
        encoder names."""
        return [model for model, name in self.encoder_of.items() if self._load(encoders, name)]

    def _load(self, encoders: Encoders, name: str) -> Encoder | None:
        if name in self._failed:
            return None
        try:
            return encoders.get(name)
        except ConfigError as exc:
            self._failed[name] = str(exc)
            return None


def install(app: FastAPI, settings: Settings) -> None:
    """Serve the routes on ``app``; a malformed ``embedding_models`` is a ``ConfigError`` here,
    so the server does not start with it."""
    app.state.embedding_models = ModelTable(parse_aliases(settings.embedding_models))
    app.include_router(router)


def table(request: Request) -> ModelTable:
    value: ModelTable = request.app.state.embedding_models
    return value


@router.post("/embeddings", response_model=EmbeddingsOut)
async def embeddings(body: EmbeddingsIn, request: Request) -> Response:
    """Vectors of texts, in OpenAI's shape; ``data[i]`` is ``input[i]``'s."""
    texts = texts_of(body.input, engine(request).settings.max_batch)
    content = await run(request, _embed, table(request), engine(request).encoders, body, texts)
    return Response(content, media_type="application/json")


@router.get("/models", response_model=ModelsOut)
async def models(request: Request) -> ModelsOut:
    """The models ``/v1/embeddings`` serves."""
    names = await run(request, table(request).served, engine(request).encoders)
    created = int(request.app.state.started_at)
    return ModelsOut(data=[ModelOut(id=name, created=created) for name in names])


def texts_of(value: str | list[str | int | list[int]], max_batch: int) -> list[str]:
    """The texts of ``input``, or a 422 (413 past ``max_batch``) naming the bad entry."""
    if isinstance(value, str):
        if not value:
            raise InvalidRequest("input must not be empty", field="input")
        return [value]
    if not value:
        raise InvalidRequest("input must not be an empty list", field="input")
    if all(isinstance(item, int) for item in value):
        raise InvalidRequest(
            "input is a token array; this server takes text only: send a string or a list"
            " of strings",
            field="input",
        )
    texts: list[str] = []
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise InvalidRequest(
                f"input[{i}] is {'a token array' if isinstance(item, list) else 'a token id'};"
                " this server takes text only: send a string or a list of strings",
                field=f"input[{i}]",
            )
        if not item:
            raise InvalidRequest(f"input[{i}] must not be empty", field=f"input[{i}]")
        texts.append(item)
    if len(texts) > max_batch:
        raise PayloadTooLarge(
            f"{len(texts)} inputs in one request; the most is {max_batch}", field="input"
        )
    return texts


def _embed(models: ModelTable, encoders: Encoders, body: EmbeddingsIn, texts: list[str]) -> bytes:
    """The response body (built here, off the event loop: a long list is a lot of JSON)."""
    encoder = models.encoder(encoders, body.model)
    if body.dimensions is not None and body.dimensions != encoder.dim:
        raise InvalidRequest(
            f"model {body.model!r} makes {encoder.dim}-d vectors; give dimensions"
            f" {encoder.dim} or leave it out",
            field="dimensions",
        )
    vectors = np.ascontiguousarray(encoder.encode(texts), dtype="<f4")
    tokens = count_tokens(encoder, texts)
    as_base64 = body.encoding_format == "base64"
    data = [
        {
            "object": "embedding",
            "index": i,
            "embedding": base64.b64encode(row.tobytes()).decode("ascii") if as_base64 else row,
        }
        for i, row in enumerate(vectors)
    ]
    content = {
        "object": "list",
        "data": data,
        "model": body.model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
    return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)


def count_tokens(encoder: Encoder, texts: Sequence[str]) -> int:
    """Tokens the model read for ``texts``, by its own tokenizer, special tokens included.

    The text encoder: its tokens plus ``[CLS]`` and ``[SEP]``, capped at ``max_tokens``
    (the rest is truncated away). CLIP: the tokens of its attention mask, start and end
    included, capped at its context length. Another encoder: whitespace-separated words.
    """
    spans = getattr(encoder, "token_spans", None)
    if spans is not None:
        special = int(getattr(encoder, "special_tokens", 0))
        limit = int(getattr(encoder, "max_tokens", 2**31))
        return sum(min(len(spans(text)) + special, limit) for text in texts)
    tokenize = getattr(encoder, "tokenize", None)
    if tokenize is not None:
        _, mask = tokenize(texts)
        return int(np.asarray(mask).sum())
    return sum(len(text.split()) for text in texts)
