"""The demo corpus behind ``spyglass demo``: short encyclopedic articles to search.

``docs/`` holds about thirty original markdown articles (150-400 words each, one
``# Title`` heading and a few paragraphs) on everyday topics, from sourdough
bread to tides. Topics share vocabulary on purpose (fermentation links bread,
cheese, tea and compost; navigation links lighthouses, maps, the compass and
clocks; paper links printing, origami and recycling), so a query ranks several
related articles rather than one obvious match, which makes a better demo of
semantic search. The files ship as package data and are ingested like any
folder: one text record per chunk, id ``<file>.md#<chunk index from 0>``.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["DOCS_DIR"]

DOCS_DIR: Path = Path(__file__).resolve().parent / "docs"
"""The folder of demo articles, inside the installed package."""
