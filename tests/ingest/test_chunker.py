"""The token chunker: every chunk fits the encoder, overlap is as defined, no text is lost.

Token counts are checked with a tokenizer loaded here straight from MiniLM's
tokenizer.json (no truncation), independently of the code under test.
"""

from __future__ import annotations

import random
import re
from bisect import bisect_right
from collections.abc import Sequence

import pytest
from tokenizers import Tokenizer

from spyglass.demo import DOCS_DIR
from spyglass.encoders.text import TOKENIZER_PATH
from spyglass.ingest.chunker import Chunk, chunk_text
from spyglass.ingest.tokens import Tokens

_REFERENCE = Tokenizer.from_file(str(TOKENIZER_PATH))
_REFERENCE.no_truncation()
_REFERENCE.no_padding()


def encoded_length(text: str) -> int:
    """Tokens the encoder is fed for ``text``, [CLS] and [SEP] included."""
    return len(_REFERENCE.encode(text).ids)


def content_tokens(text: str) -> int:
    return len(_REFERENCE.encode(text, add_special_tokens=False).ids)


def word_spans(text: str) -> list[tuple[int, int]]:
    return [m.span() for m in re.finditer(r"\S+", text)]


def at_word_edges(text: str, chunk: Chunk) -> bool:
    before = chunk.start == 0 or text[chunk.start - 1].isspace()
    after = chunk.end == len(text) or text[chunk.end].isspace()
    return before and after


def check_chunks(
    text: str,
    chunks: Sequence[Chunk],
    *,
    max_tokens: int,
    overlap: int,
    breaks: Sequence[int] = (),
) -> None:
    """Every property the chunker promises, checked on one result.

    Overlap, as defined: when chunk B follows chunk A in the same section (and
    neither is a piece of an over-long word), B starts with the longest run of
    whole words ending A that holds at most ``overlap`` tokens, never including
    A's first word. So text[B.start:A.end] (if B starts inside A) holds at most
    ``overlap`` tokens, and adding the word before B.start (if it is not A's
    first word) would exceed ``overlap``.
    """
    own = max_tokens - 2 - overlap
    words = word_spans(text)
    word_starts = [start for start, _ in words]
    sections = sorted(set(breaks))

    def section(offset: int) -> int:
        return bisect_right(sections, offset)

    covered = bytearray(len(text))
    pieces = [not at_word_edges(text, chunk) for chunk in chunks]
    for number, chunk in enumerate(chunks):
        assert chunk.text and text[chunk.start : chunk.end] == chunk.text
        assert chunk.text == chunk.text.strip()
        assert chunk.tokens == encoded_length(chunk.text) <= max_tokens
        assert section(chunk.start) == section(chunk.end - 1)
        if pieces[number]:
            assert not any(char.isspace() for char in chunk.text)
            index = bisect_right(word_starts, chunk.start) - 1
            start, end = words[index]
            assert start <= chunk.start and chunk.end <= end
            assert content_tokens(text[start:end]) > own
        covered[chunk.start : chunk.end] = b"\x01" * (chunk.end - chunk.start)
        if number == 0:
            continue
        previous = chunks[number - 1]
        assert chunk.start > previous.start and chunk.end > previous.end
        joined = not (pieces[number] or pieces[number - 1])
        if not overlap or not joined or section(previous.start) != section(chunk.start):
            assert chunk.start >= previous.end
            continue
        if chunk.start < previous.end:
            assert content_tokens(text[chunk.start : previous.end]) <= overlap
        before = word_starts[bisect_right(word_starts, chunk.start - 1) - 1]
        if before > previous.start:
            assert content_tokens(text[before : previous.end]) > overlap
    assert all(char.isspace() or covered[i] for i, char in enumerate(text))


def paragraphs(text: str) -> list[tuple[int, int]]:
    """Spans between whitespace runs holding two or more newlines."""
    spans: list[tuple[int, int]] = []
    start = 0
    for gap in re.finditer(r"\s+", text):
        if gap.group().count("\n") >= 2:
            spans.append((start, gap.start()))
            start = gap.end()
    spans.append((start, len(text)))
    return spans


def check_paragraphs_first(text: str, chunks: Sequence[Chunk], max_tokens: int) -> None:
    """Without overlap, a chunk starts mid-paragraph only if its paragraph fits no chunk."""
    spans = paragraphs(text)
    for chunk in chunks[1:]:
        start, end = next((s, e) for s, e in spans if s <= chunk.start < max(e, s + 1))
        if chunk.start != start:
            assert encoded_length(text[start:end]) > max_tokens


# real text


