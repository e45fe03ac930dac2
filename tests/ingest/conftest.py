"""Fixtures of the ingest tests: the real MiniLM tokenizer, Normans.md, an engine on disk."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from spyglass.encoders.text import TextEncoder
from spyglass.engine import Engine
from spyglass.ingest.tokens import Tokens, tokens_for
from spyglass.stores import open_store
from tests.conftest import SHARED_DATA, test_settings

RAG = SHARED_DATA / "rag_squad_normans"
NORMANS = RAG / "Normans.md"
PHOTOS = SHARED_DATA / "photos"


@pytest.fixture(scope="session")
def text_encoder() -> TextEncoder:
    return TextEncoder()


@pytest.fixture(scope="session")
def tokens(text_encoder: TextEncoder) -> Tokens:
    return tokens_for(text_encoder)


@pytest.fixture(scope="session")
def normans() -> str:
    return NORMANS.read_text(encoding="utf-8")


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    settings = test_settings(tmp_path / "data")
    store = open_store(settings)
    try:
        yield Engine(settings, store)
    finally:
        store.close()
