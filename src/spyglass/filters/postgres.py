"""Compile a filter to a PostgreSQL WHERE fragment over a JSONB column (psycopg 3)."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from spyglass.filters.ast import Compare, Exists, Filter, In, Scalar, orderable
from spyglass.filters.sql import RANGE_SQL, Sql, compile_tree, join, sql, tpl

# PostgreSQL's #> treats a path element as an array index when the value there is
# an array and the element parses as an integer (strtol: blanks, sign, digits),
# which our dotted paths must never do; such steps get an "is an object" guard.
_PG_INDEX_LIKE = re.compile(r"[ \t\n\v\f\r]*[+-]?[0-9]+").fullmatch


def _pg_path(column: str, path: tuple[str, ...], operator: str = "#>") -> Sql:
    return Sql(f"({column} {operator} %s::text[])", (list(path),))


def _pg_guards(column: str, path: tuple[str, ...]) -> list[Sql]:
    return [
        tpl("jsonb_typeof({parent}) = 'object'", parent=_pg_path(column, path[:i]))
        for i in range(1, len(path))
        if _PG_INDEX_LIKE(path[i])
    ]


def _pg_document(path: tuple[str, ...], value: object) -> str:
    doc: object = value
    for segment in reversed(path):
        doc = {segment: doc}
    return json.dumps(doc, ensure_ascii=False, allow_nan=False)


def _pg_leaf(column: str, f: Compare | In | Exists) -> Sql:
    target = _pg_path(column, f.path)
    if isinstance(f, Exists):
        check = tpl("{x} IS NOT NULL", x=target)
    elif isinstance(f, In) or f.op == "$eq":
        return _pg_equals_any(column, f.path, f.values if isinstance(f, In) else (f.value,))
    elif not orderable(f.value):
        return Sql("FALSE")
    elif isinstance(f.value, str):
        # Text order must be code-point order, as in Python and SQLite: collation "C".
        check = tpl(
            """jsonb_typeof({x}) = 'string' AND {text} COLLATE "C" {op} {bound}""",
            x=target,
            text=_pg_path(column, f.path, "#>>"),
            op=RANGE_SQL[f.op],
            bound=Sql("%s", (f.value,)),
        )
    else:
        check = tpl(
            "jsonb_typeof({x}) = 'number' AND {x} {op} {bound}",
            x=target,
            op=RANGE_SQL[f.op],
            bound=Sql("%s::jsonb", (json.dumps(f.value, allow_nan=False),)),
        )
    return sql("(", join(" AND ", [*_pg_guards(column, f.path), check]), ")")


def _pg_equals_any(column: str, path: tuple[str, ...], values: Sequence[Scalar]) -> Sql:
    """Mongo equality by containment, which never indexes arrays and a GIN index serves.

    ``{"a": v}`` is "a equals v" and ``{"a": [v]}`` is "a is an array holding v".
    """
    docs: list[str] = []
    for v in values:
        docs += [_pg_document(path, v), _pg_document(path, [v])]
    if not docs:
        return Sql("FALSE")
    if len(docs) == 2:
        return tpl(
            "({c} @> {a} OR {c} @> {b})",
            c=column,
            a=Sql("%s::jsonb", (docs[0],)),
            b=Sql("%s::jsonb", (docs[1],)),
        )
    return tpl("({c} @> ANY ({docs}))", c=column, docs=Sql("%s::jsonb[]", (docs,)))


def to_postgres(f: Filter, column: str = "payload") -> tuple[str, list[object]]:
    """Compile ``f`` to a PostgreSQL WHERE fragment and its psycopg 3 ``%s`` parameters.

    ``column`` is SQL text naming a JSONB column; it comes from code, never from
    a client. Values travel as JSON text or text, paths as ``text[]``.
    """
    out = compile_tree(
        f,
        lambda leaf: _pg_leaf(column, leaf),
        lambda positive: sql("NOT COALESCE(", positive, ", FALSE)"),
    )
    return out.text, list(out.params)
