"""The remote encoder against a real (fake) OpenAI embeddings server over real HTTP:
vectors, batching, retries, the circuit breaker, errors, and a collection through the API."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from spyglass.encoders import ENCODERS, load_encoder
from spyglass.encoders.remote import RemoteEncoder
from spyglass.errors import ConfigError, InvalidRequest, Unavailable
from spyglass.llm import CircuitBreaker
from tests.conftest import test_settings as settings_for
from tests.e2e.server import free_port
from tests.fake_openai import (
    EMBEDDING_DIM,
    Cut,
    FakeOpenAI,
    Status,
    embedding,
    fake_openai_fixture,  # noqa: F401
)
from tests.routes.helpers import problem
from tests.routes.test_ask import serve

KEY = "sk-remote-0123456789"
MODEL = "fake-embedder"
TEXTS = ["a red dress", "blue suede shoes", "a green hat", "the cat sat", "", "ünïcödé ✓"]


def expected(texts: list[str], dim: int = EMBEDDING_DIM) -> np.ndarray:
    """The fake's vectors of ``texts``, normalised."""
    rows = np.array([embedding(text, dim) for text in texts], dtype=np.float32)
    unit: np.ndarray = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    return unit


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def sleeps() -> list[float]:
    """The backoff delays the encoder asked for (recorded, not waited)."""
    return []


@pytest.fixture
def make(fake_openai: FakeOpenAI, sleeps: list[float]) -> Iterator[Callable[..., RemoteEncoder]]:
    """Build encoders on the fake server; closed after the test."""
    made: list[RemoteEncoder] = []

    def build(**overrides: Any) -> RemoteEncoder:
        base_url = overrides.pop("base_url", fake_openai.base_url)
        options: dict[str, Any] = {
            "model": MODEL,
            "api_key": KEY,
            "retries": 2,
            "backoff_s": 0.5,
            "backoff_max_s": 8.0,
            "sleep": sleeps.append,
            "random": lambda: 1.0,
        }
        options.update(overrides)
        encoder = RemoteEncoder(base_url, **options)
        made.append(encoder)
        return encoder

    yield build
    for encoder in made:
        encoder.close()


def test_is_registered_as_a_cosine_text_encoder() -> None:
    assert ENCODERS["remote"] is RemoteEncoder
    assert RemoteEncoder.inputs == frozenset({"text"}) and RemoteEncoder.metric == "cosine"


def test_vectors_are_the_upstreams_normalised_in_input_order(
    fake_openai: FakeOpenAI, make: Callable[..., RemoteEncoder]
) -> None:
    encoder = make()
    probe = fake_openai.embeddings[0]
    assert encoder.dim == EMBEDDING_DIM and len(fake_openai.embeddings) == 1
    assert "dimensions" not in probe.json and probe.json["model"] == MODEL
    rows = encoder.encode(TEXTS)
    assert rows.dtype == np.float32 and rows.shape == (len(TEXTS), EMBEDDING_DIM)
    assert np.allclose(rows, expected(TEXTS), atol=1e-6)
    assert np.allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-6)
    sent = fake_openai.embeddings[1]
    assert sent.json["input"] == TEXTS and sent.headers["authorization"] == f"Bearer {KEY}"
    assert encoder.encode([]).shape == (0, EMBEDDING_DIM)
    assert len(fake_openai.embeddings) == 2


def test_a_big_batch_goes_in_requests_of_at_most_batch_texts(
    fake_openai: FakeOpenAI, make: Callable[..., RemoteEncoder]
) -> None:
    encoder = make(batch=4)
    texts = [f"text number {i}" for i in range(10)]
    rows = encoder.encode(texts)
    assert np.allclose(rows, expected(texts), atol=1e-6)
    sent = [r.json["input"] for r in fake_openai.embeddings[1:]]
    assert sent == [texts[0:4], texts[4:8], texts[8:10]]


def test_a_dim_setting_is_sent_as_dimensions_and_skips_the_probe(
    fake_openai: FakeOpenAI, make: Callable[..., RemoteEncoder]
) -> None:
    encoder = make(dim=8)
    assert encoder.dim == 8 and fake_openai.embeddings == []
    rows = encoder.encode(TEXTS[:2])
    assert np.allclose(rows, expected(TEXTS[:2], 8), atol=1e-6)
    assert fake_openai.embeddings[0].json["dimensions"] == 8


