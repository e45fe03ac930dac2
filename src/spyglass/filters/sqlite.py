"""Compile a filter to a SQLite (3.40+) WHERE fragment over a TEXT column of JSON."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from spyglass.filters.ast import Compare, Exists, Filter, In, Scalar, orderable
from spyglass.filters.sql import (
    RANGE_SQL,
    Sql,
    compile_tree,
    join,
    placeholders,
    split_values,
    sql,
    tpl,
)

# SQLite 3.40 matches a quoted path label ($."key") against the key's *raw* JSON
# text and has no escape syntax inside labels: a key containing `"` cannot be
# named at all, and a key written with escapes (json.dumps turns "café" into
# "caf\u00e9") is not found by its plain spelling. Keys of printable ASCII other
# than `"` and `\` are written verbatim by every encoder, so a path of those
# goes through json_extract/json_type; from the first other key on, keys are
# looked up with json_each, whose `key` column is the decoded key.
_SQLITE_PLAIN_KEY = re.compile(r"[ !#-\[\]-~]+").fullmatch


@dataclass(frozen=True, slots=True)
class _SqliteNode:
    """How to reach the value at a path: its JSON type, its value, its elements.

    ``wrap`` puts a predicate over those into the scope where they are defined.
    """

    type: Sql
    value: Sql
    elements: Sql
    wrap: Callable[[Sql], Sql]


def _sqlite_path(segments: Sequence[str]) -> Sql:
    return Sql("?", ("$" + "".join(f'."{segment}"' for segment in segments),))


def _sqlite_plain_node(doc: Sql, path: Sequence[str], wrap: Callable[[Sql], Sql]) -> _SqliteNode:
    json_path = _sqlite_path(path)
    return _SqliteNode(
        type=tpl("json_type({d}, {p})", d=doc, p=json_path),
        value=tpl("json_extract({d}, {p})", d=doc, p=json_path),
        elements=tpl("json_each({d}, {p})", d=doc, p=json_path),
        wrap=wrap,
    )


def _sqlite_node(column: str, path: tuple[str, ...]) -> _SqliteNode:
    odd = [i for i, segment in enumerate(path) if not _SQLITE_PLAIN_KEY(segment)]
    if not odd:
        return _sqlite_plain_node(Sql(column), path, lambda predicate: predicate)
    # Walk from the value at the plain lead (a json_extract path) one key at a
    # time with json_each, in a recursive CTE: constant-size SQL whatever the
    # path's length, and no join for the planner to order.
    lead, keys = path[: odd[0]], path[odd[0] :]
    if lead:
        start = tpl(
            "SELECT 0, json_type({c}, {p}), json_extract({c}, {p})",
            c=column,
            p=_sqlite_path(lead),
        )
    else:
        start = Sql(f"SELECT 0, 'object', {column}")

    def wrap(predicate: Sql) -> Sql:
        return tpl(
            "EXISTS (WITH RECURSIVE _sg_w(depth, type, value) AS ({start} UNION ALL"
            " SELECT _sg_w.depth + 1, _sg_k.type, _sg_k.value FROM _sg_w, json_each(CASE"
            " WHEN _sg_w.type = 'object' THEN _sg_w.value ELSE '{{}}' END) AS _sg_k"
            " WHERE _sg_k.key = json_extract({keys}, '$[' || _sg_w.depth || ']'))"
            " SELECT 1 FROM _sg_w WHERE _sg_w.depth = {depth} AND {pred})",
            start=start,
            keys=Sql("?", (json.dumps(keys, ensure_ascii=False),)),
            depth=Sql("?", (len(keys),)),
            pred=predicate,
        )

    return _SqliteNode(
        type=Sql("_sg_w.type"),
        value=Sql("_sg_w.value"),
        elements=Sql("json_each(CASE WHEN _sg_w.type = 'array' THEN _sg_w.value ELSE '[]' END)"),
        wrap=wrap,
    )


def _sqlite_scalar_in(type_: Sql, value: Sql, values: Sequence[Scalar]) -> Sql:
    """The value (a scalar, not an array's elements) equals one of ``values``."""
    consts, numbers, strings = split_values(values)
    parts: list[Sql] = []
    if consts:
        names = ", ".join(f"'{name}'" for name in consts)
        parts.append(tpl("{t} IN ({names})", t=type_, names=names))
    if numbers:
        parts.append(
            tpl(
                "({t} IN ('integer', 'real') AND {v} IN ({p}))",
                t=type_,
                v=value,
                p=placeholders("?", numbers),
            )
        )
    if strings:
        parts.append(
            tpl("({t} = 'text' AND {v} IN ({p}))", t=type_, v=value, p=placeholders("?", strings))
        )
    return sql("(", join(" OR ", parts), ")")


def _sqlite_leaf(column: str, f: Compare | In | Exists) -> Sql:
    node = _sqlite_node(column, f.path)
    if isinstance(f, Exists):
        return node.wrap(tpl("{t} IS NOT NULL", t=node.type))
    if isinstance(f, In) or f.op == "$eq":
        values = f.values if isinstance(f, In) else (f.value,)
        if not values:
            return Sql("0")
        return node.wrap(
            tpl(
                "({scalar} OR ({t} = 'array' AND EXISTS"
                " (SELECT 1 FROM {elements} AS _sg_e WHERE {element})))",
                scalar=_sqlite_scalar_in(node.type, node.value, values),
                t=node.type,
                elements=node.elements,
                element=_sqlite_scalar_in(Sql("_sg_e.type"), Sql("_sg_e.value"), values),
            )
        )
    if not orderable(f.value):
        return Sql("0")
    return node.wrap(
        tpl(
            "({t} {kinds} AND {v} {op} {bound})",
            t=node.type,
            kinds="= 'text'" if isinstance(f.value, str) else "IN ('integer', 'real')",
            v=node.value,
            op=RANGE_SQL[f.op],
            bound=Sql("?", (f.value,)),
        )
    )


def to_sqlite(f: Filter, column: str = "payload") -> tuple[str, list[object]]:
    """Compile ``f`` to a SQLite (3.40+) WHERE fragment and its ``?`` parameters.

    ``column`` is SQL text naming a TEXT column of JSON objects; it comes from
    code, never from a client. Every value and JSON path is a parameter.
    """
    out = compile_tree(
        f,
        lambda leaf: _sqlite_leaf(column, leaf),
        lambda positive: sql("NOT COALESCE(", positive, ", 0)"),
    )
    return out.text, list(out.params)
