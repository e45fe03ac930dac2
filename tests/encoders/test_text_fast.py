"""The text-fast encoder: the packaged MiniLM with int8 arithmetic, derived and cached."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from spyglass.encoders.text import TextEncoder
from spyglass.encoders.text_fast import FastTextEncoder, quantized_model
from spyglass.errors import ConfigError

SENTENCES = [
    "In what country is Normandy located?",
    "The Normans were the people who gave their name to Normandy, a region in France.",
    "Honeybees make honey from the nectar of flowers.",
    "Ferns reproduce by spores.",
]


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    return tmp_path / "spyglass"


def test_vectors_are_close_to_the_text_encoders(cache: Path) -> None:
    fast = FastTextEncoder().encode(SENTENCES)
    exact = TextEncoder().encode(SENTENCES)
    assert fast.shape == exact.shape == (4, 384) and fast.dtype == np.float32
    assert np.allclose(np.linalg.norm(fast, axis=1), 1, atol=1e-5)
    cosines = np.einsum("ij,ij->i", fast, exact)
    assert cosines.min() > 0.98
    assert not np.allclose(fast, exact)  # really another graph
    # the question is nearest to the sentence that answers it, as with text
    assert int(np.argmax(fast[1:] @ fast[0])) == 0


def test_the_derived_graph_is_kept_and_reused(cache: Path) -> None:
    first = quantized_model()
    assert first.parent == cache and first.is_file()
    stamp = first.stat().st_mtime_ns
    assert quantized_model() == first and first.stat().st_mtime_ns == stamp
    assert [p.name for p in cache.iterdir()] == [first.name]  # no scratch files left


def test_an_unwritable_cache_still_gives_an_encoder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    vectors = FastTextEncoder().encode(SENTENCES[:1])
    assert vectors.shape == (1, 384)


def test_it_runs_the_packaged_model_only() -> None:
    with pytest.raises(ConfigError, match="packaged"):
        FastTextEncoder(model_path="/some/model.onnx")
