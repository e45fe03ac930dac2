"""Answers to questions from retrieved passages: what ``/ask`` says without an LLM.

``sentences`` splits a passage into sentences with their offsets; ``extractive``
scores each sentence's support for the question and quotes the best, with
citations into the source documents, or abstains when support is weak.
"""

from __future__ import annotations

from spyglass.rag.extractive import THRESHOLD, Answer, Citation, SentenceEncoder, answer
from spyglass.rag.sentences import Sentence, split_sentences

__all__ = [
    "THRESHOLD",
    "Answer",
    "Citation",
    "Sentence",
    "SentenceEncoder",
    "answer",
    "split_sentences",
]
