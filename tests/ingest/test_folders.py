"""Folders of documents or images: which files are read, as what, and image records."""

from __future__ import annotations

from pathlib import Path

import pytest

from spyglass.demo import DOCS_DIR
from spyglass.errors import ConfigError
from spyglass.ingest.loaders import DocumentSource, Source, open_source
from tests.ingest.conftest import PHOTOS


def test_a_folder_of_documents_lists_them_sorted_and_skips_the_rest(tmp_path: Path) -> None:
    root = tmp_path / "docs"
    (root / "b" / "deep").mkdir(parents=True)
    (root / ".git").mkdir()
    for name in ["a.md", "b/deep/c.txt", "b/Z.MD", "b/page.HTML", "b/r.pdf", "b/w.docx", "x.htm"]:
        (root / name).write_text("text")
    for name in ["skip.csv", ".hidden.md", ".git/HEAD.md", "notes.rtf"]:
        (root / name).write_text("text")
    source = open_source(root, batch_size=7, chunk_tokens=128, chunk_overlap=8)
    assert isinstance(source, DocumentSource)
    assert [source.relative(f) for f in source.files] == [
        "a.md",
        "b/Z.MD",
        "b/deep/c.txt",
        "b/page.HTML",
        "b/r.pdf",
        "b/w.docx",
        "x.htm",
    ]
    assert (source.total, source.unit, source.batch_size) == (7, "files", 7)
    assert source.chunking == {"max_tokens": 128, "overlap": 8}
    assert source.note == ""


def test_a_single_document_is_a_source_relative_to_its_folder(tmp_path: Path) -> None:
    path = tmp_path / "one.md"
    path.write_text("# One\n\nBody.\n")
    source = open_source(path)
    assert isinstance(source, DocumentSource)
    assert source.files == (path,) and source.relative(path) == "one.md"


def test_the_demo_folder_is_a_document_source() -> None:
    source = open_source(DOCS_DIR)
    assert isinstance(source, DocumentSource)
    assert source.total == len(list(DOCS_DIR.glob("*.md"))) >= 24


def test_photos_are_read_as_images_with_name_and_size() -> None:
    source = open_source(PHOTOS, image_batch=10)
    assert isinstance(source, Source)
    expected = sorted(
        p.relative_to(PHOTOS).as_posix()
        for p in PHOTOS.rglob("*")
        if p.suffix.lower() in {".jpg", ".jpeg", ".png", ".webp", ".gif"}
    )
    assert len(expected) == 37
    assert (source.total, source.unit, source.batch_size) == (37, "images", 10)
    assert source.note == "2 documents ignored (--kind documents reads them)"
    batches = list(source.batches())
    assert [len(b) for b in batches] == [10, 10, 10, 7]
    records = [record for batch in batches for record in batch]
    assert [r.id for r in records] == expected
    for record in records:
        path = PHOTOS / record.id
        assert record.payload == {"file_name": record.id, "size_bytes": path.stat().st_size}
        assert record.image == path.read_bytes()
        assert record.vector is None and record.text is None
    assert records[0].image is not None and records[0].image[:4] == b"\x89PNG"


def test_kind_picks_one_kind_of_a_mixed_folder() -> None:
    documents = open_source(PHOTOS, kind="documents")
    assert isinstance(documents, DocumentSource)
    assert [documents.relative(f) for f in documents.files] == [
        "SOURCE.txt",
        "sklearn_images_README.txt",
    ]
    assert documents.note == ""
    images = open_source(PHOTOS, kind="images")
    assert isinstance(images, Source) and images.total == 37 and images.note == ""


def test_a_single_image_file(tmp_path: Path) -> None:
    path = PHOTOS / "color" / "sklearn_china.jpg"
    source = open_source(path)
    assert isinstance(source, Source)
    (record,) = list(source.records())
    assert record.id == "sklearn_china.jpg" and record.image == path.read_bytes()


def test_folder_errors(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "data.json").write_text("{}")
    with pytest.raises(ConfigError, match=r"empty: folder holds no \.txt, \.md.*\.gif files"):
        open_source(empty)
    tie = tmp_path / "tie"
    tie.mkdir()
    (tie / "a.md").write_text("# A")
    (tie / "a.png").write_bytes(b"\x89PNG")
    with pytest.raises(ConfigError, match=r"1 documents and as many images.*--kind"):
        open_source(tie)
    with pytest.raises(ConfigError, match=r"folder holds no \.jpg"):
        open_source(tie / ".." / "empty", kind="images")
    with pytest.raises(ConfigError, match="kind must be one of auto, documents, images"):
        open_source(tie, kind="videos")
    with pytest.raises(ConfigError, match=r"a\.md: is none of the types read as \.jpg"):
        open_source(tie / "a.md", kind="images")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"chunk_tokens": 0}, "chunk tokens must be at least 1"),
        ({"chunk_tokens": 64, "chunk_overlap": 64}, "chunk overlap must be"),
        ({"chunk_overlap": -1}, "chunk overlap must be"),
        ({"image_batch": 0}, "image batch must be at least 1"),
    ],
)
def test_bad_settings(options: dict[str, int], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        open_source(PHOTOS if "image_batch" in options else DOCS_DIR, **options)
