"""Row loaders (JSONL, CSV, Parquet) read records in bounded batches; bad input names its line."""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from spyglass.demo import DOCS_DIR
from spyglass.errors import ConfigError
from spyglass.ingest.loaders import SUPPORTED, Record, Source, open_source


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(row) + b"\n" for row in rows))
    return path


def write_parquet(path: Path, columns: dict[str, Any], schema: pa.Schema | None = None) -> Path:
    pq.write_table(pa.table(columns, schema=schema), path, row_group_size=4)
    return path


def comparable(record: Record) -> Record:
    """The record with its float32 vector as an approximate list, to compare with literals."""
    if record.vector is None:
        return record
    assert record.vector.dtype == np.float32
    return replace(record, vector=pytest.approx(record.vector.tolist(), rel=1e-6))


def read_all(source: Source) -> list[Record]:
    return [comparable(record) for batch in source.batches() for record in batch]


def config_error(path: Path, **options: Any) -> str:
    """The one-line message of the ConfigError that loading ``path`` raises."""
    with pytest.raises(ConfigError) as caught:
        read_all(open_source(path, **options))
    message = str(caught.value)
    assert "\n" not in message
    return message


# JSONL


def test_jsonl_reads_ids_vectors_texts_and_payload(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "items.jsonl",
        [
            {"id": "a", "vector": [1, 2.5], "color": "red", "tags": ["x"], "meta": {"n": 1}},
            {"id": 7, "text": "hello", "price": 9.5, "none": None},
            {"id": "b", "vector": [0.5, 0.25], "text": "both"},
        ],
    )
    source = open_source(path)
    assert source.total == 3
    assert read_all(source) == [
        Record("a", [1.0, 2.5], None, {"color": "red", "tags": ["x"], "meta": {"n": 1}}),
        Record("7", None, "hello", {"price": 9.5, "none": None}),
        Record("b", [0.5, 0.25], "both", {}),
    ]
    first = next(source.batches())[0]
    assert first.vector is not None and first.vector.dtype == np.float32


def test_jsonl_skips_blank_lines_and_a_bom_and_knows_ndjson(tmp_path: Path) -> None:
    path = tmp_path / "Items.NDJSON"
    path.write_bytes(b'\xef\xbb\xbf{"id": 1, "text": "a"}\n\n   \n{"text": "b"}')
    records = read_all(open_source(path))
    assert [r.id for r in records] == ["1", "Items:4"]
    assert open_source(path).total == 4  # a line count: an upper bound with blank lines


def test_jsonl_custom_field_names(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "x.jsonl", [{"key": "k", "emb": [1.0], "body": "t", "id": 3}])
    source = open_source(path, id_field="key", vector_field="emb", text_field="body")
    assert read_all(source) == [Record("k", [1.0], "t", {"id": 3})]


def test_auto_ids_are_file_stem_and_line_number_and_stable(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "notes.jsonl", [{"text": "a"}, {"id": "x", "text": "b"}, {"text": "c"}]
    )
    first = [r.id for r in read_all(open_source(path))]
    again = [r.id for r in read_all(open_source(path))]
    assert first == again == ["notes:1", "x", "notes:3"]


def test_batches_hold_at_most_batch_size_records(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "many.jsonl", [{"id": i, "vector": [i, 1]} for i in range(10)])
    source = open_source(path, batch_size=3)
    assert source.total == 10
    batches = list(source.batches())
    assert [len(b) for b in batches] == [3, 3, 3, 1]
    assert [r.id for b in batches for r in b] == [str(i) for i in range(10)]

    def plain(batches: list[list[Record]]) -> list[list[tuple[object, ...]]]:
        return [
            [(r.id, np.asarray(r.vector).tolist(), r.text, r.payload) for r in b] for b in batches
        ]

    assert plain(list(source.batches())) == plain(batches)  # a source can be read again
    assert [len(b) for b in open_source(path, batch_size=10).batches()] == [10]