def test_vectors_of_another_length_than_dim_are_a_503(
    fake_openai: FakeOpenAI, make: Callable[..., RemoteEncoder]
) -> None:
    encoder = make(dim=8)
    encoder._dimensions = None  # an upstream that ignores `dimensions`
    with pytest.raises(Unavailable, match="24-d vectors, not 8-d"):
        encoder.encode(["x"])
    assert len(fake_openai.embeddings) == 1 and encoder.breaker.state == "closed"


def test_429_is_retried_after_its_retry_after(
    fake_openai: FakeOpenAI, make: Callable[..., RemoteEncoder], sleeps: list[float]
) -> None:
    encoder = make()
    fake_openai.script(Status(429, retry_after="2"), Cut())
    rows = encoder.encode(TEXTS[:3])
    assert np.allclose(rows, expected(TEXTS[:3]), atol=1e-6)
    assert sleeps == [2.0, 1.0]  # Retry-After, then the second backoff ceiling 0.5 * 2
    assert len(fake_openai.embeddings) == 1 + 3


def test_5xx_until_retries_run_out_is_a_503_with_retry_after(
    fake_openai: FakeOpenAI, make: Callable[..., RemoteEncoder], sleeps: list[float]
) -> None:
    encoder = make(dim=4)
    fake_openai.script(Status(500), Status(502), Status(500), Status(500))
    with pytest.raises(Unavailable, match="HTTP 500.*after 3 tries") as caught:
        encoder.encode(["x"])
    assert caught.value.status == 503
    assert caught.value.headers["Retry-After"] == "2"  # the next backoff ceiling, 0.5 * 2**2
    assert sleeps == [0.5, 1.0] and len(fake_openai.embeddings) == 3
    assert fake_openai.pending == 1


def test_an_unreachable_upstream_is_a_503(make: Callable[..., RemoteEncoder]) -> None:
    encoder = make(base_url=f"http://127.0.0.1:{free_port()}/v1", dim=4, retries=1)
    with pytest.raises(Unavailable, match="ConnectError") as caught:
        encoder.encode(["x"])
    assert caught.value.headers["Retry-After"] == "1"


def test_the_breaker_opens_then_fails_fast_then_a_trial_closes_it(
    fake_openai: FakeOpenAI, make: Callable[..., RemoteEncoder]
) -> None:
    clock = Clock()
    breaker = CircuitBreaker(2, 30.0, clock=clock)
    encoder = make(dim=4, retries=0, breaker=breaker)
    fake_openai.script(Status(503), Status(500))
    for _ in range(2):
        with pytest.raises(Unavailable, match="did not answer"):
            encoder.encode(["x"])
    assert breaker.state == "open"
    clock.now = 12.5
    with pytest.raises(Unavailable, match="circuit breaker open") as caught:
        encoder.encode(["x", "y"])
    assert caught.value.headers["Retry-After"] == "18"  # 17.5 s left, rounded up
    assert len(fake_openai.embeddings) == 2  # nothing reached the server
    clock.now = 31.0
    assert np.allclose(encoder.encode(["x"]), expected(["x"], 4), atol=1e-6)
    assert breaker.state == "closed" and len(fake_openai.embeddings) == 3


def test_an_upstream_400_is_a_422_naming_text_and_is_not_retried(
    fake_openai: FakeOpenAI, make: Callable[..., RemoteEncoder]
) -> None:
    encoder = make(dim=4)
    fake_openai.script(Status(400, message="This model's maximum context length is 8192"))
    with pytest.raises(InvalidRequest, match="maximum context length") as caught:
        encoder.encode(["a very long text"])
    assert caught.value.status == 422 and caught.value.field == "text"
    assert len(fake_openai.embeddings) == 1 and encoder.breaker.state == "closed"


def test_a_refused_key_is_a_503_naming_the_setting(
    fake_openai: FakeOpenAI, make: Callable[..., RemoteEncoder]
) -> None:
    encoder = make(dim=4)
    fake_openai.script(Status(401))
    with pytest.raises(Unavailable, match="remote_embedding_api_key"):
        encoder.encode(["x"])
    assert len(fake_openai.embeddings) == 1


def test_neither_key_nor_texts_are_logged(
    fake_openai: FakeOpenAI, make: Callable[..., RemoteEncoder], caplog: pytest.LogCaptureFixture
) -> None:
    encoder = make(dim=4, retries=1, breaker=CircuitBreaker(1, 30.0))
    fake_openai.script(Status(500), Status(500))
    with caplog.at_level(logging.DEBUG), pytest.raises(Unavailable):
        encoder.encode(["secret words"])
    assert any("embeddings" in r.getMessage() for r in caplog.records)
    for record in caplog.records:
        assert KEY not in record.getMessage() and "secret words" not in record.getMessage()


