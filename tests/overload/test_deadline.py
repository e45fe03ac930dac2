"""Abandoned work stops: a request's deadline reaches its threads, which check it."""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from spyglass.app import create_app
from spyglass.encoders.batching import BatchingEncoder
from spyglass.encoders.text import TextEncoder
from spyglass.errors import Abandoned, Unavailable
from spyglass.overload.deadline import Deadline, check, current_deadline
from spyglass.schema import CollectionIn, SearchIn
from tests.conftest import SHARED_DATA
from tests.conftest import test_settings as make_settings
from tests.encoders.test_batching import SENTENCES


def test_a_cancelled_or_past_deadline_abandons_the_work() -> None:
    check()  # no deadline: never abandoned
    later = Deadline(time.monotonic() + 3600)
    later.check()
    later.cancel("its client went away")
    with pytest.raises(Abandoned, match="client went away") as raised:
        later.check()
    assert isinstance(raised.value, Unavailable) and raised.value.status == 503
    assert raised.value.headers["Retry-After"] == "1"
    past = Deadline(time.monotonic() - 1)
    token = current_deadline.set(past)
    try:
        with pytest.raises(Abandoned, match="time budget"):
            check()
    finally:
        current_deadline.reset(token)


class GatedEncoder(TextEncoder):
    """The real text encoder, whose first call waits for the test; records every text."""

    def __init__(self) -> None:
        super().__init__(threads=1)
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.seen: list[str] = []

    def encode(self, batch: Sequence[str]) -> np.ndarray:
        self.seen.extend(batch)
        self.entered.set()
        self.gate.wait()
        return super().encode(batch)


def test_an_abandoned_caller_stops_waiting_and_its_texts_are_not_encoded() -> None:
    inner = GatedEncoder()
    batching = BatchingEncoder(inner, max_batch=4, max_wait_ms=0)
    try:
        first: list[object] = []
        busy = threading.Thread(target=lambda: first.append(batching.encode(SENTENCES[:1])))
        busy.start()
        assert inner.entered.wait(60)  # the batch thread is inside the model call
        deadline = Deadline(time.monotonic() + 3600)
        context = contextvars.copy_context()
        context.run(current_deadline.set, deadline)
        outcome: list[BaseException] = []

        def abandoned_caller() -> None:
            try:
                context.run(batching.encode, SENTENCES[1:2])
            except Abandoned as exc:
                outcome.append(exc)

        waiting = threading.Thread(target=abandoned_caller)
        waiting.start()
        deadline.cancel("its time budget ran out")
        waiting.join(60)
        assert not waiting.is_alive() and len(outcome) == 1  # it stopped waiting
        inner.gate.set()  # the model call ends; the abandoned call is not the next batch's
        busy.join(60)
        assert len(first) == 1
        assert inner.seen == SENTENCES[:1]
        later = batching.encode(SENTENCES[2:3])  # the encoder goes on serving
        assert later.shape == (1, 384) and inner.seen == [SENTENCES[0], SENTENCES[2]]
    finally:
        inner.gate.set()
        batching.close()


async def test_a_search_past_its_deadline_stops_before_the_store(tmp_path: Path) -> None:
    app = create_app(make_settings(tmp_path / "data"))
    async with app.router.lifespan_context(app):
        engine = app.state.engine
        engine.create_collection("c", CollectionIn(dim=2))
        query = SearchIn(vector=[1.0, 0.0], k=1)
        assert engine.search("c", [query]) == [[]]
        token = current_deadline.set(Deadline(time.monotonic() - 1))
        try:
            with pytest.raises(Abandoned):
                engine.search("c", [query])
        finally:
            current_deadline.reset(token)


@pytest.mark.parametrize("repeat", [1, 40])
def test_long_texts_are_tokenized_on_a_prefix_with_the_same_tokens(repeat: int) -> None:
    encoder = TextEncoder(threads=1)
    doc = (SHARED_DATA / "rag_squad_normans" / "Normans.md").read_text()
    for text in (doc * repeat, "word " * 5000, "a.b,c;" * 3000, "x" * 20000, "短文" * 6000):
        bounded = encoder._bounded(text)
        assert encoder._tokenizer.encode(bounded).ids == encoder._tokenizer.encode(text).ids
        if " " in text or "." in text:
            assert len(bounded) < len(text)  # only a prefix was read
    vectors = encoder.encode([doc * repeat, doc[:5000]])
    assert np.allclose(vectors[0], vectors[1], atol=1e-6)  # 256 tokens of the same start
