"""OpenAI's ``/v1/embeddings`` and ``/v1/models`` in-process, against the real MiniLM model."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi import FastAPI
from tokenizers import Tokenizer

from spyglass.app import create_app
from spyglass.encoders.clip import ClipEncoder
from spyglass.encoders.text import TOKENIZER_PATH, TextEncoder
from spyglass.errors import ConfigError
from spyglass.routes.openai_compat import TEXT_ENCODERS, parse_aliases
from tests.conftest import test_settings as settings_for
from tests.encoders.test_clip import TinyClip, flat_folder
from tests.routes.helpers import problem

MODEL = "all-MiniLM-L6-v2"
#: The encoders that take text and load without setup: every one but clip.
READY = [name for name in TEXT_ENCODERS if name not in ("clip", "remote")]
TEXTS = [
    "The Normans gave their name to Normandy, a region in France.",
    "a cat",
    "Rollo swore fealty to King Charles III of West Francia after the siege of Chartres.",
    "bees make honey",
]


@pytest.fixture(scope="module")
def reference() -> TextEncoder:
    """An encoder of its own, outside the server, to compare the vectors with."""
    return TextEncoder(threads=1)


async def serve(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://spyglass") as client:
            yield client


@pytest.fixture
def app(tmp_path: Path) -> FastAPI:
    return create_app(settings_for(tmp_path / "data"))  # max_batch 50


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async for client in serve(app):
        yield client


async def embed(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    r = await client.post("/v1/embeddings", json={"model": MODEL, **body})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    result: dict[str, Any] = r.json()
    return result


def vectors(body: dict[str, Any]) -> np.ndarray:
    return np.array([row["embedding"] for row in body["data"]], dtype=np.float32)


def tokens(text: str) -> int:
    """Tokens MiniLM reads for ``text``: its tokenizer's, [CLS] and [SEP] included, at most 256."""
    tokenizer = Tokenizer.from_file(str(TOKENIZER_PATH))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return min(len(tokenizer.encode(text).ids), 256)


async def test_one_string(client: httpx.AsyncClient, reference: TextEncoder) -> None:
    body = await embed(client, input=TEXTS[0])
    assert set(body) == {"object", "data", "model", "usage"}
    assert body["object"] == "list" and body["model"] == MODEL
    [row] = body["data"]
    assert row["object"] == "embedding" and row["index"] == 0
    assert len(row["embedding"]) == 384
    assert np.allclose(row["embedding"], reference.encode([TEXTS[0]])[0], atol=1e-5)
    assert body["usage"] == {"prompt_tokens": tokens(TEXTS[0]), "total_tokens": tokens(TEXTS[0])}


async def test_a_list_keeps_its_order(client: httpx.AsyncClient, reference: TextEncoder) -> None:
    body = await embed(client, input=TEXTS, user="someone")
    assert [row["index"] for row in body["data"]] == list(range(len(TEXTS)))
    got = vectors(body)
    assert got.shape == (len(TEXTS), 384)
    assert np.allclose(got, reference.encode(TEXTS), atol=1e-5)
    assert not np.allclose(got[1], got[3], atol=1e-2)
    total = sum(tokens(text) for text in TEXTS)
    assert body["usage"] == {"prompt_tokens": total, "total_tokens": total}


async def test_usage_counts_what_the_model_read(client: httpx.AsyncClient) -> None:
    long = "honey " * 400  # truncated to 256 tokens, as everywhere in Spyglass
    body = await embed(client, input=[long, "a"])
    assert body["usage"]["prompt_tokens"] == 256 + 3  # [CLS] a [SEP]


async def test_base64_is_the_float32_bytes(client: httpx.AsyncClient) -> None:
    floats = vectors(await embed(client, input=TEXTS))
    encoded = await embed(client, input=TEXTS, encoding_format="base64")
    rows = [row["embedding"] for row in encoded["data"]]
    assert all(isinstance(row, str) for row in rows)
    decoded = np.stack([np.frombuffer(base64.b64decode(row), dtype="<f4") for row in rows])
    assert decoded.shape == (len(TEXTS), 384)
    assert np.allclose(decoded, floats, atol=1e-6)
    explicit = await embed(client, input=TEXTS, encoding_format="float")
    assert np.array_equal(vectors(explicit), floats)


async def test_models_list_and_aliases(client: httpx.AsyncClient) -> None:
    r = await client.get("/v1/models")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "list"
    assert [model["id"] for model in body["data"]] == [MODEL, *READY]  # clip: no model set up
    assert "text" in READY
    for model in body["data"]:
        assert model["object"] == "model" and model["owned_by"] == "spyglass"
        assert isinstance(model["created"], int) and model["created"] > 0
    by_alias = await embed(client, input=TEXTS[:2])
    by_encoder = await embed(client, input=TEXTS[:2], model="text")
    assert by_encoder["model"] == "text"
    assert np.allclose(vectors(by_alias), vectors(by_encoder), atol=1e-6)