def test_big_jsonl_is_streamed(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "big.jsonl", [{"vector": [float(i)] * 4} for i in range(5000)])
    source = open_source(path, batch_size=1000)
    assert source.total == 5000
    seen = 0
    for batch in source.batches():
        assert len(batch) == 1000
        seen += len(batch)
    assert seen == 5000


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ('{"id": "a", "vector": [1, 2', "line 3: bad JSON"),
        ('["a", "b"]', "line 3: expected a JSON object, not list"),
        ('{"id": "a", "vector": "1, 2"}', "line 3: 'vector' must be a list of numbers, not str"),
        (
            '{"id": "a", "vector": [1, "2"]}',
            "line 3: 'vector' must be a list of numbers; element [1]",
        ),
        ('{"id": "a", "vector": [1, true]}', "element [1] is bool"),
        ('{"id": "a", "vector": []}', "line 3: 'vector' is empty"),
        ('{"id": "a", "vector": [[1, 2]]}', "element [0] is list"),
        ('{"id": "a", "text": 5}', "line 3: 'text' must be a string, not int"),
        ('{"id": "a", "color": "red"}', "line 3: no 'vector' and no 'text'"),
        ('{"id": "a", "vector": null, "text": null}', "line 3: no 'vector' and no 'text'"),
        ('{"id": true, "text": "t"}', "line 3: 'id' must be a string or an integer"),
        ('{"id": 1.5, "text": "t"}', "line 3: 'id' must be a string or an integer"),
        ('{"id": "", "text": "t"}', "line 3: 'id' must have 1 to 512 characters"),
        ('{"id": "' + "x" * 513 + '", "text": "t"}', "'id' must have 1 to 512 characters"),
    ],
)
def test_jsonl_errors_name_the_file_and_line(tmp_path: Path, row: str, expected: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"id": 1, "text": "ok"}\n\n' + row + '\n{"id": 4, "text": "ok"}\n')
    message = config_error(path)
    assert message.startswith(f"{path}: ")
    assert expected in message


