"""The payload filter language: parse errors, reference semantics, SQL congruence.

The congruence tests run every filter below over the same payloads three ways:
``matches`` (the reference), ``to_sqlite`` against a real SQLite file, and
``to_postgres`` against the suite's real PostgreSQL (tests/pgcluster.py); the matched ids
must agree exactly.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from spyglass.errors import FilterError
from spyglass.filters import (
    MAX_CONDITIONS,
    MAX_DEPTH,
    And,
    Compare,
    Exists,
    In,
    Or,
    canonical,
    matches,
    parse,
    to_postgres,
    to_sqlite,
)
from tests.pgcluster import Cluster

# id -> payload; None stands for a NULL payload column, which means {}.
PAYLOADS: dict[int, dict[str, Any] | None] = {
    1: {
        "color": "red",
        "price": 10,
        "in_stock": True,
        "tags": ["sale", "new"],
        "meta": {"year": 2021, "rating": 4.5},
    },
    2: {
        "color": "blue",
        "price": 25.5,
        "in_stock": False,
        "tags": ["new"],
        "meta": {"year": 2022, "rating": 3},
    },
    3: {"color": "red", "price": "10", "in_stock": 1, "tags": "sale"},
    4: {"color": "green", "price": 10.0, "in_stock": None, "tags": [], "meta": {"year": "2021"}},
    5: {"color": None, "price": None, "tags": [None, "sale"], "meta": None},
    6: {},
    7: {
        "color": "Red",
        "price": -3,
        "tags": ["SALE", 1, 2.5, True],
        "meta": {"year": 2023.0, "rating": None},
    },
    8: {"color": "red", "price": 100, "tags": [["sale"]], "meta": {"year": [2021, 2022]}},
    9: {
        "color": "blue",
        "price": 0,
        "in_stock": True,
        "tags": [1, 2, 3],
        "meta": {"nested": {"deep": {"x": 1}}},
    },
    10: {"color": "yellow", "price": False, "in_stock": 0, "tags": [False, 0]},
    11: {"color": "red", "price": 9.99, "in_stock": True, "meta": [{"year": 2021}]},
    12: {"color": "é", "price": 1e3, "tags": ["é", "z"]},
    13: {"color": "z", "price": 1, "tags": ["a", "b"]},
    14: {"color": "", "price": 1.0, "tags": [""]},
    15: {"café": "oui", 'a"b': 1, "back\\slash": True, "price": 5},
    16: {"café": {"prix": 12}, "price": 6},
    17: {"scores": [5, 6, 7], "price": 7},
    18: {"scores": {"0": 5, "1": 6}, "price": 8},
    19: {"2024": {"total": 10}, "price": 9},
    20: {"2024": [10], "price": 11},
    21: {"meta": {"year": 2021, "rating": 4.5, "tags": ["x"]}, "color": "red", "price": 15},
    22: {"meta": {"year": 2020}, "color": "red", "price": 20, "in_stock": False},
    23: {"meta": "2021", "color": "blue"},
    24: {"color": ["red", "blue"], "price": [10, 20]},
    25: {"color": {"name": "red"}},
    26: {"price": 9223372036854775807, "color": "black"},
    27: {"price": -0.0, "color": "white"},
    28: {"price": 1e-7, "color": "white"},
    29: {"tags": ["red"], "color": "red"},
    30: {"in_stock": "true", "color": "gray", "price": "abc"},
    31: {"in_stock": "True", "price": "1"},
    32: {"nested": {"a": {"b": {"c": "deep"}}}},
    33: {"nested": {"a": [{"b": {"c": "deep"}}]}},
    34: {"nested": {"a": {"b": ["deep", "shallow"]}}},
    35: {"nested": {"a": {"b": None}}},
    36: {"color": "red", "price": 10, "tags": ["sale"], "extra": {"": 1}},
    37: {"price": 3, "color": "Red ", "tags": "new"},
    38: {"emoji": "😀", "color": "😀", "price": 2},
    39: {"color": "red", "price": 10, "in_stock": True},
    40: None,
    41: {"meta": {"café": {"x": "y", "ü": [1, 2], "deep": {"ñ": {"z": 3}}}}, "price": 4},
    42: {"meta": {"café": {"x": ["y"], "deep": {"ñ": "z"}}}, "price": 4.5},
}

FILTERS: list[dict[str, Any]] = [
    {"color": "red"},
    {"color": {"$ne": "red"}},
    {"price": 10},
    {"price": {"$eq": 10.0}},
    {"price": "10"},
    {"in_stock": True},
    {"in_stock": 1},
    {"in_stock": False},
    {"in_stock": 0},
    {"in_stock": None},
    {"in_stock": {"$ne": None}},
    {"color": None},
    {"color": {"$exists": False}},
    {"color": {"$exists": True}},
    {"meta.year": 2021},
    {"meta.year": {"$gte": 2021}},
    {"meta.year": {"$gte": "2021"}},
    {"price": {"$gt": 5, "$lt": 20}},
    {"price": {"$gte": "1"}},
    {"price": {"$lte": 0}},
    {"tags": "sale"},
    {"tags": {"$in": ["new", 1]}},
    {"tags": {"$nin": ["sale"]}},
    {"tags": {"$in": []}},
    {"tags": {"$nin": []}},
    {"tags": None},
    {"tags": True},
    {"tags": 0},
    {"tags": {"$gt": 0}},
    {"tags": {"$gt": "a"}},
    {"$or": [{"color": "blue"}, {"price": {"$lt": 1}}]},
    {"$and": [{"color": "red"}, {"$or": [{"in_stock": True}, {"meta.rating": {"$gt": 4}}]}]},
    {"color": {"$in": ["red", "blue"]}, "price": {"$nin": [10, 100]}},
    {"color": {"$gt": "r"}},
    {"color": {"$lt": "é"}},
    {"color": {"$gte": "z", "$lt": "😀"}},
    {"café": "oui"},
    {"café.prix": {"$gte": 12}},
    {"café.prix": 12},
    {'a"b': 1},
    {"back\\slash": {"$exists": True}},
    {"scores.0": 5},
    {"scores.0": {"$gt": 1}},
    {"scores.0": {"$exists": True}},
    {"scores.0": {"$ne": 5}},
    {"2024.total": 10},
    {"2024": 10},
    {"nested.a.b.c": "deep"},
    {"nested.a.b": "deep"},
    {"nested.a.b": {"$exists": True}},
    {"nested.a.b": {"$ne": None}},
    {"meta": None},
    {"meta": {"$exists": True}, "meta.year": {"$exists": False}},
    {"color": ""},
    {"price": {"$gt": 1e18}},
    {"price": 0},
    {"price": 1e-7},
    {"price": {"$in": [1, "abc", None]}},
    {"price": {"$in": list(range(-500, 500))}},
    {"color": {"$nin": ["red", None]}},
    {"$or": [{"meta.year": {"$lt": 2021.5}}, {"meta.year": {"$gt": "2020"}}]},
    {"color": "😀"},
    {"color.name": "red"},
    {"color": {"$gte": "red", "$lte": "red"}},
    {"emoji": {"$exists": False}, "tags": {"$ne": "sale"}},
    {"price": {"$ne": 10}},
    {"$or": [{"café": {"$exists": True}}, {"tags": {"$in": ["a", "x", False]}}]},
    {"meta.café.x": "y"},
    {"meta.café.ü": 2},
    {"meta.café.ü": {"$nin": [1]}},
    {"meta.café.deep.ñ.z": {"$gte": 3}},
    {"meta.café.deep.ñ.z": {"$ne": 3}},
    {"meta.café.deep.ñ": {"$exists": True}},
    {"meta.café.deep.ñ": {"$gt": "a"}},
]


def _expected(filter_obj: dict[str, Any]) -> set[int]:
    f = parse(filter_obj)
    if f is None:
        return set(PAYLOADS)
    return {i for i, payload in PAYLOADS.items() if matches(f, payload or {})}


# --------------------------------------------------------------------------- parse


def test_empty_filters_match_everything() -> None:
    assert parse(None) is None
    assert parse({}) is None
    assert canonical(None) == "{}"


def test_parse_builds_the_ast() -> None:
    f = parse(
        {
            "color": "red",
            "meta.year": {"$gte": 2020, "$lt": 2024},
            "$or": [{"tags": {"$in": ["a", 1]}}, {"gone": {"$exists": False}}],
        }
    )
    assert f == And(
        (
            Compare(("color",), "$eq", "red"),
            Compare(("meta", "year"), "$gte", 2020),
            Compare(("meta", "year"), "$lt", 2024),
            Or((In(("tags",), "$in", ("a", 1)), Exists(("gone",), False))),
        )
    )
    assert parse({"$and": [{"a": 1}]}) == Compare(("a",), "$eq", 1)
    assert parse({"a": {"$nin": []}}) == In(("a",), "$nin", ())


def _nested(depth: int) -> dict[str, Any]:
    f: dict[str, Any] = {"x": 1}
    for _ in range(depth - 1):
        f = {"$and": [f]}
    return f


def _deep_alternating() -> dict[str, Any]:
    f: dict[str, Any] = {"price": {"$gt": 0}}
    for i in range(MAX_DEPTH - 1):
        f = {"$or" if i % 2 else "$and": [f, {f"f{i}": {"$ne": i}}]}
    return f


LONG_NAME = ".".join(["é"] * MAX_DEPTH)

# At the limits: the SQL must still be accepted by both engines.
BIG_FILTERS: list[dict[str, Any]] = [
    {f"f{i}": i for i in range(MAX_CONDITIONS)},
    {"$or": [{f"f{i}": {"$gt": i}} for i in range(MAX_CONDITIONS)]},
    {"$or": [{LONG_NAME + str(i): {"$nin": [i]}} for i in range(MAX_CONDITIONS)]},
    {"$and": [{f"a.{i}.b": {"$exists": True}} for i in range(MAX_CONDITIONS)]},
    {"tags": {"$in": [f"t{i}" for i in range(MAX_CONDITIONS)]}},
    _deep_alternating(),
]


PARSE_ERRORS: list[tuple[object, str, str]] = [
    ([], "filter", "must be an object"),
    ("color = red", "filter", "must be an object"),
    ({"$and": [{"a": 1}, 5]}, "filter.$and[1]", "must be an object"),
    ({"$and": []}, "filter.$and", "at least one"),
    ({"$or": {"a": 1}}, "filter.$or", "array of filters"),
    ({"$and": [{"a": 1}, {}]}, "filter.$and[1]", "empty filter object"),
    ({"$not": {"a": 1}}, "filter.$not", "unknown operator"),
    ({"": 1}, 'filter[""]', "must not be empty"),
    ({"a..b": 1}, "filter.a..b", "empty segment"),
    ({"a.": 1}, "filter.a.", "empty segment"),
    ({"price": {}}, "filter.price", "at least one operator"),
    ({"price": {"$between": [1, 2]}}, "filter.price.$between", "unknown operator"),
    ({"price": {"$gt": 1, "currency": "EUR"}}, "filter.price.currency", "price.currency"),
    ({"price": {"$and": [{"a": 1}]}}, "filter.price.$and", "unknown operator"),
    ({"tags": ["a", "b"]}, "filter.tags", "use $in"),
    ({"tags": {"$eq": ["a"]}}, "filter.tags.$eq", "use $in"),
    ({"meta": {"$eq": {"year": 1}}}, "filter.meta.$eq", "got an object"),
    ({"price": float("nan")}, "filter.price", "finite"),
    ({"price": {"$lt": float("inf")}}, "filter.price.$lt", "finite"),
    ({"price": 2**63}, "filter.price", "64 bits"),
    ({"price": {"$gt": True}}, "filter.price.$gt", "number or a string"),
    ({"price": {"$lte": None}}, "filter.price.$lte", "number or a string"),
    (
        {"$and": [{"a": 1}, {"price": {"$gt": "x", "$lt": False}}]},
        "filter.$and[1].price.$lt",
        "$lt needs",
    ),
    ({"tags": {"$in": "sale"}}, "filter.tags.$in", "array of values"),
    ({"tags": {"$nin": ["a", {"b": 1}]}}, "filter.tags.$nin[1]", "got an object"),
    ({"tags": {"$in": ["a", ["b"]]}}, "filter.tags.$in[1]", "use $in"),
    ({"tags": {"$exists": 1}}, "filter.tags.$exists", "true or false"),
    ({"tags": {"$exists": None}}, "filter.tags.$exists", "true or false"),
    ({"name": "a\x00b"}, "filter.name", "NUL"),
    ({"name": "\ud800"}, "filter.name", "valid Unicode"),
    (
        {"$or": [{"a": 1}, {"$and": [{"b": {"$regex": "x"}}]}]},
        "filter.$or[1].$and[0].b.$regex",
        "'$regex'",
    ),
    ({1: 2}, "filter", "keys must be strings"),
    ({LONG_NAME + ".x": 1}, f"filter.{LONG_NAME}.x", f"at most {MAX_DEPTH} dotted parts"),
    (_nested(MAX_DEPTH + 1), "filter" + ".$and[0]" * MAX_DEPTH, f"deeper than {MAX_DEPTH}"),
    ({"tags": {"$in": list(range(MAX_CONDITIONS + 1))}}, "filter.tags.$in", "more than"),
    ({f"f{i}": i for i in range(MAX_CONDITIONS + 1)}, f"filter.f{MAX_CONDITIONS}", "more than"),
]


@pytest.mark.parametrize(("filter_obj", "field", "message"), PARSE_ERRORS)
def test_parse_errors_name_the_field(filter_obj: object, field: str, message: str) -> None:
    with pytest.raises(FilterError) as info:
        parse(filter_obj)
    assert info.value.field == field
    assert message in info.value.detail
    problem = info.value.to_problem()
    assert problem["status"] == 422
    assert problem["errors"] == [{"field": field, "message": info.value.detail}]


def test_parse_error_root_follows_the_field_argument() -> None:
    with pytest.raises(FilterError) as info:
        parse({"$or": [{"a": {"$gt": None}}]}, field="query.where")
    assert info.value.field == "query.where.$or[0].a.$gt"


def test_limits_are_inclusive() -> None:
    assert parse(_nested(MAX_DEPTH)) is not None
    assert parse({LONG_NAME: 1}) is not None
    assert parse({"tags": {"$in": list(range(MAX_CONDITIONS))}}) is not None
    assert parse({f"f{i}": i for i in range(MAX_CONDITIONS)}) is not None


# --------------------------------------------------------------------------- reference semantics

SEMANTICS: list[tuple[dict[str, Any], dict[str, Any], bool]] = [
    ({"n": 1}, {"n": 1.0}, True),
    ({"n": 1}, {"n": "1"}, False),
    ({"n": 1}, {"n": True}, False),
    ({"n": True}, {"n": 1}, False),
    ({"n": 0}, {"n": False}, False),
    ({"n": None}, {}, False),
    ({"n": None}, {"n": None}, True),
    ({"n": {"$ne": 1}}, {}, True),
    ({"n": {"$nin": [1]}}, {}, True),
    ({"n": {"$exists": False}}, {"n": None}, False),
    ({"n": {"$gt": 1}}, {"n": "2"}, False),
    ({"n": {"$gt": "1"}}, {"n": "2"}, True),
    ({"n": {"$gt": 1}}, {"n": [5]}, False),
    ({"n": 5}, {"n": [4, 5]}, True),
    ({"n": {"$ne": 5}}, {"n": [4, 5]}, False),
    ({"n": {"$in": [3, 5]}}, {"n": [4, 5]}, True),
    ({"n": 5}, {"n": [[5]]}, False),
    ({"a.b": 1}, {"a": {"b": 1}}, True),
    ({"a.b": 1}, {"a": [{"b": 1}]}, False),
    ({"a.0": 1}, {"a": [1]}, False),
    ({"a.0": 1}, {"a": {"0": 1}}, True),
    ({"s": {"$lt": "é"}}, {"s": "z"}, True),
    ({"s": {"$lt": "Z"}}, {"s": "a"}, False),
]


@pytest.mark.parametrize(("filter_obj", "payload", "expected"), SEMANTICS)
def test_reference_semantics(
    filter_obj: dict[str, Any], payload: dict[str, Any], expected: bool
) -> None:
    f = parse(filter_obj)
    assert f is not None
    assert matches(f, payload) is expected


def test_expected_ids_for_a_few_filters() -> None:
    assert _expected({"price": 10}) == {1, 4, 24, 36, 39}
    assert _expected({"meta.year": 2021}) == {1, 8, 21}
    assert _expected({"tags": "sale"}) == {1, 3, 5, 36}
    assert _expected({"in_stock": True}) == {1, 9, 11, 39}
    assert _expected({"scores.0": 5}) == {18}
    missing_color = {6, 15, 16, 17, 18, 19, 20, 31, 32, 33, 34, 35, 40, 41, 42}
    assert _expected({"color": {"$exists": False}}) == missing_color


# --------------------------------------------------------------------------- canonical


def test_canonical_ignores_order_and_duplicates() -> None:
    a = parse({"b": {"$in": [2, 1, 2]}, "a": 1, "$or": [{"x": 1}, {"y": 2}]})
    b = parse({"$or": [{"y": 2}, {"x": 1}], "$and": [{"a": 1}, {"b": {"$in": [1, 2]}}]})
    assert canonical(a) == canonical(b)
    assert canonical(parse({"a": 1})) != canonical(parse({"a": True}))
    assert canonical(parse({"a": 1})) != canonical(parse({"a": "1"}))
    assert canonical(parse({"a": {"$gt": 1}})) != canonical(parse({"a": {"$gte": 1}}))


@pytest.mark.parametrize("filter_obj", FILTERS)
def test_canonical_is_a_filter_with_the_same_meaning(filter_obj: dict[str, Any]) -> None:
    key = canonical(parse(filter_obj))
    again = parse(json.loads(key))
    assert canonical(again) == key
    if again is not None:
        assert {i for i, p in PAYLOADS.items() if matches(again, p or {})} == _expected(filter_obj)


# --------------------------------------------------------------------------- SQL text


def test_values_and_paths_are_parameters_never_sql_text() -> None:
    evil = "x'); DROP TABLE items; --"
    f = parse({evil: evil, f'{evil}".k': {"$gt": evil}, "n": {"$in": [evil, 7]}})
    assert f is not None
    for sql, params in (to_sqlite(f), to_postgres(f)):
        assert "DROP" not in sql
        assert any(evil in str(p) for p in params)


# --------------------------------------------------------------------------- SQLite congruence


@pytest.fixture(params=[True, False], ids=["ascii-escaped", "utf8"])
def sqlite_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sqlite3.Connection]:
    """Payloads in a SQLite file, written with json.dumps (both ensure_ascii settings)."""
    conn = sqlite3.connect(tmp_path / "items.db")
    conn.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, payload TEXT)")
    conn.executemany(
        "INSERT INTO items (id, payload) VALUES (?, ?)",
        [
            (i, None if p is None else json.dumps(p, ensure_ascii=request.param))
            for i, p in PAYLOADS.items()
        ],
    )
    conn.commit()
    try:
        yield conn
    finally:
        conn.close()


def test_sqlite_matches_the_reference(sqlite_db: sqlite3.Connection) -> None:
    mismatches = []
    for filter_obj in FILTERS:
        f = parse(filter_obj)
        assert f is not None
        sql, params = to_sqlite(f, "items.payload")
        got = {row[0] for row in sqlite_db.execute(f"SELECT id FROM items WHERE {sql}", params)}
        if got != _expected(filter_obj):
            mismatches.append((filter_obj, sorted(got ^ _expected(filter_obj))))
    assert not mismatches


def test_sqlite_accepts_filters_at_the_limits(sqlite_db: sqlite3.Connection) -> None:
    for filter_obj in BIG_FILTERS:
        f = parse(filter_obj)
        assert f is not None
        sql, params = to_sqlite(f)
        rows = sqlite_db.execute(f"SELECT id FROM items WHERE {sql}", params).fetchall()
        assert {row[0] for row in rows} == _expected(filter_obj)


# --------------------------------------------------------------------------- PostgreSQL congruence


@pytest.fixture(scope="module")
def pg_conn(pg_cluster: Cluster) -> Iterator[psycopg.Connection[Any]]:
    """A connection to a fresh database on the suite's real PostgreSQL."""
    primary, _ = pg_cluster.database()
    with psycopg.connect(primary, autocommit=True) as conn:
        yield conn


