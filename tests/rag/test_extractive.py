"""The extractive answerer with the real MiniLM encoder on passages of SQuAD's "Normans" article."""

from __future__ import annotations

import json

import pytest

from spyglass.encoders.text import TextEncoder
from spyglass.ingest.chunker import chunk_text
from spyglass.ingest.tokens import tokens_for
from spyglass.rag.extractive import THRESHOLD, Answer, answer
from spyglass.rag.sentences import MAX_CHARS, split_sentences
from spyglass.stores.base import Hit
from tests.conftest import SHARED_DATA

pytestmark = pytest.mark.slow  # the real MiniLM encoder embeds every candidate sentence

RAG = SHARED_DATA / "rag_squad_normans"


@pytest.fixture(scope="module")
def encoder() -> TextEncoder:
    return TextEncoder()


@pytest.fixture(scope="module")
def paragraphs() -> dict[str, str]:
    lines = (RAG / "corpus.jsonl").read_text(encoding="utf-8").splitlines()
    return {row["_id"]: row["text"] for row in map(json.loads, lines)}


@pytest.fixture(scope="module")
def normans() -> str:
    return (RAG / "Normans.md").read_text(encoding="utf-8")


def paragraph_hits(paragraphs: dict[str, str], *ids: str) -> list[Hit]:
    """The paragraphs as retrieval hits, in the order given, each its own document."""
    return [
        Hit(
            id=i,
            score=1.0,
            payload={"source": i, "start": 0, "end": len(paragraphs[i])},
            text=paragraphs[i],
        )
        for i in ids
    ]


def assert_cited_exactly(result: Answer, documents: dict[str, str]) -> None:
    """Every citation's offsets slice its document to the cited sentence, and the text quotes it."""
    assert result.citations
    for number, citation in enumerate(result.citations, start=1):
        assert citation.number == number
        assert citation.source is not None
        assert documents[citation.source][citation.start : citation.end] == citation.text
        assert citation.text in result.text


def test_picks_the_sentence_that_answers(encoder: TextEncoder, paragraphs: dict[str, str]) -> None:
    hits = paragraph_hits(paragraphs, "normans_p00", "normans_p26", "normans_p14")
    result = answer("In what country is Normandy located?", hits, encoder)
    assert not result.abstained
    assert result.reason == ""
    assert "France" in result.text
    assert result.citations[0].item_id == "normans_p00"
    assert "a region in France" in result.citations[0].text
    assert result.support >= THRESHOLD
    assert_cited_exactly(result, paragraphs)


@pytest.mark.parametrize(
    ("question", "ids", "gold"),
    [
        ("When was the Duchy of Normandy founded?", ("normans_p03", "normans_p04"), "911"),
        ("Who did Emma marry?", ("normans_p15", "normans_p14"), "Ethelred II"),
        (
            "Who was Edward the Confessor's half-brother?",
            ("normans_p14", "normans_p15"),
            "Harthacnut",
        ),
        ("What river was Petrela located by?", ("normans_p12", "normans_p11"), "Deabolis"),
    ],
)
def test_answers_squad_questions(
    encoder: TextEncoder, paragraphs: dict[str, str], question: str, ids: tuple[str, ...], gold: str
) -> None:
    result = answer(question, paragraph_hits(paragraphs, *ids), encoder)
    assert not result.abstained
    assert gold in result.text
    assert_cited_exactly(result, paragraphs)


def test_citations_of_chunks_index_the_whole_document(encoder: TextEncoder, normans: str) -> None:
    chunks = chunk_text(normans, tokens_for(encoder), max_tokens=128, overlap=16)
    hits = [
        Hit(
            id=f"Normans.md#{n}",
            score=1.0,
            text=c.text,
            payload={"source": "Normans.md", "start": c.start, "end": c.end, "page": 2},
        )
        for n, c in enumerate(chunks)
        if "Canterbury" in c.text or "Ethelred" in c.text
    ]
    assert all(h.payload["start"] > 0 for h in hits)
    result = answer("Who did Edward make archbishop of Canterbury?", hits, encoder)
    assert not result.abstained
    assert "Robert of Jumièges" in result.text
    assert_cited_exactly(result, {"Normans.md": normans})
    assert all(c.page == 2 for c in result.citations)
    chunk_of = {h.id: h for h in hits}
    for citation in result.citations:
        chunk = chunk_of[citation.item_id]
        assert chunk.payload["start"] <= citation.start < citation.end <= chunk.payload["end"]


def test_a_sentence_in_overlapping_chunks_is_quoted_once(
    encoder: TextEncoder, paragraphs: dict[str, str]
) -> None:
    text = paragraphs["normans_p00"]
    cut = text.index("They were descended")
    end = text.index(" Through generations")
    hits = [
        *paragraph_hits(paragraphs, "normans_p26"),
        Hit(id="a", score=0.9, text=text[:end], payload={"source": "p00", "start": 0}),
        Hit(id="b", score=0.8, text=text[cut:], payload={"source": "p00", "start": cut}),
    ]
    result = answer("From which countries did the Norse originate?", hits, encoder)
    assert "Denmark, Iceland and Norway" in result.citations[0].text
    assert result.citations[0].item_id == "a"
    spans = [(c.source, c.start, c.end) for c in result.citations]
    assert len(spans) == len(set(spans))
    assert_cited_exactly(result, {"p00": text, **paragraphs})