async def test_aliases_come_from_the_setting(tmp_path: Path) -> None:
    app = create_app(settings_for(tmp_path / "data", embedding_models="mini=text, small=text"))
    async for client in serve(app):
        r = await client.get("/v1/models")
        assert [model["id"] for model in r.json()["data"]] == ["mini", "small", *READY]
        assert len((await embed(client, model="small", input="hi"))["data"]) == 1
        body = problem(
            await client.post("/v1/embeddings", json={"model": MODEL, "input": "x"}), 404
        )
        assert f"mini, small, {', '.join(READY)}" in body["detail"]


@pytest.mark.parametrize(
    "value",
    ["mini", "mini=", "=text", "mini=image", "mini=nope", "text=text", "a=text,a=text"],
)
def test_a_malformed_setting_stops_the_start(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError, match="embedding_models"):
        create_app(settings_for(tmp_path / "data", embedding_models=value))


def test_setting_syntax() -> None:
    assert parse_aliases(" a = text , b=clip,") == {"a": "text", "b": "clip"}
    assert parse_aliases("") == {}


async def test_encoding_uses_the_servers_shared_encoder(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    assert app.state.engine.encoders.loaded() == []
    await embed(client, input=TEXTS[:3])
    assert app.state.engine.encoders.loaded() == ["text"]
    metrics = (await client.get("/metrics")).text
    assert 'spyglass_encoder_batch_size_sum{encoder="text"} 3.0' in metrics


async def test_unknown_model_is_404_naming_the_known_ones(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/embeddings", json={"model": "text-embedding-3-small", "input": "x"})
    body = problem(r, 404, "model")
    assert "'text-embedding-3-small'" in body["detail"]
    assert f"{MODEL}, {', '.join(READY)}" in body["detail"]
    r = await client.post("/v1/embeddings", json={"model": "clip", "input": "x"})
    body = problem(r, 404, "model")
    assert "clip_model_path" in body["detail"]  # why it is not served


async def test_problems_carry_openais_error_object(client: httpx.AsyncClient) -> None:
    """The SDK shows ``error.message`` in its exceptions and ``error.param`` as ``param``."""
    r = await client.post("/v1/embeddings", json={"model": "nope", "input": "x"})
    body = problem(r, 404, "model")
    assert body["error"] == {
        "message": body["detail"],
        "type": "invalid_request_error",
        "param": "model",
        "code": "not-found",
    }
    r = await client.post("/v1/embeddings", json={"model": MODEL, "input": ["x"] * 51})
    assert problem(r, 413, "input")["error"]["param"] == "input"
    r = await client.post("/v1/embeddings", json={"model": MODEL})  # FastAPI's validation
    body = problem(r, 422, "input")
    assert body["error"]["param"] == "input" and body["error"]["message"] == body["detail"]
    r = await client.post(
        "/v1/embeddings", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert problem(r, 400)["error"]["code"] == "malformed-body"


async def test_dimensions_must_be_the_models(client: httpx.AsyncClient) -> None:
    assert len((await embed(client, input="x", dimensions=384))["data"][0]["embedding"]) == 384
    r = await client.post("/v1/embeddings", json={"model": MODEL, "input": "x", "dimensions": 256})
    assert "384" in problem(r, 422, "dimensions")["detail"]


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ([101, 7592, 102], "input"),
        ([[101, 7592], [102]], "input[0]"),
        (["fine", 7592], "input[1]"),
        ("", "input"),
        ([], "input"),
        (["a", "b", "c", "", "e"], "input[3]"),
    ],
)
async def test_refused_inputs_name_the_field(
    client: httpx.AsyncClient, value: object, field: str
) -> None:
    r = await client.post("/v1/embeddings", json={"model": MODEL, "input": value})
    body = problem(r, 422, field)
    if field != "input[3]" and value not in ("", []):
        assert "token" in body["detail"] and "text" in body["detail"]


async def test_bad_fields_are_problems(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/v1/embeddings", json={"model": MODEL, "input": "x", "encoding_format": "int8"}
    )
    problem(r, 422, "encoding_format")
    problem(await client.post("/v1/embeddings", json={"input": "x"}), 422, "model")


async def test_more_inputs_than_max_batch_is_413(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/embeddings", json={"model": MODEL, "input": ["x"] * 51})
    assert "50" in problem(r, 413, "input")["detail"]
    assert len((await embed(client, input=["x"] * 50))["data"]) == 50


async def test_clip_is_a_model_when_it_loads(tmp_path: Path) -> None:
    folder = flat_folder(tmp_path / "clip", TinyClip())
    app = create_app(settings_for(tmp_path / "data", clip_model_path=folder))
    texts = ["a photo of a cat", "a dog"]
    async for client in serve(app):
        r = await client.get("/v1/models")
        served = [name for name in TEXT_ENCODERS if name != "remote"]  # no remote URL set
        assert [model["id"] for model in r.json()["data"]] == [MODEL, *served]
        assert "clip" in TEXT_ENCODERS
        body = await embed(client, model="clip", input=texts)
        assert np.allclose(vectors(body), ClipEncoder(str(folder)).encode(texts), atol=1e-5)
        # start, at most 4 words (context 6), end
        assert body["usage"]["prompt_tokens"] == (1 + 4 + 1) + (1 + 2 + 1)
        r = await client.post(
            "/v1/embeddings", json={"model": "clip", "input": "x", "dimensions": 384}
        )
        problem(r, 422, "dimensions")
