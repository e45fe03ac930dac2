"""Answers without an LLM: the retrieved sentences that best support the question.

``/ask`` on a server without ``llm_base_url`` answers with :func:`answer`: it
splits the retrieved passages into sentences, scores each sentence's support
for the question, and quotes the best one (and the runner-up when it is nearly
as good), each with a citation that says where the sentence is in its document.
When even the best sentence is weakly supported it abstains rather than quote
something beside the point.

A sentence's support is a weighted sum, each part in [0, 1] (cosine can go
below 0 in principle, not in practice):

* ``0.6`` x the cosine of the question's and the sentence's embeddings (one
  ``encode`` call for the question and the candidates, at most
  :data:`MAX_EMBEDDED` of them, best by the other two parts);
* ``0.3`` x the share of the question's content words found in the sentence
  (lowercased, English stopwords and question words left out, a crude suffix
  stemmer so "founded" finds "found"): the embedding alone misses rare names
  and numbers a question repeats;
* ``0.1`` x ``1 / (1 + rank)`` of the sentence's passage in the retrieval, so
  the retriever's opinion breaks near-ties.

The weights and :data:`THRESHOLD` were chosen on SQuAD 2.0's "Normans" article
with all-MiniLM-L6-v2 (``benchmarks/extractive_answers.py`` prints the table);
with another encoder the scale of the cosine, and so the right threshold,
differ. The threshold rejects questions the passages are not about. It cannot
tell a question that the passages are about, but that they do not answer
(SQuAD 2.0's "impossible" questions, written to be answered by a plausible
wrong span), from one they answer: that takes reading comprehension, which
neither an embedding nor word overlap has.

The input is the retrieval's hits, best first (:class:`~spyglass.stores.base.Hit`:
``text`` the passage, ``payload`` with the document chunk's ``source``,
``start``, ``end`` and maybe ``page``, as ingest writes them). Hits without
text are skipped. A sentence that several overlapping chunks hold is scored
once, for the best-ranked of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from spyglass.keywords import STOPWORDS, WORD
from spyglass.rag.sentences import Sentence, split_sentences
from spyglass.stores.base import Hit

__all__ = ["THRESHOLD", "Answer", "Citation", "SentenceEncoder", "answer"]

#: Least support an answer needs; below it :func:`answer` abstains. Chosen with
#: ``benchmarks/extractive_answers.py`` (k=5): its 20 off-topic questions score at
#: most 0.32, its 48 answerable ones 0.46 at the 5th percentile (one at 0.28);
#: 0.40 sits between, so every off-topic question and 1 answerable one abstain.
#: Higher thresholds abstain on more "impossible" questions, but on about as many
#: answerable ones (0.50: 23% against 12%), since support cannot tell them apart.
THRESHOLD = 0.40
#: A second sentence joins the answer when its support is this close to the best's.
MARGIN = 0.05
#: Most sentences an answer quotes.
MAX_SENTENCES = 2
#: Most candidate sentences embedded per answer: those best by word overlap and
#: rank. Embedding is nearly all of an answer's time (about 10 ms a sentence on
#: one core), so this bounds it whatever k is; on the benchmark's questions,
#: keeping 8 of the ~23 (k=5) or ~47 (k=10) candidates gave the same answers as
#: embedding all of them.
MAX_EMBEDDED = 12
#: Weights of the three parts of a sentence's support (see the module docstring).
DENSE_WEIGHT = 0.6
LEXICAL_WEIGHT = 0.3
RANK_WEIGHT = 0.1

_SUFFIXES = ("ing", "edly", "ed", "es", "s", "ly")
#: The keyword search's function words, and words of questions that name no content.
_STOPWORDS = STOPWORDS | frozenset(
    """also called done kind many may might much must name named one ones s shall t type us
    whose yes yet""".split()
)


class SentenceEncoder(Protocol):
    """What :func:`answer` needs of an encoder: unit-length rows, one per text, in order."""

    def encode(self, batch: Sequence[str]) -> np.ndarray: ...


@dataclass(frozen=True)
class Citation:
    """One quoted sentence and where it is.

    ``number`` is its position in the answer, from 1. ``start``/``end`` are the
    sentence's character offsets in the text its ``start`` payload indexes (the
    document part: the file, or the PDF ``page``), so ``document[start:end] ==
    text``; for an item without a ``start`` payload they index the item's text.
    """

    number: int
    item_id: str
    source: str | None
    start: int
    end: int
    page: int | None
    text: str


@dataclass(frozen=True)
class Answer:
    """The answer text (empty when abstaining), its citations and its support.

    ``support`` is the best sentence's score (0 with nothing to score); ``reason``
    says why the answer abstained, and is empty when it did not.
    """

    text: str
    abstained: bool
    support: float
    reason: str = ""
    citations: list[Citation] = field(default_factory=list)


@dataclass(frozen=True)
class _Candidate:
    """A sentence of a hit, where the hit was ranked, and where the sentence starts."""

    hit: Hit
    rank: int
    sentence: Sentence
    offset: int

    @property
    def span(self) -> tuple[object, object, int, int]:
        """What identifies the sentence across overlapping chunks of one document."""
        payload = self.hit.payload
        source = payload.get("source", self.hit.id)
        start = self.offset + self.sentence.start
        return source, payload.get("page"), start, start + len(self.sentence.text)


def answer(
    question: str,
    hits: Sequence[Hit],
    encoder: SentenceEncoder,
    *,
    threshold: float = THRESHOLD,
) -> Answer:
    """Answer ``question`` with sentences of ``hits`` (best first), or abstain."""
    candidates = _candidates(hits)
    if not candidates:
        reason = "no passages were retrieved" if not hits else "the passages hold no text"
        return Answer("", abstained=True, support=0.0, reason=reason)
    support = _support(question, candidates, encoder)
    order = np.argsort(-support, kind="stable")
    best = float(support[order[0]])
    if best < threshold:
        reason = (
            f"the passages do not support an answer (support {best:.2f}, threshold {threshold:.2f})"
        )
        return Answer("", abstained=True, support=best, reason=reason)
    chosen = [candidates[i] for i in order[:MAX_SENTENCES] if support[i] >= best - MARGIN]
    citations = [_citation(number, c) for number, c in enumerate(chosen, start=1)]
    text = " ".join(c.text for c in citations)
    return Answer(text, abstained=False, support=best, citations=citations)


def _candidates(hits: Sequence[Hit]) -> list[_Candidate]:
    """Every sentence of every hit with text, in rank order, each document span once."""
    seen: set[tuple[object, object, int, int]] = set()
    candidates = []
    for rank, hit in enumerate(hits):
        if not hit.text:
            continue
        offset = _int(hit.payload.get("start")) or 0
        for sentence in split_sentences(hit.text):
            candidate = _Candidate(hit, rank, sentence, offset)
            if candidate.span not in seen:
                seen.add(candidate.span)
                candidates.append(candidate)
    return candidates


def _support(question: str, candidates: list[_Candidate], encoder: SentenceEncoder) -> np.ndarray:
    """Each candidate's support for ``question``; ``-inf`` for those not embedded.

    The lexical and rank parts are computed first, and only the
    :data:`MAX_EMBEDDED` candidates best by them are embedded (see there).
    """
    wanted = _terms(question)
    lexical = np.array(
        [len(wanted & _terms(c.sentence.text)) / len(wanted) if wanted else 0.0 for c in candidates]
    )
    prior = np.array([1.0 / (1 + c.rank) for c in candidates])
    support: np.ndarray = LEXICAL_WEIGHT * lexical + RANK_WEIGHT * prior
    embedded = np.argsort(-support, kind="stable")[:MAX_EMBEDDED]
    texts = [candidates[i].sentence.text for i in embedded]
    vectors = np.asarray(encoder.encode([question, *texts]), dtype=np.float64)
    dense = np.full(len(candidates), -np.inf)
    dense[embedded] = vectors[1:] @ vectors[0]
    support += DENSE_WEIGHT * dense
    return support


def _terms(text: str) -> set[str]:
    """The content words of ``text``: lowercase, no stopwords, crudely stemmed."""
    return {_stem(w) for w in WORD.findall(text.lower()) if w not in _STOPWORDS}


def _stem(word: str) -> str:
    """``word`` without one common English suffix, if at least three letters remain."""
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


def _citation(number: int, candidate: _Candidate) -> Citation:
    """The citation of ``candidate``: offsets in its document, as its payload places it."""
    payload: dict[str, Any] = candidate.hit.payload
    _, _, start, end = candidate.span
    source = payload.get("source")
    return Citation(
        number=number,
        item_id=candidate.hit.id,
        source=source if isinstance(source, str) else None,
        start=start,
        end=end,
        page=_int(payload.get("page")),
        text=candidate.sentence.text,
    )


def _int(value: object) -> int | None:
    """``value`` if it is an int (not a bool), else ``None``: payloads are user data."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None