def test_bad_json_on_line_17(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    lines = [orjson.dumps({"id": i, "text": "t"}).decode() for i in range(1, 17)]
    path.write_text("\n".join([*lines, "{oops}"]) + "\n")
    message = config_error(path)
    assert re.fullmatch(rf"{re.escape(str(path))}: line 17: bad JSON at column \d+: .+", message)


def test_not_utf8_jsonl_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "latin.jsonl"
    path.write_bytes(b'{"text": "ok"}\n{"text": "caf\xe9"}\n')
    assert "line 2: bad JSON" in config_error(path)


# CSV


def test_csv_reads_vectors_texts_and_typed_payload(tmp_path: Path) -> None:
    path = tmp_path / "table.csv"
    path.write_text(
        "id,vector,text,price,count,zip,name,note,big,sci\n"
        'a,"[0.1, 0.2]",hello,9.5,3,01234,"Smith, J.",,99999999999999999999,1e3\n'
        'b,"[1, 2]",,-0,-12,0,true, spaced ,1.,NaN\n',
        encoding="utf-8",
    )
    source = open_source(path)
    assert source.total == 2
    a, b = read_all(source)
    assert a == Record(
        "a",
        [0.1, 0.2],
        "hello",
        {
            "price": 9.5,
            "count": 3,
            "zip": "01234",
            "name": "Smith, J.",
            "big": "99999999999999999999",
            "sci": 1000.0,
        },
    )
    assert b == Record(
        "b",
        [1.0, 2.0],
        None,
        {
            "price": 0,
            "count": -12,
            "zip": 0,
            "name": "true",
            "note": " spaced ",
            "big": "1.",
            "sci": "NaN",
        },
    )


def test_csv_auto_ids_use_the_line_number_and_skip_blank_rows(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    path.write_text('\ufefftext,kind\nfirst,a\n\n"multi\nline",b\nlast,c\n', encoding="utf-8")
    records = read_all(open_source(path))
    assert [(r.id, r.text, r.payload) for r in records] == [
        ("rows:2", "first", {"kind": "a"}),
        ("rows:4", "multi\nline", {"kind": "b"}),
        ("rows:6", "last", {"kind": "c"}),
    ]
    assert [r.id for r in read_all(open_source(path))] == [r.id for r in records]


def test_csv_short_rows_count_as_blank_cells_and_empty_file_has_no_rows(tmp_path: Path) -> None:
    path = tmp_path / "short.csv"
    path.write_text("id,text,extra\n1,hi\n")
    assert read_all(open_source(path)) == [Record("1", None, "hi", {})]
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    assert open_source(empty).total == 0
    assert read_all(open_source(empty)) == []


def test_csv_batches(tmp_path: Path) -> None:
    path = tmp_path / "v.csv"
    path.write_text("id,vector\n" + "".join(f'{i},"[{i}, 1]"\n' for i in range(7)))
    source = open_source(path, batch_size=2)
    assert source.total == 7
    assert [len(b) for b in source.batches()] == [2, 2, 2, 1]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            'id,vector\n1,"[1, 2]"\n2,"[1, x]"\n',
            "line 3: 'vector' must be a list of numbers, not str",
        ),
        (
            'id,vector\n1,"[1, 2]"\n2,"{""a"": 1}"\n',
            "line 3: 'vector' must be a list of numbers, not dict",
        ),
        ("id,vector\n1,\n", "line 2: no 'vector' and no 'text'"),
        ("id,text\n1,a\n2,b,c\n", "line 3: 3 cells but the header has 2 columns"),
        ("id,text,id\n1,a,b\n", "line 1: column 'id' appears twice in the header"),
        ("id,,text\n1,a,b\n", "line 1: column 2 has no name in the header"),
        ('id,text\n1,a\n2,"never closed\n3,x\n', "line 3: bad CSV: unexpected end of data"),
        ('id,text\n1,"a"b\n', "line 2: bad CSV: ',' expected after '\"'"),
        ("\nid,text\n1,a\n", "line 1: the header row is blank"),
        ("id,text\n1," + "a" * 200_000 + "\n", "line 2: bad CSV: field larger than field limit"),
    ],
)
def test_csv_errors_name_the_file_and_line(tmp_path: Path, body: str, expected: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(body)
    message = config_error(path)
    assert message.startswith(f"{path}: ")
    assert expected in message


def test_csv_not_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "latin.csv"
    path.write_bytes(b"id,text\n1,ok\n2,caf\xe9\n")
    assert config_error(path) == f"{path}: line 3: not UTF-8 text (byte 6 of the line)"


# Parquet


def test_parquet_reads_list_vectors_and_plain_payload(tmp_path: Path) -> None:
    path = write_parquet(
        tmp_path / "t.parquet",
        {
            "id": pa.array([1, 2, 3], pa.int64()),
            "vector": pa.array([[1.0, 2.0], [3.0, 4.0], None], pa.list_(pa.float32())),
            "text": ["one", None, "three"],
            "when": pa.array([dt.datetime(2024, 5, 1, 12, 30), None, None], pa.timestamp("s")),
            "day": pa.array([dt.date(2024, 1, 2), None, None], pa.date32()),
            "price": pa.array([Decimal("1.50"), Decimal("2"), None], pa.decimal128(5, 2)),
            "tags": [["a", "b"], [], None],
            "ok": [True, False, None],
        },
    )
    source = open_source(path)
    assert source.total == 3
    assert read_all(source) == [
        Record(
            "1",
            [1.0, 2.0],
            "one",
            {
                "when": "2024-05-01T12:30:00",
                "day": "2024-01-02",
                "price": 1.5,
                "tags": ["a", "b"],
                "ok": True,
            },
        ),
        Record("2", [3.0, 4.0], None, {"price": 2, "tags": [], "ok": False}),
        Record("3", None, "three", {}),
    ]


def test_parquet_fixed_size_vectors_batches_and_row_ids(tmp_path: Path) -> None:
    vectors = pa.FixedSizeListArray.from_arrays(pa.array([float(i) for i in range(20)]), 2)
    path = write_parquet(tmp_path / "fixed.parquet", {"vector": vectors, "n": list(range(10))})
    source = open_source(path, batch_size=3)
    assert source.total == 10
    batches = list(source.batches())
    assert [len(b) for b in batches] == [3, 3, 3, 1]
    records = [r for b in batches for r in b]
    assert [r.id for r in records] == [f"fixed:{i}" for i in range(1, 11)]
    assert comparable(records[4]) == Record("fixed:5", [8.0, 9.0], None, {"n": 4})


@pytest.mark.parametrize(
    ("columns", "expected"),
    [
        (
            {"vector": pa.array([[1.0], [math.nan]], pa.list_(pa.float64()))},
            "row 2: 'vector': element [0] is not a finite number",
        ),
        ({"vector": ["[1.0]", "[2.0]"]}, "row 1: 'vector' must be a list of numbers, not str"),
        ({"text": ["a", "b"], "blob": [b"x", b"y"]}, "row 1: column 'blob' holds bytes values"),
        ({"id": [1.0, 2.0], "text": ["a", "b"]}, "row 1: 'id' must be a string or an integer"),
        ({"id": ["a", "b"], "text": ["a", None]}, "row 2: no 'vector' and no 'text'"),
    ],
)
def test_parquet_errors_name_the_file_and_row(
    tmp_path: Path, columns: dict[str, Any], expected: str
) -> None:
    path = write_parquet(tmp_path / "bad.parquet", columns)
    message = config_error(path)
    assert message.startswith(f"{path}: ")
    assert expected in message


def test_parquet_without_vector_or_text_column_fails_on_open(tmp_path: Path) -> None:
    path = write_parquet(tmp_path / "cols.parquet", {"id": ["a"], "emb": [[1.0]]})
    with pytest.raises(ConfigError, match=r"no 'vector' or 'text' column \(columns: id, emb\)"):
        open_source(path)
    assert read_all(open_source(path, vector_field="emb")) == [Record("a", [1.0], None, {})]


def test_broken_parquet_fails_on_open(tmp_path: Path) -> None:
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"this is not parquet at all")
    with pytest.raises(ConfigError, match=r"broken\.parquet: not a readable Parquet file"):
        open_source(path)