def test_an_unset_url_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="remote_embedding_url"):
        load_encoder("remote", settings_for(tmp_path))
    with pytest.raises(ConfigError, match="http"):
        RemoteEncoder("localhost:8000/v1")


def test_a_failed_probe_is_a_config_error(fake_openai: FakeOpenAI) -> None:
    fake_openai.script(Status(500))
    with pytest.raises(ConfigError, match="could not learn its dimension.*HTTP 500"):
        RemoteEncoder(fake_openai.base_url, retries=3)
    assert len(fake_openai.embeddings) == 1  # the probe gets a single try


def test_settings_configure_the_encoder(fake_openai: FakeOpenAI, tmp_path: Path) -> None:
    settings = settings_for(tmp_path, **remote(fake_openai, remote_embedding_dim=6))
    encoder = load_encoder("remote", settings)
    assert isinstance(encoder, RemoteEncoder)
    try:
        assert encoder.dim == 6 and encoder.batch == 5 and encoder.retries == 1
        assert encoder.breaker.failures == settings.llm_breaker_failures
        encoder.encode(["x"])
        sent = fake_openai.embeddings[0]
        assert sent.headers["authorization"] == f"Bearer {KEY}"
        assert sent.json == {
            "model": MODEL,
            "input": ["x"],
            "encoding_format": "float",
            "dimensions": 6,
        }
    finally:
        encoder.close()


def test_the_cache_name_changes_with_url_and_model(
    fake_openai: FakeOpenAI, make: Callable[..., RemoteEncoder]
) -> None:
    names = {
        make(dim=4).cache_name,
        make(dim=4, model="other").cache_name,
        make(dim=4, base_url=fake_openai.base_url.replace("127.0.0.1", "localhost")).cache_name,
        make(dim=5).cache_name,
    }
    assert len(names) == 4
    assert make(dim=4).cache_name in names
    assert all(name.startswith("remote:") and "127.0.0.1" not in name for name in names)


# through the HTTP API


def remote(fake: FakeOpenAI, **overrides: Any) -> dict[str, Any]:
    """Settings of a remote encoder on ``fake``: small batches, one quick retry."""
    values: dict[str, Any] = {
        "remote_embedding_url": fake.base_url,
        "remote_embedding_model": MODEL,
        "remote_embedding_api_key": KEY,
        "remote_embedding_batch": 5,
        "llm_retries": 1,
        "llm_backoff_s": 0.01,
        "llm_backoff_max_s": 0.02,
    }
    values.update(overrides)
    return values


async def test_a_remote_collection_finds_the_identical_text(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    texts = {f"t{i}": f"document number {i} about topic {i * 7}" for i in range(12)}
    async with serve(tmp_path, **remote(fake_openai)) as client:
        r = await client.put("/collections/r", json={"encoder": "remote"})
        assert r.status_code == 201, r.text
        assert r.json()["dim"] == EMBEDDING_DIM and r.json()["metric"] == "cosine"
        items = [{"id": key, "text": text} for key, text in texts.items()]
        r = await client.post("/collections/r/items", json={"items": items})
        assert r.status_code == 200, r.text
        for key in ("t3", "t10"):
            r = await client.post(
                "/collections/r/search", json={"text": texts[key], "k": 3, "mode": "vector"}
            )
            assert r.status_code == 200, r.text
            hits = r.json()["hits"]
            assert hits[0]["id"] == key and hits[0]["score"] == pytest.approx(1.0, abs=1e-4)
        assert all(r.headers["authorization"] == f"Bearer {KEY}" for r in fake_openai.embeddings)

        fake_openai.script(Status(503, retry_after="7"), Status(503, retry_after="7"))
        r = await client.post(
            "/collections/r/search", json={"text": "not cached yet", "mode": "vector"}
        )
        body = problem(r, 503)
        assert "embeddings API" in body["detail"] and r.headers["Retry-After"]


async def test_a_remote_collection_without_a_url_is_a_422_naming_encoder(tmp_path: Path) -> None:
    async with serve(tmp_path) as client:
        r = await client.put("/collections/r", json={"encoder": "remote"})
        assert "remote_embedding_url" in problem(r, 422, "encoder")["detail"]
