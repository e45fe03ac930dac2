"""Micro-batching of concurrent ``encode`` calls, on the real ``text`` encoder.

Batches form from threads released together by a barrier; the wait window is
long (seconds) so that a batch closes because it is full, not by the clock.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest

from spyglass.encoders.batching import BatchingEncoder
from spyglass.encoders.text import TextEncoder
from spyglass.errors import InvalidRequest
from spyglass.ingest.tokens import tokens_for

SENTENCES = [
    f"Sentence number {i} is about {topic}."
    for i, topic in enumerate(
        [
            "the Normans",
            "password resets",
            "interest rates",
            "red running shoes",
            "a cat on a mat",
            "the Battle of Hastings, fought in 1066 between William and Harold",
            "quantum computing",
            "sourdough bread",
        ]
        * 4
    )
]


class CountingEncoder(TextEncoder):
    """The real text encoder, recording the size of every ``encode`` call."""

    def __init__(self) -> None:
        super().__init__(threads=1)
        self.sizes: list[int] = []
        self._lock = threading.Lock()

    def encode(self, batch: Sequence[str]) -> np.ndarray:
        with self._lock:
            self.sizes.append(len(batch))
        return super().encode(batch)


@pytest.fixture(scope="module")
def plain() -> TextEncoder:
    return TextEncoder(threads=1)


@pytest.fixture
def counting() -> CountingEncoder:
    return CountingEncoder()


def run_together(inputs: list[Any], call: Callable[[Any], np.ndarray]) -> list[Any]:
    """``call(input)`` from one thread per input, all released at once; results or errors."""
    results: list[Any] = [None] * len(inputs)
    barrier = threading.Barrier(len(inputs))

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = call(inputs[i])
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(inputs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_concurrent_callers_get_the_plain_vectors_from_shared_batches(
    plain: TextEncoder, counting: CountingEncoder
) -> None:
    batching = BatchingEncoder(counting, max_batch=32, max_wait_ms=5000)
    try:
        results = run_together([[s] for s in SENTENCES], batching.encode)
    finally:
        batching.close()
    expected = plain.encode(SENTENCES)
    for i, rows in enumerate(results):
        assert isinstance(rows, np.ndarray), rows
        assert rows.shape == (1, 384)
        assert np.allclose(rows[0], expected[i], atol=1e-5)
    assert sum(counting.sizes) == len(SENTENCES)
    assert len(counting.sizes) < len(SENTENCES)  # some calls were merged
    assert max(counting.sizes) > 1


def test_callers_with_several_texts_get_their_own_rows_in_order(
    plain: TextEncoder, counting: CountingEncoder
) -> None:
    groups = [SENTENCES[0:3], SENTENCES[3:4], SENTENCES[4:9], SENTENCES[9:11]]
    batching = BatchingEncoder(counting, max_batch=11, max_wait_ms=5000)
    try:
        results = run_together(groups, batching.encode)
    finally:
        batching.close()
    for group, rows in zip(groups, results, strict=True):
        assert np.allclose(rows, plain.encode(group), atol=1e-5)
    assert counting.sizes == [11]


def test_a_bad_input_fails_only_its_caller(plain: TextEncoder, counting: CountingEncoder) -> None:
    inputs: list[list[Any]] = [[s] for s in SENTENCES[:7]] + [["fine", 123]]
    batching = BatchingEncoder(counting, max_batch=len(SENTENCES[:7]) + 2, max_wait_ms=5000)
    try:
        results = run_together(inputs, batching.encode)
    finally:
        batching.close()
    assert isinstance(results[-1], InvalidRequest)
    expected = plain.encode(SENTENCES[:7])
    for i in range(7):
        assert isinstance(results[i], np.ndarray), results[i]
        assert np.allclose(results[i][0], expected[i], atol=1e-5)
    assert counting.sizes[0] == 9  # the whole batch failed once...
    assert sorted(counting.sizes[1:]) == [1] * 7 + [2]  # ...then each caller alone


def test_big_and_empty_calls_bypass_the_queue(counting: CountingEncoder) -> None:
    batching = BatchingEncoder(counting, max_batch=4, max_wait_ms=5000)
    try:
        assert batching.encode(SENTENCES[:4]).shape == (4, 384)
        assert batching.encode([]).shape == (0, 384)
        with pytest.raises(InvalidRequest):
            batching.encode("a bare string")
    finally:
        batching.close()
    assert counting.sizes == [4, 0, len("a bare string")]  # each straight to the model


def test_same_face_as_the_inner_encoder_and_usable_after_close(plain: TextEncoder) -> None:
    batching = BatchingEncoder(plain, max_wait_ms=0)
    assert (batching.name, batching.dim, batching.inputs, batching.metric) == (
        plain.name,
        plain.dim,
        plain.inputs,
        plain.metric,
    )
    assert batching.max_tokens == plain.max_tokens
    assert tokens_for(batching).count("hello world") == tokens_for(plain).count("hello world")
    one = batching.encode(["hello"])
    batching.close()
    assert all(not t.is_alive() for t in batching._threads)
    assert np.allclose(batching.encode(["hello"]), one, atol=1e-5)


def test_two_workers_answer_everyone(plain: TextEncoder, counting: CountingEncoder) -> None:
    batching = BatchingEncoder(counting, max_batch=4, max_wait_ms=1, workers=2)
    try:
        results = run_together([[s] for s in SENTENCES], batching.encode)
    finally:
        batching.close()
    expected = plain.encode(SENTENCES)
    for i, rows in enumerate(results):
        assert np.allclose(rows[0], expected[i], atol=1e-5)
    assert sum(counting.sizes) == len(SENTENCES)
    assert max(counting.sizes) <= 4
