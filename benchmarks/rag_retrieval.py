"""Retrieval quality of document ingest + search (vector, keyword, hybrid) on SQuAD's
"Normans" article: hit@1/3/5 and MRR@10 per search mode.

Data: ``../shared/data/rag_squad_normans`` (39 paragraphs of the Wikipedia
article, the answerable questions of ``queries.jsonl`` whose gold paragraph is in
``qrels/test.tsv``: 48 here). A question is a hit at k when its gold paragraph is
among the top k results.

Every setup ingests through the real pipeline (``open_source`` + ``ingest``,
collection encoder ``text`` = all-MiniLM-L6-v2, cosine) into a fresh data dir
under ``benchmarks/out/rag_retrieval/`` and searches with ``Engine.search`` in each
``mode``: ``vector`` (MiniLM cosine), ``keyword`` (the store's BM25) and ``hybrid``
(both, fused by reciprocal rank with the default settings):

* ``paragraph files``: ``paragraphs_txt/`` (one .txt per paragraph), chunked at
  the default 256 tokens / 32 overlap; a chunk stands for the paragraph its file
  holds. This is the setup BM25's figure is for.
* ``Normans.md 256/32`` and ``128/16``: the whole article as one Markdown file,
  chunked by the ingest; a chunk stands for every paragraph it overlaps (found by
  character offsets), so a chunk spanning two paragraphs can hit either.

Two readings of "top k": ``chunks`` counts the k best chunks as the API returns
them; ``passages`` first drops chunks of a paragraph already ranked higher, so k
distinct paragraphs are compared, as BM25 over paragraphs does. BM25 (k1 1.2,
b 0.75, lowercase word tokens) is computed here over the paragraphs on the same
questions; the dataset's SOURCE.txt quotes 0.75 / 0.93 for the full 96 questions.

    .venv/bin/python benchmarks/rag_retrieval.py
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shutil
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from _common import OUT, SHARED_DATA

from spyglass.engine import Engine
from spyglass.ingest.loaders import open_source
from spyglass.ingest.pipeline import ingest
from spyglass.schema import SearchIn
from spyglass.settings import Settings
from spyglass.stores import open_store

DATA = SHARED_DATA / "rag_squad_normans"
WORK = OUT / "rag_retrieval"
KS = (1, 3, 5)
MODES = ("vector", "keyword", "hybrid")
DEPTH = 20
BM25_QUOTED = {1: 0.75, 5: 0.93}


@dataclass(frozen=True)
class Question:
    id: str
    text: str
    gold: str


def load_corpus() -> dict[str, str]:
    rows = [json.loads(line) for line in (DATA / "corpus.jsonl").read_text().splitlines()]
    return {row["_id"]: row["text"] for row in rows}


def load_questions() -> list[Question]:
    lines = (DATA / "qrels" / "test.tsv").read_text().splitlines()[1:]
    gold = {query: doc for query, doc, _ in (line.split("\t") for line in lines)}
    questions = []
    for line in (DATA / "queries.jsonl").read_text().splitlines():
        row = json.loads(line)
        if row["_id"] in gold and not row["metadata"]["is_impossible"]:
            questions.append(Question(row["_id"], row["text"], gold[row["_id"]]))
    return questions


def hits_at(ranked: Sequence[Sequence[str]], questions: Sequence[Question]) -> dict[int, float]:
    """Share of questions whose gold passage is among the first k labels of its ranking."""
    return {
        k: sum(
            q.gold in {p for ps in r[:k] for p in ps}
            for q, r in zip(questions, ranked, strict=True)
        )
        / len(questions)
        for k in KS
    }


def distinct(ranking: Sequence[Sequence[str]]) -> list[list[str]]:
    """The ranking with passages already seen higher up removed (empty entries dropped)."""
    seen: set[str] = set()
    out = []
    for passages in ranking:
        new = [p for p in passages if p not in seen]
        seen.update(new)
        if new:
            out.append(new)
    return out


def bm25(corpus: dict[str, str], questions: Sequence[Question]) -> list[list[list[str]]]:
    def words(text: str) -> list[str]:
        return re.findall(r"\w+", text.lower())

    docs = {doc_id: Counter(words(text)) for doc_id, text in corpus.items()}
    lengths = {doc_id: sum(c.values()) for doc_id, c in docs.items()}
    average = sum(lengths.values()) / len(lengths)
    frequency = Counter(term for counts in docs.values() for term in counts)
    n = len(docs)
    rankings = []
    for question in questions:
        scores = {}
        for doc_id, counts in docs.items():
            score = 0.0
            for term in words(question.text):
                tf = counts.get(term, 0)
                if tf:
                    idf = math.log(1 + (n - frequency[term] + 0.5) / (frequency[term] + 0.5))
                    norm = tf + 1.2 * (1 - 0.75 + 0.75 * lengths[doc_id] / average)
                    score += idf * tf * 2.2 / norm
            scores[doc_id] = score
        rankings.append([[d] for d in sorted(scores, key=lambda d: -scores[d])])
    return rankings


def paragraph_spans(text: str, corpus: dict[str, str]) -> dict[str, tuple[int, int]]:
    spans = {}
    for doc_id, paragraph in corpus.items():
        start = text.index(paragraph)
        spans[doc_id] = (start, start + len(paragraph))
    return spans


def mrr(ranked: Sequence[Sequence[Sequence[str]]], questions: Sequence[Question]) -> float:
    """Mean reciprocal rank of the gold passage within the first 10 entries (0 if absent)."""
    total = 0.0
    for question, ranking in zip(questions, ranked, strict=True):
        for rank, passages in enumerate(ranking[:10], start=1):
            if question.gold in passages:
                total += 1 / rank
                break
    return total / len(questions)


def retrieve(
    name: str,
    path: Path,
    label: dict[str, tuple[int, int]] | None,
    questions: Sequence[Question],
    chunk_tokens: int,
    chunk_overlap: int,
    threads: int,
) -> dict[str, list[list[list[str]]]]:
    """Ingest ``path``, run every question in each search mode; each ranking lists the
    passages of each hit, by mode."""
    data_dir = WORK / name.replace(" ", "_").replace("/", "-")
    if data_dir.exists():
        shutil.rmtree(data_dir)
    settings = Settings(data_dir=data_dir, encoder_threads=threads)
    store = open_store(settings)
    try:
        engine = Engine(settings, store)
        source = open_source(path, chunk_tokens=chunk_tokens, chunk_overlap=chunk_overlap)
        started = time.perf_counter()
        report = ingest(engine, "rag", source, encoder="text")
        loaded = time.perf_counter() - started
        results = {}
        for mode in MODES:
            started = time.perf_counter()
            requests = [SearchIn(text=q.text, k=DEPTH, mode=mode) for q in questions]
            results[mode] = engine.search("rag", requests)
            searched = time.perf_counter() - started
            print(
                f"  {name}: {report.items} chunks from {report.files} files, ingest {loaded:.1f}"
                f" s (with model load), {len(questions)} {mode} searches {searched * 1000:.0f} ms"
            )
    finally:
        store.close()
    by_mode = {}
    for mode, found in results.items():
        rankings = []
        for hits in found:
            ranking = []
            for hit in hits:
                if label is None:
                    ranking.append([Path(hit.payload["source"]).stem])
                else:
                    start, end = hit.payload["start"], hit.payload["end"]
                    ranking.append([p for p, (s, e) in label.items() if s < end and start < e])
            rankings.append(ranking)
        by_mode[mode] = rankings
    return by_mode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="encoder threads")
    args = parser.parse_args()
    corpus = load_corpus()
    questions = load_questions()
    normans = (DATA / "Normans.md").read_text(encoding="utf-8")
    spans = paragraph_spans(normans, corpus)
    print(f"{len(corpus)} paragraphs, {len(questions)} answerable questions with a gold paragraph")
    rows: list[tuple[str, str, dict[int, float], float]] = []
    lexical = bm25(corpus, questions)
    rows.append(
        (
            "BM25 over paragraphs (here)",
            "passages",
            hits_at(lexical, questions),
            mrr(lexical, questions),
        )
    )
    setups = [
        ("paragraph files 256/32", DATA / "paragraphs_txt", None, 256, 32),
        ("Normans.md 256/32", DATA / "Normans.md", spans, 256, 32),
        ("Normans.md 128/16", DATA / "Normans.md", spans, 128, 16),
    ]
    for name, path, label, tokens, overlap in setups:
        by_mode = retrieve(name, path, label, questions, tokens, overlap, args.threads)
        for mode, ranked in by_mode.items():
            rows.append(
                (f"{mode}, {name}", "chunks", hits_at(ranked, questions), mrr(ranked, questions))
            )
            passages = [distinct(r) for r in ranked]
            rows.append(
                (
                    f"{mode}, {name}",
                    "passages",
                    hits_at(passages, questions),
                    mrr(passages, questions),
                )
            )
    print()
    header = "".join(f"  hit@{k}" for k in KS) + "  MRR@10"
    print(f"{'setup':<36} {'top k of':<9}{header}")
    quoted = "".join(f"  {BM25_QUOTED[k]:.2f} " if k in BM25_QUOTED else "    -  " for k in KS)
    print(f"{'BM25 (SOURCE.txt, 96 questions)':<36} {'passages':<9}{quoted}")
    for name, unit, scores, reciprocal in rows:
        print(
            f"{name:<36} {unit:<9}"
            + "".join(f"  {scores[k]:.3f}" for k in KS)
            + f"  {reciprocal:.3f}"
        )


if __name__ == "__main__":
    main()