# opening


def test_missing_path_and_unsupported_extension(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.jsonl: no such file or folder"):
        open_source(tmp_path / "nope.jsonl")
    other = tmp_path / "data.json"
    other.write_text("[]")
    with pytest.raises(ConfigError) as caught:
        open_source(other)
    message = str(caught.value)
    assert "unsupported file type (extension '.json')" in message
    assert all(suffix in message for suffix in SUPPORTED)
    bare = tmp_path / "README"
    bare.write_text("x")
    with pytest.raises(ConfigError, match="no extension"):
        open_source(bare)


def test_batch_size_must_be_positive(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", [{"text": "a"}])
    with pytest.raises(ConfigError, match="batch size"):
        open_source(path, batch_size=0)


# demo corpus


def test_demo_folder_has_enough_articles_each_with_a_heading() -> None:
    docs = sorted(DOCS_DIR.glob("*.md"))
    assert 24 <= len(docs) <= 40
    titles = set()
    for path in docs:
        text = path.read_text(encoding="utf-8")
        first_line = text.splitlines()[0]
        assert re.fullmatch(r"# \S.*", first_line), path.name
        titles.add(first_line)
        paragraphs = [p for p in text.split("\n\n")[1:] if p.strip()]
        assert 2 <= len(paragraphs) <= 4, path.name
        assert 150 <= len(text.split()) <= 400, path.name
    assert len(titles) == len(docs)


def test_parquet_batch_check_names_the_row_in_a_later_batch(tmp_path: Path) -> None:
    rows = [[float(i), 1.0] for i in range(7)]
    rows[4][1] = math.inf
    path = write_parquet(tmp_path / "late.parquet", {"vector": rows})
    message = config_error(path, batch_size=3)
    assert "row 5: 'vector': element [1] is not a finite number" in message


def test_parquet_vectors_of_mixed_lengths_or_nulls_are_read_row_by_row(tmp_path: Path) -> None:
    ragged = write_parquet(tmp_path / "ragged.parquet", {"vector": [[1.0, 2.0], [3.0]]})
    assert [r.vector.tolist() for r in open_source(ragged).records() if r.vector is not None] == [
        [1.0, 2.0],
        [3.0],
    ]
    holes = write_parquet(tmp_path / "holes.parquet", {"vector": [[1.0, 2.0], [3.0, 4.0], None]})
    assert "row 3: no 'vector' and no 'text'" in config_error(holes)
