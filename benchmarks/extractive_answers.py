"""The extractive answerer of /ask on SQuAD 2.0's "Normans" article: answers, abstentions, time.

Data: ``../shared/data/rag_squad_normans`` (39 paragraphs; ``queries.jsonl``
holds 48 answerable questions with gold answer strings and 56 "impossible" ones,
written against a paragraph that does not answer them), plus the 20 off-topic
questions below (hand-written here, about nothing in the article).

For every question the retriever returns k passages and
:func:`spyglass.rag.extractive.answer` answers from them with the threshold off,
which gives each question's support and answer text once; a threshold then
abstains on every question whose support is below it. Per threshold the table
shows:

* ``abstain impossible``: share of the impossible questions it abstains on;
* ``abstain off-topic``: the same for the off-topic questions;
* ``contain answerable``: share of the answerable questions it answers with an
  answer that contains a gold answer string (case-insensitive, whitespace
  normalised);
* ``abstain answerable``: share of the answerable questions it wrongly abstains on.

``ceiling`` is the share of answerable questions with a gold string in any
retrieved passage: no sentence picker does better. The time is one ``answer``
call (split, one ``encode`` of question + sentences, score), threshold on,
after the retrieval, on the server's default encoder (1 onnxruntime thread).

Retrieval: ``dense`` embeds each paragraph whole with the ``text`` encoder and
takes the top k by cosine (a paragraph is a passage with ``source`` its id,
``start`` 0, ``end`` its length). Another retriever is a function ``question ->
list[Hit]`` added to ``RETRIEVERS``.

    .venv/bin/python benchmarks/extractive_answers.py [--retrieval dense] [--k 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from _common import SHARED_DATA

from spyglass.encoders.text import TextEncoder
from spyglass.ingest.records import Record
from spyglass.rag.extractive import THRESHOLD, answer
from spyglass.stores.base import Hit

DATA = SHARED_DATA / "rag_squad_normans"
THRESHOLDS = (0.20, 0.25, 0.30, 0.35, 0.40, 0.45, 0.50, 0.55, 0.60)
OFF_TOPIC = (
    "What is the role of gluons in quantum chromodynamics?",
    "How do I reset a forgotten Wi-Fi router password?",
    "What temperature should I bake sourdough bread at?",
    "Which programming language is best for machine learning?",
    "How many moons does Jupiter have?",
    "What is the boiling point of nitrogen?",
    "Who won the 2018 FIFA World Cup?",
    "How do vaccines train the immune system?",
    "What is the capital of Australia?",
    "How does a transistor amplify a signal?",
    "What are the symptoms of vitamin D deficiency?",
    "How do I compute a matrix inverse in numpy?",
    "What causes the northern lights?",
    "Which is the longest river in South America?",
    "How long should a marathon training plan be?",
    "What does a mortgage interest rate depend on?",
    "Who painted the Mona Lisa?",
    "How do bees make honey?",
    "What is the speed of light in a vacuum?",
    "How do I change a flat tyre on a bicycle?",
)

Retriever = Callable[[str], list[Hit]]


@dataclass(frozen=True)
class Question:
    text: str
    kind: str  # "answerable", "impossible" or "off-topic"
    answers: tuple[str, ...] = ()


@dataclass(frozen=True)
class Outcome:
    question: Question
    support: float
    contained: bool
    in_passages: bool


def load_corpus() -> dict[str, str]:
    rows = [json.loads(line) for line in (DATA / "corpus.jsonl").read_text().splitlines()]
    return {row["_id"]: row["text"] for row in rows}


def load_questions() -> list[Question]:
    questions = []
    for line in (DATA / "queries.jsonl").read_text().splitlines():
        row = json.loads(line)
        meta = row["metadata"]
        kind = "impossible" if meta["is_impossible"] else "answerable"
        questions.append(Question(row["text"], kind, tuple(meta["answers"])))
    questions.extend(Question(text, "off-topic") for text in OFF_TOPIC)
    return questions


def dense_retriever(corpus: dict[str, str], encoder: TextEncoder, k: int) -> Retriever:
    """Top ``k`` paragraphs by cosine of whole-paragraph embeddings."""
    ids = list(corpus)
    vectors = encoder.encode([corpus[i] for i in ids])

    def retrieve(question: str) -> list[Hit]:
        scores = vectors @ encoder.encode([question])[0]
        best = np.argsort(-scores, kind="stable")[:k]
        return [
            Hit(
                id=ids[i],
                score=float(scores[i]),
                payload={"source": ids[i], "start": 0, "end": len(corpus[ids[i]])},
                text=corpus[ids[i]],
            )
            for i in best
        ]

    return retrieve


def hybrid_retriever(corpus: dict[str, str], encoder: TextEncoder, k: int) -> Retriever:
    """Top ``k`` paragraphs by the server's default search of a text collection: vector and
    BM25 rankings fused by reciprocal rank, through a real embedded store and the engine."""
    import atexit
    import shutil
    import tempfile

    from spyglass.engine import Engine
    from spyglass.schema import CollectionIn, SearchIn
    from spyglass.settings import Settings
    from spyglass.stores import open_store

    data_dir = Path(tempfile.mkdtemp(prefix="spyglass-extractive-"))
    settings = Settings(data_dir=data_dir, cache_max_bytes=0)
    store = open_store(settings)
    atexit.register(shutil.rmtree, data_dir, True)
    atexit.register(store.close)
    engine = Engine(settings, store)
    engine.create_collection("normans", CollectionIn(encoder="text"))
    ids = list(corpus)
    vectors = encoder.encode([corpus[i] for i in ids])
    engine.upsert(
        "normans",
        [
            Record(id=i, vector=vector, text=corpus[i], payload={"source": i, "start": 0})
            for i, vector in zip(ids, vectors, strict=True)
        ],
    )

    def retrieve(question: str) -> list[Hit]:
        hits = engine.search("normans", [SearchIn(text=question, k=k)])[0]
        for hit in hits:
            hit.payload["end"] = len(hit.text or "")
        return hits

    return retrieve


RETRIEVERS: dict[str, Callable[[dict[str, str], TextEncoder, int], Retriever]] = {
    "dense": dense_retriever,
    "hybrid": hybrid_retriever,
}


def normalised(text: str) -> str:
    return " ".join(text.lower().split())


def contains(text: str, answers: Sequence[str]) -> bool:
    return any(normalised(a) in normalised(text) for a in answers)


def evaluate(
    questions: Sequence[Question], retrieve: Retriever, encoder: TextEncoder
) -> tuple[list[Outcome], list[float]]:
    """Each question's outcome with the threshold off, and the time of each ``answer`` call."""
    outcomes, seconds = [], []
    for question in questions:
        hits = retrieve(question.text)
        started = time.perf_counter()
        answer(question.text, hits, encoder)
        seconds.append(time.perf_counter() - started)
        result = answer(question.text, hits, encoder, threshold=-np.inf)
        outcomes.append(
            Outcome(
                question,
                result.support,
                contains(result.text, question.answers),
                any(contains(h.text or "", question.answers) for h in hits),
            )
        )
    return outcomes, seconds