def test_abstains_on_an_unrelated_question(
    encoder: TextEncoder, paragraphs: dict[str, str]
) -> None:
    hits = paragraph_hits(paragraphs, "normans_p00", "normans_p01", "normans_p03")
    result = answer("What is the role of gluons in quantum chromodynamics?", hits, encoder)
    assert result.abstained
    assert result.text == ""
    assert result.citations == []
    assert result.support < THRESHOLD
    assert "support" in result.reason


def test_the_threshold_decides(encoder: TextEncoder, paragraphs: dict[str, str]) -> None:
    hits = paragraph_hits(paragraphs, "normans_p00")
    question = "What is the role of gluons in quantum chromodynamics?"
    assert not answer(question, hits, encoder, threshold=-1.0).abstained
    assert answer("In what country is Normandy located?", hits, encoder, threshold=2.0).abstained


def test_abstains_without_passages(encoder: TextEncoder) -> None:
    result = answer("In what country is Normandy located?", [], encoder)
    assert result.abstained
    assert result.text == ""
    assert result.citations == []
    assert "no passages" in result.reason


def test_abstains_when_the_hits_have_no_text(encoder: TextEncoder) -> None:
    hits = [Hit(id="a", score=1.0, payload={}), Hit(id="b", score=0.5, payload={}, text=" \n ")]
    result = answer("In what country is Normandy located?", hits, encoder)
    assert result.abstained
    assert "no text" in result.reason


def test_passage_without_punctuation(encoder: TextEncoder) -> None:
    filler = " ".join(f"row {n} holds an unrelated inventory number" for n in range(60))
    text = f"{filler} the spyglass server listens on port 8080 unless told otherwise {filler}"
    hits = [Hit(id="log", score=1.0, payload={}, text=text)]
    result = answer("Which port does the spyglass server listen on?", hits, encoder)
    assert not result.abstained
    assert "8080" in result.text
    (citation, *_) = result.citations
    assert citation.source is None
    assert text[citation.start : citation.end] == citation.text
    assert len(citation.text) <= MAX_CHARS < len(text)


def test_unicode_and_non_english_text(encoder: TextEncoder) -> None:
    text = (
        "東京は日本の首都です。富士山は日本で一番高い山です。"
        "Robert of Jumièges became archbishop of Canterbury in 1051. "
        "Le Bec-Hellouin est une abbaye bénédictine en Normandie."
    )
    hits = [Hit(id="mixed", score=1.0, payload={"source": "mixed.txt", "start": 0}, text=text)]
    result = answer("Who became archbishop of Canterbury in 1051?", hits, encoder)
    assert not result.abstained
    assert result.citations[0].text == "Robert of Jumièges became archbishop of Canterbury in 1051."
    assert_cited_exactly(result, {"mixed.txt": text})
    result = answer("日本で一番高い山は何ですか？", hits, encoder, threshold=-1.0)
    assert_cited_exactly(result, {"mixed.txt": text})
    assert all(c.text in {s.text for s in split_sentences(text)} for c in result.citations)


def test_very_long_passage(encoder: TextEncoder, normans: str) -> None:
    hits = [Hit(id="whole", score=1.0, payload={"source": "Normans.md", "start": 0}, text=normans)]
    assert len(normans) > 20_000
    result = answer("What continent are the Canarian Islands off the coast of?", hits, encoder)
    assert not result.abstained
    assert "Africa" in result.text
    assert_cited_exactly(result, {"Normans.md": normans})


def test_sentences_are_slices_of_the_text() -> None:
    text = (
        "# Normans\n\nThe Normans were from Normandy. Dr. Smith met St. John in c. 1066 "
        "and J. R. R. Tolkien wrote it.\n- one item\n- another item\nwrapped on\ntwo lines!"
        " 東京は首都です。本当？ Ça va? «Oui».\n\n---\n"
    )
    sentences = split_sentences(text)
    assert [s.text for s in sentences] == [
        "# Normans",
        "The Normans were from Normandy.",
        "Dr. Smith met St. John in c. 1066 and J. R. R. Tolkien wrote it.",
        "- one item",
        "- another item",
        "wrapped on\ntwo lines!",
        "東京は首都です。",
        "本当？",
        "Ça va?",
        "«Oui».",
    ]
    assert all(text[s.start : s.end] == s.text for s in sentences)


def test_sentences_longer_than_the_limit_are_cut() -> None:
    text = "alpha; beta gamma " * 40 + "x" * 120
    sentences = split_sentences(text, max_chars=50)
    assert all(len(s.text) <= 50 for s in sentences)
    assert all(text[s.start : s.end] == s.text for s in sentences)
    assert "".join(s.text for s in sentences).replace(" ", "") == text.replace(" ", "")
    assert split_sentences("") == [] == split_sentences(" \n\n - \n")
