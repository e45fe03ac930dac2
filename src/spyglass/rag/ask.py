"""Question answering over a collection: retrieve passages, then answer from them.

Retrieval is the collection's search (hybrid for text collections) for the ``k`` best
chunks. With an LLM configured (``llm_base_url``), the chunks become numbered
sources of a prompt and the model's answer cites them; without one, the answer is
extracted: the best-supported sentences of the chunks, or an abstention when the
support is weak (:mod:`spyglass.rag.extractive`). Either way the answer carries
citations (item id, source, character offsets, page) of what it was built from.

The blocking parts (search, the sentence encoder) run in the worker's thread pool;
the LLM call is asynchronous on the event loop, through the one pooled client.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

from spyglass.encoders.base import Encoder
from spyglass.engine import Engine
from spyglass.llm.client import LLMClient
from spyglass.rag import extractive, prompt
from spyglass.rag.sessions import Turn
from spyglass.schema import SearchIn
from spyglass.stores.base import Hit

EXTRACTIVE = "extractive"
"""The ``model`` of an answer extracted without an LLM."""


@dataclass(frozen=True)
class Question:
    """What a client asks, and how to retrieve for it."""

    text: str
    k: int = 5
    filter: dict[str, Any] | None = None
    mode: str | None = None


@dataclass
class Reply:
    """An answer with its citations, ready to serialise."""

    answer: str
    citations: list[dict[str, Any]]
    abstained: bool
    model: str
    reason: str = ""
    support: float | None = None
    sources: list[dict[str, Any]] = field(default_factory=list)


class Asker:
    """Answers questions over the collections of one engine; see the module docstring."""

    def __init__(
        self, engine: Engine, llm: LLMClient | None = None, threshold: float | None = None
    ) -> None:
        self.engine = engine
        self.llm = llm
        self.threshold = extractive.THRESHOLD if threshold is None else threshold

    def retrieve(self, collection: str, question: Question) -> list[Hit]:
        """The passages to answer from, best first (blocking: run it in a thread)."""
        mode = question.mode
        if mode is None and self._text_encoder(collection) is None:
            mode = "keyword"  # texts the client embedded itself: their words still match
        query = SearchIn(text=question.text, k=question.k, filter=question.filter, mode=mode)
        return self.engine.search(collection, [query])[0]

    def _text_encoder(self, collection: str) -> Encoder | None:
        """The collection's encoder if it embeds text, else None."""
        name = self.engine.get_collection(collection).spec.encoder
        if name == "none":
            return None
        encoder = self.engine.encoder(name, collection)
        return encoder if "text" in encoder.inputs else None

    def extract(self, collection: str, question: str, hits: Sequence[Hit]) -> Reply:
        """The extractive answer from ``hits`` (blocking: it runs the sentence encoder)."""
        # A collection without a text encoder (keyword search only) borrows ``text``.
        encoder = self._text_encoder(collection) or self.engine.encoder("text", collection)
        found = extractive.answer(question, hits, encoder, threshold=self.threshold)
        return Reply(
            answer=found.text,
            citations=[_citation_json(c) for c in found.citations],
            abstained=found.abstained,
            model=EXTRACTIVE,
            reason=found.reason,
            support=round(found.support, 4),
            sources=[source_json(n, hit) for n, hit in enumerate(hits, start=1)],
        )

    async def generate(
        self, question: str, hits: Sequence[Hit], history: Sequence[Turn] = ()
    ) -> Reply:
        """The LLM's answer from ``hits``, citing the sources it used."""
        assert self.llm is not None
        if not hits:
            return _nothing_found(self.llm.model)
        completion = await self.llm.complete(prompt.messages(question, hits, history))
        return self._cited(completion.text, hits, self.llm.model)

    async def stream(
        self, question: str, hits: Sequence[Hit], history: Sequence[Turn] = ()
    ) -> AsyncIterator[str | Reply]:
        """The LLM's answer as text deltas, then the finished :class:`Reply`."""
        assert self.llm is not None
        if not hits:
            yield _nothing_found(self.llm.model)
            return
        parts = []
        deltas = self.llm.stream(prompt.messages(question, hits, history))
        async with aclosing(deltas):  # type: ignore[type-var]  # an async generator
            async for delta in deltas:
                parts.append(delta)
                yield delta
        yield self._cited("".join(parts), hits, self.llm.model)

    def _cited(self, text: str, hits: Sequence[Hit], model: str) -> Reply:
        citations = []
        for number in prompt.cited(text, len(hits)):
            hit = hits[number - 1]
            citations.append(source_json(number, hit))
        return Reply(
            answer=text.strip(),
            citations=citations,
            abstained=False,
            model=model,
            sources=[source_json(n, hit) for n, hit in enumerate(hits, start=1)],
        )


def _nothing_found(model: str) -> Reply:
    return Reply(
        answer="",
        citations=[],
        abstained=True,
        model=model,
        reason="no passages were retrieved",
    )


def source_json(number: int, hit: Hit) -> dict[str, Any]:
    """A retrieved chunk as a citation: the whole chunk's place in its document."""
    payload = hit.payload
    text = hit.text or ""
    start = payload.get("start")
    end = payload.get("end")
    if not isinstance(start, int) or not isinstance(end, int):
        start, end = 0, len(text)
    return {
        "number": number,
        "id": hit.id,
        "source": payload.get("source"),
        "page": payload.get("page"),
        "start": start,
        "end": end,
        "text": text,
    }


def _citation_json(citation: extractive.Citation) -> dict[str, Any]:
    return {
        "number": citation.number,
        "id": citation.item_id,
        "source": citation.source,
        "page": citation.page,
        "start": citation.start,
        "end": citation.end,
        "text": citation.text,
    }