def share(flags: Sequence[bool]) -> float:
    return sum(flags) / len(flags) if flags else 0.0


def table(outcomes: Sequence[Outcome]) -> None:
    by_kind = {
        kind: [o for o in outcomes if o.question.kind == kind]
        for kind in ("answerable", "impossible", "off-topic")
    }
    answerable = by_kind["answerable"]
    print(
        f"{'threshold':>9}  {'abstain impossible':>18}  {'abstain off-topic':>17}"
        f"  {'contain answerable':>18}  {'abstain answerable':>18}"
    )
    for threshold in sorted({*THRESHOLDS, THRESHOLD}):
        mark = "  <- THRESHOLD" if threshold == THRESHOLD else ""
        print(
            f"{threshold:9.2f}"
            f"  {share([o.support < threshold for o in by_kind['impossible']]):18.3f}"
            f"  {share([o.support < threshold for o in by_kind['off-topic']]):17.3f}"
            f"  {share([o.contained and o.support >= threshold for o in answerable]):18.3f}"
            f"  {share([o.support < threshold for o in answerable]):18.3f}{mark}"
        )
    ceiling = share([o.in_passages for o in answerable])
    print(f"ceiling (gold string in a retrieved passage): {ceiling:.3f}")
    for kind, group in by_kind.items():
        supports = np.array([o.support for o in group])
        low, p5, p50, p95, high = np.percentile(supports, [0, 5, 50, 95, 100])
        print(
            f"support of {kind:>10} (n={len(group):2d}): min {low:.3f}  p5 {p5:.3f}"
            f"  p50 {p50:.3f}  p95 {p95:.3f}  max {high:.3f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--retrieval", choices=sorted(RETRIEVERS), default="dense")
    parser.add_argument("--k", type=int, default=5, help="Passages per question.")
    args = parser.parse_args()

    encoder = TextEncoder()
    retrieve = RETRIEVERS[args.retrieval](load_corpus(), encoder, args.k)
    questions = load_questions()
    evaluate(questions[:5], retrieve, encoder)  # warm-up
    outcomes, seconds = evaluate(questions, retrieve, encoder)

    print(f"retrieval {args.retrieval}, k={args.k}, threshold {THRESHOLD:.2f}\n")
    table(outcomes)
    ms = sorted(s * 1000 for s in seconds)
    p95 = ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]
    print(f"\nanswer() per question: p50 {statistics.median(ms):.1f} ms  p95 {p95:.1f} ms")


if __name__ == "__main__":
    main()