@pytest.fixture(scope="module")
def pg_items(pg_conn: psycopg.Connection[Any]) -> psycopg.Connection[Any]:
    pg_conn.execute("DROP TABLE IF EXISTS items")
    pg_conn.execute("CREATE TABLE items (id integer PRIMARY KEY, payload jsonb)")
    with pg_conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO items (id, payload) VALUES (%s, %s::jsonb)",
            [(i, None if p is None else json.dumps(p)) for i, p in PAYLOADS.items()],
        )
    pg_conn.execute("CREATE INDEX items_payload ON items USING gin (payload jsonb_path_ops)")
    pg_conn.execute("ANALYZE items")
    return pg_conn


@pytest.mark.pg
def test_postgres_matches_the_reference(pg_items: psycopg.Connection[Any]) -> None:
    mismatches = []
    for filter_obj in FILTERS:
        f = parse(filter_obj)
        assert f is not None
        sql, params = to_postgres(f, "items.payload")
        rows = pg_items.execute(f"SELECT id FROM items WHERE {sql}", params).fetchall()
        got = {row[0] for row in rows}
        if got != _expected(filter_obj):
            mismatches.append((filter_obj, sorted(got ^ _expected(filter_obj))))
    assert not mismatches


@pytest.mark.pg
def test_postgres_equality_can_use_a_gin_index(pg_items: psycopg.Connection[Any]) -> None:
    f = parse({"color": "red"})
    assert f is not None
    sql, params = to_postgres(f)
    with pg_items.transaction():
        pg_items.execute("SET LOCAL enable_seqscan = off")
        plan = pg_items.execute(f"EXPLAIN SELECT id FROM items WHERE {sql}", params).fetchall()
    assert "items_payload" in "\n".join(row[0] for row in plan)


@pytest.mark.pg
def test_postgres_accepts_filters_at_the_limits(pg_items: psycopg.Connection[Any]) -> None:
    for filter_obj in BIG_FILTERS:
        f = parse(filter_obj)
        assert f is not None
        sql, params = to_postgres(f)
        rows = pg_items.execute(f"SELECT id FROM items WHERE {sql}", params).fetchall()
        assert {row[0] for row in rows} == _expected(filter_obj)
