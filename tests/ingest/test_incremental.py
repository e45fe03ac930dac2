"""Ingesting documents into a real embedded store: unchanged files skipped, changed replaced."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from spyglass.engine import Engine
from spyglass.errors import ConfigError, NotFound
from spyglass.ingest.loaders import DocumentSource, open_source
from spyglass.ingest.pipeline import ingest
from spyglass.ingest.records import Record
from spyglass.ingest.report import IngestReport
from spyglass.schema import CollectionIn, SearchIn
from tests.ingest.conftest import NORMANS, RAG

pytestmark = pytest.mark.slow  # the real MiniLM encoder embeds every chunk


def make_docs(root: Path) -> Path:
    root.mkdir()
    shutil.copy(NORMANS, root / "Normans.md")
    (root / "paragraphs").mkdir()
    for number in range(3):
        name = f"normans_p{number:02d}.txt"
        shutil.copy(RAG / "paragraphs_txt" / name, root / "paragraphs" / name)
    return root


def run(engine: Engine, root: Path, **options: int) -> tuple[IngestReport, list[int]]:
    progress: list[int] = []
    source = open_source(root, **options)
    assert isinstance(source, DocumentSource)
    report = ingest(engine, "docs", source, on_batch=progress.append)
    return report, progress


def stored_ids(engine: Engine, source: str) -> list[str]:
    """Ids of the file's chunks as chunk 0 counts them, each checked to exist."""
    first = engine.get_item("docs", f"{source}#0")
    count = first.payload["chunks"]
    ids = [f"{source}#{index}" for index in range(count)]
    for item_id in ids:
        assert engine.get_item("docs", item_id).payload["sha256"] == first.payload["sha256"]
    with pytest.raises(NotFound):
        engine.get_item("docs", f"{source}#{count}")
    return ids


def check_store(engine: Engine, sources: list[str]) -> int:
    """Every file's chunks exist once, and nothing else is in the collection."""
    total = sum(len(stored_ids(engine, source)) for source in sources)
    assert engine.get_collection("docs").count == total
    return total


SOURCES = [
    "Normans.md",
    "paragraphs/normans_p00.txt",
    "paragraphs/normans_p01.txt",
    "paragraphs/normans_p02.txt",
]


def test_first_ingest_then_unchanged_files_are_skipped(tmp_path: Path, engine: Engine) -> None:
    root = make_docs(tmp_path / "docs")
    first, progress = run(engine, root, batch_size=16)
    assert first.created and first.files == 4 and first.skipped_files == 0
    assert sum(progress) == 4
    total = check_store(engine, SOURCES)
    assert first.items == total > 30 and first.deleted == 0
    assert "4 files (4 new or changed, 0 unchanged and skipped)" in first.summary()
    hits = engine.search("docs", [SearchIn(text="Who did Rollo swear fealty to?", k=3)])[0]
    assert hits[0].payload["source"] in SOURCES
    assert "Charles III" in (hits[0].text or "")

    again, progress = run(engine, root, batch_size=16)
    assert (again.items, again.skipped_files, again.deleted) == (0, 4, 0)
    assert not again.created and sum(progress) == 4
    assert again.version == first.version
    assert check_store(engine, SOURCES) == total


def test_a_changed_file_is_replaced_without_orphans_or_duplicates(
    tmp_path: Path, engine: Engine
) -> None:
    root = make_docs(tmp_path / "docs")
    run(engine, root, batch_size=16)
    before = len(stored_ids(engine, "Normans.md"))
    text = NORMANS.read_text(encoding="utf-8")
    shrunk = "\n\n".join(text.split("\n\n")[:4]) + "\n"
    (root / "Normans.md").write_text(shrunk, encoding="utf-8")
    report, _ = run(engine, root, batch_size=16)
    after = stored_ids(engine, "Normans.md")
    assert report.skipped_files == 3 and report.items == len(after) < before
    assert report.deleted == before - len(after)
    check_store(engine, SOURCES)
    assert all(
        shrunk[item.payload["start"] : item.payload["end"]] == item.text
        for item in (engine.get_item("docs", item_id) for item_id in after)
    )

    (root / "Normans.md").write_text(text + "\n\nA new closing paragraph.\n", encoding="utf-8")
    grown, _ = run(engine, root, batch_size=16)
    assert grown.deleted == 0 and grown.items == len(stored_ids(engine, "Normans.md")) >= before
    check_store(engine, SOURCES)


def test_new_chunk_settings_redo_every_file(tmp_path: Path, engine: Engine) -> None:
    root = make_docs(tmp_path / "docs")
    run(engine, root)
    before = len(stored_ids(engine, "Normans.md"))
    report, _ = run(engine, root, chunk_tokens=128, chunk_overlap=16)
    assert report.skipped_files == 0
    assert len(stored_ids(engine, "Normans.md")) > before
    assert engine.get_item("docs", "Normans.md#0").payload["chunking"] == {
        "max_tokens": 128,
        "overlap": 16,
    }
    check_store(engine, SOURCES)


def test_chunks_left_by_a_stopped_run_are_cleaned_up(tmp_path: Path, engine: Engine) -> None:
    root = make_docs(tmp_path / "docs")
    run(engine, root)
    count = len(stored_ids(engine, "Normans.md"))
    leftovers = [
        Record(f"Normans.md#{index}", None, "stale", {"source": "Normans.md"})
        for index in range(count, count + 3)
    ]
    engine.upsert("docs", leftovers)
    (root / "Normans.md").write_text("# Normans\n\nNow a short page.\n", encoding="utf-8")
    report, _ = run(engine, root)
    assert report.items == 1 and report.deleted == count - 1 + 3
    check_store(engine, SOURCES)


def test_a_file_that_became_empty_loses_its_chunks(tmp_path: Path, engine: Engine) -> None:
    root = make_docs(tmp_path / "docs")
    run(engine, root)
    count = len(stored_ids(engine, "paragraphs/normans_p00.txt"))
    (root / "paragraphs" / "normans_p00.txt").write_text("  \n")
    report, _ = run(engine, root)
    assert report.empty_files == ("paragraphs/normans_p00.txt",) and report.deleted == count
    assert "no text in paragraphs/normans_p00.txt" in report.summary()
    with pytest.raises(NotFound):
        engine.get_item("docs", "paragraphs/normans_p00.txt#0")
    check_store(engine, [s for s in SOURCES if "p00" not in s])


def test_settings_the_encoder_cannot_honour_fail_before_anything_is_created(
    tmp_path: Path, engine: Engine
) -> None:
    root = make_docs(tmp_path / "docs")
    with pytest.raises(ConfigError, match="would be truncated: the 'text' encoder keeps 256"):
        run(engine, root, chunk_tokens=300)
    with pytest.raises(ConfigError, match="the overlap"):
        run(engine, root, chunk_tokens=20, chunk_overlap=18)
    with pytest.raises(NotFound):
        engine.get_collection("docs")
    engine.create_collection("docs", CollectionIn(dim=4, encoder="none"))
    with pytest.raises(ConfigError, match="has no encoder"):
        run(engine, root)
