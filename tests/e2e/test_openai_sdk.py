"""The official ``openai`` SDK against a real ``spyglass serve``, with an API key."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
import openai
import pytest

from spyglass.encoders.text import TextEncoder
from tests.e2e.server import Server, running

pytestmark = pytest.mark.e2e

KEY = "e2e-openai-sdk-key-0123456789abcdef"
MODEL = "all-MiniLM-L6-v2"
TEXTS = [
    "The Normans were the people who gave their name to Normandy.",
    "a cat",
    "Rollo agreed to defend the mouth of the Seine against other Viking raiders.",
]


@dataclass
class Wire:
    """What the SDK sent and got, seen from its HTTP client."""

    requests: list[dict[str, Any]] = field(default_factory=list)
    responses: list[dict[str, Any]] = field(default_factory=list)

    def request(self, request: httpx.Request) -> None:
        self.requests.append(json.loads(request.content) if request.content else {})

    def response(self, response: httpx.Response) -> None:
        response.read()  # cached: the SDK parses the same bytes afterwards
        self.responses.append(response.json())


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("openai")
    env = {"SPYGLASS_ADMIN_KEY": KEY}
    with running(root / "data", log=root / "server.log", env=env) as started:
        yield started


def sdk(server: Server, key: str = KEY, wire: Wire | None = None) -> openai.OpenAI:
    hooks: dict[str, list[Any]] = {}
    if wire is not None:
        hooks = {"request": [wire.request], "response": [wire.response]}
    return openai.OpenAI(
        api_key=key,
        base_url=f"{server.url}/v1",
        max_retries=0,
        http_client=httpx.Client(event_hooks=hooks, timeout=60),
    )


def test_embeddings_by_default_base64_match_the_encoder(server: Server) -> None:
    wire = Wire()
    with sdk(server, wire=wire) as client:
        result = client.embeddings.create(model=MODEL, input=TEXTS)
        floats = client.embeddings.create(model=MODEL, input=TEXTS, encoding_format="float")
        one = client.embeddings.create(model=MODEL, input=TEXTS[1], dimensions=384)
    # The SDK asks for base64 unless told otherwise, and decodes it itself.
    assert wire.requests[0]["encoding_format"] == "base64"
    assert isinstance(wire.responses[0]["data"][0]["embedding"], str)
    assert wire.requests[1]["encoding_format"] == "float"
    assert isinstance(wire.responses[1]["data"][0]["embedding"], list)

    assert result.model == MODEL and result.object == "list"
    assert [row.index for row in result.data] == [0, 1, 2]
    got = np.array([row.embedding for row in result.data], dtype=np.float32)
    assert got.shape == (3, 384)
    expected = TextEncoder(threads=1).encode(TEXTS)
    assert np.allclose(got, expected, atol=1e-5)
    assert np.allclose([row.embedding for row in floats.data], got, atol=1e-6)
    assert np.allclose(one.data[0].embedding, expected[1], atol=1e-5)
    assert result.usage.prompt_tokens == result.usage.total_tokens > 3 * 2
    assert one.usage.prompt_tokens == 4  # [CLS] a cat [SEP]


def test_models_are_listed(server: Server) -> None:
    with sdk(server) as client:
        models = list(client.models.list())
    ids = [model.id for model in models]
    assert ids[:2] == [MODEL, "text"] and "clip" not in ids  # no CLIP model set up
    assert all(model.owned_by == "spyglass" and model.created > 0 for model in models)


def test_mistakes_raise_the_sdks_errors(server: Server) -> None:
    with sdk(server, key="not-the-key-at-all-0123456789") as stranger:
        with pytest.raises(openai.AuthenticationError):
            stranger.embeddings.create(model=MODEL, input="hello")
        with pytest.raises(openai.AuthenticationError):
            stranger.models.list()
    with sdk(server) as client:
        with pytest.raises(openai.NotFoundError) as unknown:
            client.embeddings.create(model="text-embedding-3-small", input="hello")
        assert MODEL in str(unknown.value)  # the exception text names the models served
        assert unknown.value.param == "model"
        with pytest.raises(openai.UnprocessableEntityError) as tokens:
            client.embeddings.create(model=MODEL, input=[[101, 7592, 102]])
        assert "token array" in str(tokens.value) and tokens.value.param == "input[0]"
