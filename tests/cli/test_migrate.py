"""``spyglass migrate``: embedded to PostgreSQL and back, resuming, and checking counts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from spyglass.errors import NotFound
from spyglass.migrate import CountMismatch, checkpoint_path, migrate
from spyglass.stores.base import CollectionSpec, Item, Query, StoredFile
from spyglass.stores.embedded import EmbeddedStore
from spyglass.stores.postgres import PostgresStore
from tests.cli.test_cli import assert_user_error, spyglass

pytestmark = pytest.mark.pg


def fill(store: EmbeddedStore, name: str, n: int, dim: int = 8) -> np.ndarray:
    vectors = np.random.default_rng(len(name)).normal(size=(n, dim)).astype(np.float32)
    store.create_collection(CollectionSpec(name=name, dim=dim, metric="l2", encoder="none"))
    store.upsert(
        name,
        [
            Item(id=f"{name}-{i:05d}", vector=v, text=f"row {i}", payload={"i": i, "tag": ["x"]})
            for i, v in enumerate(vectors)
        ],
    )
    return vectors


def test_cli_copies_every_collection_both_ways(
    tmp_path: Path, pg_database: tuple[str, str]
) -> None:
    source_dir = tmp_path / "one"
    source = EmbeddedStore(source_dir)
    vectors = fill(source, "alpha", 2500)
    fill(source, "beta", 10)
    source.close()

    there = spyglass("migrate", "--from", source_dir, "--to", pg_database[0], cwd=tmp_path)
    assert there.returncode == 0, there.stderr
    assert "copied alpha: 2500 items; counts match" in there.stdout
    assert "copied beta: 10 items" in there.stdout
    assert not list(tmp_path.glob(".spyglass-migrate-*")), "the checkpoint is removed when done"

    back_dir = tmp_path / "two"
    back = spyglass(
        "migrate", "--from", pg_database[0], "--to", back_dir, "--collection", "alpha", cwd=tmp_path
    )
    assert back.returncode == 0, back.stderr
    postgres = PostgresStore(pg_database[0])
    returned = EmbeddedStore(back_dir)
    try:
        assert [c.spec.name for c in returned.list_collections()] == ["alpha"]
        assert returned.get_collection("alpha").spec == postgres.get_collection("alpha").spec
        item = returned.get_item("alpha", "alpha-01234")
        assert np.array_equal(item.vector, vectors[1234])
        assert item.text == "row 1234" and item.payload == {"i": 1234, "tag": ["x"]}
        query = [Query(vector=vectors[77], k=5, exact=True)]
        assert [h.id for h in returned.search("alpha", query)[0]] == [
            h.id for h in postgres.search("alpha", query)[0]
        ]
    finally:
        postgres.close()
        returned.close()


def test_an_interrupted_copy_resumes_where_it_stopped(
    tmp_path: Path, pg_database: tuple[str, str]
) -> None:
    source = EmbeddedStore(tmp_path / "src")
    fill(source, "c", 950)
    destination = PostgresStore(pg_database[0])
    checkpoint = checkpoint_path(tmp_path, "src", "dst")
    pages = 0

    def interrupt(n: int) -> None:
        nonlocal pages
        pages += 1
        if pages == 3:
            raise KeyboardInterrupt  # Ctrl-C after the third page was written

    try:
        with pytest.raises(KeyboardInterrupt):
            migrate(source, destination, checkpoint, page=100, on_page=interrupt)
        assert checkpoint.exists()
        assert destination.get_collection("c").count == 300

        [copied] = migrate(source, destination, checkpoint, page=100)
        assert copied.resumed_after == "c-00299"
        assert copied.items == 650
        assert destination.get_collection("c").count == 950
        assert not checkpoint.exists()
    finally:
        source.close()
        destination.close()


def test_a_source_written_during_the_copy_is_reported(tmp_path: Path) -> None:
    source = EmbeddedStore(tmp_path / "src")
    fill(source, "c", 300)
    destination = EmbeddedStore(tmp_path / "dst")
    checkpoint = checkpoint_path(tmp_path, "src", "dst")
    try:
        with pytest.raises(CountMismatch, match="300 items|299 items"):
            migrate(
                source,
                destination,
                checkpoint,
                page=100,
                on_page=lambda n: source.delete_items("c", ["c-00000"]),
            )
    finally:
        source.close()
        destination.close()


def test_cli_errors_are_one_line(tmp_path: Path, pg_database: tuple[str, str]) -> None:
    source = EmbeddedStore(tmp_path / "src")
    fill(source, "c", 5)
    source.close()
    same = spyglass("migrate", "--from", tmp_path / "src", "--to", tmp_path / "src")
    assert_user_error(same, "same store")
    missing = spyglass(
        "migrate", "--from", tmp_path / "src", "--to", pg_database[0], "--collection", "nope"
    )
    assert_user_error(missing, "'nope' not found")
    other = PostgresStore(pg_database[0])
    other.create_collection(CollectionSpec(name="c", dim=3))
    other.close()
    clash = spyglass("migrate", "--from", tmp_path / "src", "--to", pg_database[0])
    assert_user_error(clash, "exists with other settings")


def test_image_files_move_with_their_items(tmp_path: Path, pg_database: tuple[str, str]) -> None:
    source = EmbeddedStore(tmp_path / "from")
    destination = PostgresStore(pg_database[0])
    try:
        source.create_collection(CollectionSpec(name="pics", dim=2, encoder="color"))
        rng = np.random.default_rng(5)
        items = [
            Item(
                id=f"p{i}",
                vector=rng.normal(size=2).astype(np.float32),
                file=StoredFile(f"png {i}".encode(), "image/png") if i % 2 else None,
            )
            for i in range(150)
        ]
        source.upsert("pics", items)
        migrate(source, destination, checkpoint_path(tmp_path, "a", "b"), page=64)
        assert destination.get_file("pics", "p7") == StoredFile(b"png 7", "image/png")
        assert destination.get_file("pics", "p149").data == b"png 149"
        with pytest.raises(NotFound):
            destination.get_file("pics", "p8")
    finally:
        source.close()
        destination.close()