SETTINGS = [(256, 32), (256, 0), (128, 16), (64, 8), (16, 4), (5, 2), (3, 0)]


@pytest.mark.parametrize(("max_tokens", "overlap"), SETTINGS)
def test_normans_chunks_fit_overlap_and_cover(
    normans: str, tokens: Tokens, max_tokens: int, overlap: int
) -> None:
    chunks = chunk_text(normans, tokens, max_tokens=max_tokens, overlap=overlap)
    check_chunks(normans, chunks, max_tokens=max_tokens, overlap=overlap)
    if not overlap:
        check_paragraphs_first(normans, chunks, max_tokens)


def test_normans_default_chunks_are_full_and_overlap_about_as_asked(
    normans: str, tokens: Tokens
) -> None:
    chunks = chunk_text(normans, tokens)
    assert encoded_length(normans) > 5000
    assert 25 <= len(chunks) <= 60
    assert max(c.tokens for c in chunks) <= 256
    assert sum(c.tokens for c in chunks) / len(chunks) > 150
    overlaps = [
        content_tokens(normans[b.start : a.end])
        for a, b in zip(chunks, chunks[1:], strict=False)
        if b.start < a.end
    ]
    assert len(overlaps) >= len(chunks) // 2
    assert all(0 < n <= 32 for n in overlaps)
    assert sum(overlaps) / len(overlaps) >= 20


def test_demo_docs(tokens: Tokens) -> None:
    for path in sorted(DOCS_DIR.glob("*.md")):
        text = path.read_text(encoding="utf-8")
        for max_tokens, overlap in [(256, 32), (40, 10), (8, 0)]:
            chunks = chunk_text(text, tokens, max_tokens=max_tokens, overlap=overlap)
            check_chunks(text, chunks, max_tokens=max_tokens, overlap=overlap)


# generated text

TRICKY = [
    "",
    "   \n\n\t ",
    "x",
    "  padded  ",
    "word " * 500,
    "a" * 2500,
    "no.spaces.after.dots." * 80,
    "Supercalifragilisticexpialidocious " * 20,
    "One. Two! Three? " * 100,
    '"Quoted." (Bracketed.) ' * 60,
    "line one\nline two\nline three\n" * 60,
    "para\r\n\r\npara\r\n\r\n" * 40,
    "emoji 🙂 " * 300 + "é" * 1200,
    "東京都の人口は多い。" * 40,
    "\u2028\u2029\x0c\x0b\x85 mixed unicode whitespace \u3000end",
    "control\x00chars\x1f and zero\u200bwidth",
]


@pytest.mark.parametrize("text", TRICKY)
@pytest.mark.parametrize(("max_tokens", "overlap"), [(256, 32), (16, 4), (8, 5), (3, 0)])
def test_tricky_strings(text: str, max_tokens: int, overlap: int, tokens: Tokens) -> None:
    chunks = chunk_text(text, tokens, max_tokens=max_tokens, overlap=overlap)
    check_chunks(text, chunks, max_tokens=max_tokens, overlap=overlap)


def test_random_texts(normans: str, tokens: Tokens) -> None:
    rng = random.Random(20240501)
    vocabulary = normans.split()
    pieces = [" ", "  ", "\n", "\n\n", "\r\n", ". ", "! ", "? ", "\t", "\u2028", "\n  \n", "— "]
    odd = ["é", "🙂", "x" * 40, "数", "no.dots.here", "Norðmaðr", "##", "…"]
    for _ in range(400):
        parts: list[str] = []
        for _ in range(rng.randint(0, 120)):
            roll = rng.random()
            if roll < 0.55:
                parts.append(rng.choice(vocabulary))
            elif roll < 0.9:
                parts.append(rng.choice(pieces))
            else:
                parts.append(rng.choice(odd))
        text = "".join(parts)
        max_tokens = rng.randint(3, 80)
        overlap = rng.randint(0, max_tokens - 3) if rng.random() < 0.6 else 0
        starts = [start for start, _ in word_spans(text)]
        breaks = sorted(rng.sample(starts, k=min(3, len(starts)))) if rng.random() < 0.3 else []
        chunks = chunk_text(text, tokens, max_tokens=max_tokens, overlap=overlap, breaks=breaks)
        check_chunks(text, chunks, max_tokens=max_tokens, overlap=overlap, breaks=breaks)
        if not overlap and not breaks and "\r" not in text and "\u2028" not in text:
            check_paragraphs_first(text, chunks, max_tokens)


# examples


def texts(chunks: list[Chunk]) -> list[str]:
    return [chunk.text for chunk in chunks]


def test_paragraphs_then_lines_then_sentences_then_words(tokens: Tokens) -> None:
    paragraphs = "Alpha one.\n\nBeta two.\n\nGamma three."
    assert texts(chunk_text(paragraphs, tokens, max_tokens=10, overlap=0)) == [
        "Alpha one.\n\nBeta two.",
        "Gamma three.",
    ]
    lines = "First line here\nsecond line here\nthird line"
    assert texts(chunk_text(lines, tokens, max_tokens=9, overlap=0)) == [
        "First line here\nsecond line here",
        "third line",
    ]
    sentences = "One two three. Four five six! Seven eight nine?"
    assert texts(chunk_text(sentences, tokens, max_tokens=7, overlap=0)) == [
        "One two three.",
        "Four five six!",
        "Seven eight nine?",
    ]
    words = "one two three four five six"
    assert texts(chunk_text(words, tokens, max_tokens=5, overlap=0)) == [
        "one two three",
        "four five six",
    ]


def test_a_paragraph_that_fits_is_not_glued_to_part_of_the_next(tokens: Tokens) -> None:
    text = "Short intro.\n\n" + " ".join(f"Sentence number {n}." for n in range(8))
    chunks = chunk_text(text, tokens, max_tokens=20, overlap=0)
    assert chunks[0].text == "Short intro."
    assert all(c.text.startswith("Sentence") for c in chunks[1:])


def test_overlap_is_the_longest_tail_of_whole_words_within_the_budget(tokens: Tokens) -> None:
    text = "one two three four five six seven eight nine ten"
    assert texts(chunk_text(text, tokens, max_tokens=6, overlap=2)) == [
        "one two",
        "two three four",
        "three four five six",
        "five six seven eight",
        "seven eight nine ten",
    ]
    assert texts(chunk_text(text, tokens, max_tokens=8, overlap=3)) == [
        "one two three",
        "two three four five six",
        "four five six seven eight nine",
        "seven eight nine ten",
    ]


def test_overlap_counts_tokens_not_words(tokens: Tokens) -> None:
    text = "alpha Norðmaðr beta gamma delta epsilon"
    assert content_tokens("Norðmaðr") == 5
    chunks = chunk_text(text, tokens, max_tokens=12, overlap=4)
    check_chunks(text, chunks, max_tokens=12, overlap=4)
    assert texts(chunks) == ["alpha Norðmaðr", "beta gamma delta epsilon"]
    chunks = chunk_text(text, tokens, max_tokens=13, overlap=5)
    assert texts(chunks) == ["alpha Norðmaðr", "Norðmaðr beta gamma delta epsilon"]


def test_a_word_longer_than_a_chunk_is_cut_at_token_boundaries(tokens: Tokens) -> None:
    word = "Supercalifragilisticexpialidocious"
    chunks = chunk_text(f"tiny {word} end", tokens, max_tokens=5, overlap=1)
    assert texts(chunks)[0] == "tiny"
    assert "".join(texts(chunks)[1:-1]) == word
    assert texts(chunks)[-1] == "end"
    assert all(c.tokens <= 5 for c in chunks)


def test_breaks_start_chunks_and_stop_overlap(tokens: Tokens) -> None:
    text = "# Title\n\nIntro text.\n\n## Part\n\nMore text here."
    chunks = chunk_text(text, tokens, breaks=[0, text.index("## Part")])
    assert texts(chunks) == ["# Title\n\nIntro text.", "## Part\n\nMore text here."]


def test_bad_sizes_are_refused(tokens: Tokens) -> None:
    with pytest.raises(ValueError, match="special tokens"):
        chunk_text("x", tokens, max_tokens=2, overlap=0)
    with pytest.raises(ValueError, match="overlap"):
        chunk_text("x", tokens, max_tokens=10, overlap=8)
    with pytest.raises(ValueError, match="overlap"):
        chunk_text("x", tokens, max_tokens=10, overlap=-1)


def test_a_tokenizer_that_counts_differently_in_context_still_fits() -> None:
    """A tokenizer adding a zero-width token at the start of every input (as some do)
    makes whole-text counts one short per chunk; the exact check catches that."""

    def spans(text: str) -> list[tuple[int, int]]:
        return [(0, 0), *word_spans(text)]

    counter = Tokens(spans)
    text = " ".join(f"w{n}" for n in range(200))
    chunks = chunk_text(text, counter, max_tokens=10, overlap=3)
    assert chunks and all(counter.count(c.text) == c.tokens <= 10 for c in chunks)
    assert " ".join(c.text for c in chunks).count("w199") >= 1
