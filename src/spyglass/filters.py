"""The payload filter language: parse it, evaluate it, and compile it to SQL.

Clients send a MongoDB-style filter (the dialect Chroma users know) over an
item's JSON payload::

    {"color": "red", "price": {"$gte": 10, "$lt": 50}, "$or": [{"tags": "sale"}, ...]}

``parse`` validates it into a small immutable AST, raising ``FilterError`` with
the JSON path of the offending part (``filter.$and[1].price.$gt``). The AST has
one meaning, defined by ``matches`` (the reference evaluator, used by in-memory
stores and by the tests); ``to_sqlite`` and ``to_postgres`` compile it to WHERE
fragments with exactly that meaning, and ``canonical`` gives it a stable key for
caches. The rules, in short (docs/filters.md has the user-facing version):

* Types never coerce: ``1`` is not ``"1"`` and ``true`` is not ``1``; ``1``
  equals ``1.0``. A range against a value of another type is no match.
* Equality and ``$in`` match an array-valued field when any element matches
  (MongoDB); ranges apply to scalar fields only.
* ``$ne``, ``$nin`` and ``$exists: false`` match items that lack the field;
  a JSON ``null`` is present. A NULL payload column counts as ``{}``.
* Dotted names walk nested objects only: never into arrays, so ``"a.0"`` names
  the key ``"0"`` of object ``a``, not the first element of array ``a``.
"""

from __future__ import annotations

import json
import math
import re
import string
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

from spyglass.errors import FilterError

__all__ = [
    "MAX_CONDITIONS",
    "MAX_DEPTH",
    "And",
    "Compare",
    "CompareOp",
    "Exists",
    "Filter",
    "In",
    "InOp",
    "Or",
    "Scalar",
    "canonical",
    "matches",
    "parse",
    "to_postgres",
    "to_sqlite",
]

MAX_DEPTH = 32
"""Deepest allowed nesting of filter objects (the whole filter is depth 1), and the
most dotted parts a field name may have."""

MAX_CONDITIONS = 1000
"""Most conditions plus ``$in``/``$nin`` values one filter may hold."""

_INT_MIN = -(2**63)
_INT_MAX = 2**63 - 1

Scalar: TypeAlias = str | int | float | bool | None
"""A value a filter may compare against (finite floats, 64-bit ints)."""

CompareOp: TypeAlias = Literal["$eq", "$ne", "$gt", "$gte", "$lt", "$lte"]
InOp: TypeAlias = Literal["$in", "$nin"]

_RANGE_OPS: dict[str, CompareOp] = {"$gt": "$gt", "$gte": "$gte", "$lt": "$lt", "$lte": "$lte"}
_RANGE_SQL: dict[str, str] = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}


@dataclass(frozen=True, slots=True)
class Compare:
    """``path`` compared with ``value`` by ``op``.

    ``$eq``/``$ne`` take any scalar; ``$gt``/``$gte``/``$lt``/``$lte`` take a
    number or a string (``parse`` guarantees it). Note that dataclass equality
    follows Python's (``True == 1``): key caches with ``canonical`` instead.
    """

    path: tuple[str, ...]
    op: CompareOp
    value: Scalar


@dataclass(frozen=True, slots=True)
class In:
    """``path`` equals one of ``values`` (``$in``) or none of them (``$nin``)."""

    path: tuple[str, ...]
    op: InOp
    values: tuple[Scalar, ...]


@dataclass(frozen=True, slots=True)
class Exists:
    """``path`` is present (``present=True``) or absent; a JSON null is present."""

    path: tuple[str, ...]
    present: bool = True


@dataclass(frozen=True, slots=True)
class And:
    """Every item matches (two or more items)."""

    items: tuple[Filter, ...]


@dataclass(frozen=True, slots=True)
class Or:
    """At least one item matches (two or more items)."""

    items: tuple[Filter, ...]


Filter: TypeAlias = Compare | In | Exists | And | Or


# --------------------------------------------------------------------------- parsing


class _Budget:
    """Counts conditions and ``$in`` values during one ``parse`` call."""

    def __init__(self) -> None:
        self.used = 0

    def spend(self, n: int, field: str) -> None:
        self.used += n
        if self.used > MAX_CONDITIONS:
            raise FilterError(
                f"the filter has more than {MAX_CONDITIONS} conditions and $in/$nin values",
                field=field,
            )


def parse(obj: object, *, field: str = "filter") -> Filter | None:
    """Validate a decoded JSON filter and return its AST; None means match all.

    ``field`` is the name of the filter in the request, used as the root of the
    paths that errors name. ``None`` and ``{}`` both mean "no filter".
    """
    if obj is None or (isinstance(obj, dict) and not obj):
        return None
    return _parse_object(obj, field, 1, _Budget())


def _describe(value: object) -> str:
    """The JSON-ish name of a value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _child(field: str, key: str) -> str:
    return f"{field}.{key}" if key else f'{field}[""]'


def _parse_object(obj: object, field: str, depth: int, budget: _Budget) -> Filter:
    if not isinstance(obj, dict):
        raise FilterError(f"a filter must be an object, got {_describe(obj)}", field=field)
    if depth > MAX_DEPTH:
        raise FilterError(f"the filter is nested deeper than {MAX_DEPTH} levels", field=field)
    if not obj:
        raise FilterError("an empty filter object is only allowed as the whole filter", field=field)
    items: list[Filter] = []
    for key, value in obj.items():
        if not isinstance(key, str):
            raise FilterError("filter keys must be strings", field=field)
        sub = _child(field, key)
        if key in ("$and", "$or"):
            items.append(_parse_logical(key, value, sub, depth, budget))
        elif key.startswith("$"):
            raise FilterError(
                f"unknown operator {key!r}: only $and and $or may appear where field names go",
                field=sub,
            )
        else:
            items.extend(_parse_field(key, value, sub, budget))
    return items[0] if len(items) == 1 else And(tuple(items))


def _parse_logical(key: str, value: object, field: str, depth: int, budget: _Budget) -> Filter:
    if not isinstance(value, list | tuple):
        raise FilterError(f"{key} needs an array of filters, got {_describe(value)}", field=field)
    if not value:
        raise FilterError(f"{key} needs at least one filter", field=field)
    items = tuple(
        _parse_object(item, f"{field}[{i}]", depth + 1, budget) for i, item in enumerate(value)
    )
    if len(items) == 1:
        return items[0]
    return And(items) if key == "$and" else Or(items)


def _parse_path(name: str, field: str) -> tuple[str, ...]:
    path = tuple(_check_text(name, field).split("."))
    if not name:
        raise FilterError("field names must not be empty", field=field)
    if any(not segment for segment in path):
        raise FilterError(
            f"field name {name!r} has an empty segment (dots separate nested fields)", field=field
        )
    if len(path) > MAX_DEPTH:
        raise FilterError(f"field names may have at most {MAX_DEPTH} dotted parts", field=field)
    return path


def _parse_field(name: str, spec: object, field: str, budget: _Budget) -> list[Filter]:
    path = _parse_path(name, field)
    if not isinstance(spec, dict):
        value = _parse_scalar(spec, field)
        budget.spend(1, field)
        return [Compare(path, "$eq", value)]
    if not spec:
        raise FilterError(
            "a field's operator object needs at least one operator such as $eq", field=field
        )
    out: list[Filter] = []
    for op, arg in spec.items():
        if not isinstance(op, str):
            raise FilterError("operator names must be strings", field=field)
        sub = _child(field, op)
        if not op.startswith("$"):
            raise FilterError(
                f"expected an operator such as $eq, got {op!r}; object values are not "
                f"supported (to reach a nested field write {name + '.' + op!r})",
                field=sub,
            )
        out.append(_parse_operator(path, op, arg, sub, budget))
    return out


def _parse_operator(
    path: tuple[str, ...], op: str, arg: object, field: str, budget: _Budget
) -> Filter:
    if op in ("$eq", "$ne"):
        budget.spend(1, field)
        return Compare(path, "$eq" if op == "$eq" else "$ne", _parse_scalar(arg, field))
    range_op = _RANGE_OPS.get(op)
    if range_op is not None:
        value = _parse_scalar(arg, field)
        if not _orderable(value):
            raise FilterError(
                f"{op} needs a number or a string, got {_describe(value)}", field=field
            )
        budget.spend(1, field)
        return Compare(path, range_op, value)
    if op in ("$in", "$nin"):
        if not isinstance(arg, list | tuple):
            raise FilterError(f"{op} needs an array of values, got {_describe(arg)}", field=field)
        budget.spend(max(1, len(arg)), field)
        values = tuple(_parse_scalar(v, f"{field}[{i}]") for i, v in enumerate(arg))
        return In(path, "$in" if op == "$in" else "$nin", values)
    if op == "$exists":
        if not isinstance(arg, bool):
            raise FilterError(f"$exists needs true or false, got {_describe(arg)}", field=field)
        budget.spend(1, field)
        return Exists(path, arg)
    raise FilterError(
        f"unknown operator {op!r}; use one of $eq, $ne, $gt, $gte, $lt, $lte, $in, $nin, $exists",
        field=field,
    )


def _check_text(text: str, field: str) -> str:
    """Reject strings no backend can store: NUL characters and lone surrogates."""
    if "\x00" in text:
        raise FilterError("strings must not contain NUL characters", field=field)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise FilterError("strings must be valid Unicode", field=field) from None
    return text


def _orderable(value: Scalar) -> bool:
    """Whether ``value`` can bound a range: a number or a string, not a boolean."""
    return isinstance(value, int | float | str) and not isinstance(value, bool)


def _parse_scalar(value: object, field: str) -> Scalar:
    if isinstance(value, str):
        return _check_text(value, field)
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        if not _INT_MIN <= value <= _INT_MAX:
            raise FilterError("integers must fit in 64 bits", field=field)
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise FilterError("numbers must be finite (no NaN or infinity)", field=field)
        return value
    if isinstance(value, list | tuple):
        raise FilterError(
            "arrays are not supported as values; use $in to match any of several values",
            field=field,
        )
    raise FilterError(
        f"a value must be a string, number, boolean or null, got {_describe(value)}", field=field
    )


# --------------------------------------------------------------------------- reference semantics


def _kind(value: object) -> str:
    """The JSON type of a decoded value, with int and float both ``number``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "other"


def _resolve(payload: object, path: tuple[str, ...]) -> tuple[bool, object]:
    """Walk ``path`` through nested objects: (found, value)."""
    node = payload
    for segment in path:
        if not isinstance(node, dict) or segment not in node:
            return False, None
        node = node[segment]
    return True, node


def _same(value: object, wanted: Scalar) -> bool:
    return _kind(value) == _kind(wanted) and value == wanted


def _equals_any(value: object, wanted: Sequence[Scalar]) -> bool:
    """Mongo equality: the value, or when it is an array any element, is in ``wanted``."""
    if any(_same(value, w) for w in wanted):
        return True
    if isinstance(value, list | tuple):
        return any(_same(element, w) for element in value for w in wanted)
    return False


def _in_range(value: object, op: str, bound: Scalar) -> bool:
    kind = _kind(bound)
    if _kind(value) != kind or kind not in ("number", "string"):
        return False
    a: Any = value
    b: Any = bound
    if op == "$gt":
        return bool(a > b)
    if op == "$gte":
        return bool(a >= b)
    if op == "$lt":
        return bool(a < b)
    return bool(a <= b)


def matches(f: Filter, payload: dict[str, Any]) -> bool:
    """Whether ``payload`` satisfies ``f``: the reference the SQL compilers follow."""
    if isinstance(f, And):
        return all(matches(item, payload) for item in f.items)
    if isinstance(f, Or):
        return any(matches(item, payload) for item in f.items)
    found, value = _resolve(payload, f.path)
    if isinstance(f, Exists):
        return found == f.present
    if isinstance(f, In):
        hit = found and _equals_any(value, f.values)
        return hit if f.op == "$in" else not hit
    if f.op in ("$eq", "$ne"):
        hit = found and _equals_any(value, (f.value,))
        return hit if f.op == "$eq" else not hit
    return found and _in_range(value, f.op, f.value)


# --------------------------------------------------------------------------- SQL building


@dataclass(frozen=True, slots=True)
class _Sql:
    """A piece of SQL text with its positional parameters, in order."""

    text: str
    params: tuple[object, ...] = ()


def _sql(*parts: str | _Sql) -> _Sql:
    """Concatenate text and fragments, keeping parameters in textual order."""
    texts: list[str] = []
    params: list[object] = []
    for part in parts:
        if isinstance(part, str):
            texts.append(part)
        else:
            texts.append(part.text)
            params.extend(part.params)
    return _Sql("".join(texts), tuple(params))


def _join(sep: str, pieces: Iterable[_Sql]) -> _Sql:
    items = list(pieces)
    out: list[str | _Sql] = []
    for i, piece in enumerate(items):
        if i:
            out.append(sep)
        out.append(piece)
    return _sql(*out)


def _tpl(template: str, **parts: str | _Sql) -> _Sql:
    """Fill ``{name}`` slots with text or fragments; ``{{`` and ``}}`` are literal braces."""
    pieces: list[str | _Sql] = []
    for literal, name, _spec, _conversion in string.Formatter().parse(template):
        pieces.append(literal)
        if name is not None:
            pieces.append(parts[name])
    return _sql(*pieces)


def _params(marker: str, values: Sequence[object]) -> _Sql:
    """``marker`` once per value, comma-separated, with the values as parameters."""
    return _Sql(", ".join(marker for _ in values), tuple(values))


def _compile(
    f: Filter,
    leaf: Callable[[Compare | In | Exists], _Sql],
    negate: Callable[[_Sql], _Sql],
) -> _Sql:
    """Compile And/Or structure, delegating leaves; negative leaves via ``negate``."""
    if isinstance(f, And | Or):
        sep = " AND " if isinstance(f, And) else " OR "
        pieces = [_compile(item, leaf, negate) for item in f.items]
        if not pieces:  # only hand-built ASTs: parse never makes an empty And/Or
            return _Sql("(1 = 1)" if isinstance(f, And) else "(1 = 0)")
        # SQLite parses "a AND b AND c ..." into a chain and caps expression depth
        # at 1000, which a filter of 1000 conditions would reach: group by eights.
        while len(pieces) > 8:
            pieces = [
                _sql("(", _join(sep, pieces[i : i + 8]), ")") for i in range(0, len(pieces), 8)
            ]
        return _sql("(", _join(sep, pieces), ")")
    if isinstance(f, Exists):
        positive = leaf(Exists(f.path, True))
        return positive if f.present else negate(positive)
    if isinstance(f, In):
        positive = leaf(In(f.path, "$in", f.values))
        return positive if f.op == "$in" else negate(positive)
    if f.op == "$ne":
        return negate(leaf(Compare(f.path, "$eq", f.value)))
    return leaf(f)


def _split_values(values: Iterable[Scalar]) -> tuple[list[str], list[int | float], list[str]]:
    """Group values as (constant JSON type names, numbers, strings), deduplicated."""
    consts: list[str] = []
    numbers: list[int | float] = []
    strings: list[str] = []
    for v in values:
        if v is None or isinstance(v, bool):
            name = "null" if v is None else ("true" if v else "false")
            if name not in consts:
                consts.append(name)
        elif isinstance(v, str):
            if v not in strings:
                strings.append(v)
        elif not any(type(n) is type(v) and n == v for n in numbers):
            numbers.append(v)
    return consts, numbers, strings


# --------------------------------------------------------------------------- SQLite

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

    type: _Sql
    value: _Sql
    elements: _Sql
    wrap: Callable[[_Sql], _Sql]


def _sqlite_path(segments: Sequence[str]) -> _Sql:
    return _Sql("?", ("$" + "".join(f'."{segment}"' for segment in segments),))


def _sqlite_plain_node(doc: _Sql, path: Sequence[str], wrap: Callable[[_Sql], _Sql]) -> _SqliteNode:
    json_path = _sqlite_path(path)
    return _SqliteNode(
        type=_tpl("json_type({d}, {p})", d=doc, p=json_path),
        value=_tpl("json_extract({d}, {p})", d=doc, p=json_path),
        elements=_tpl("json_each({d}, {p})", d=doc, p=json_path),
        wrap=wrap,
    )


def _sqlite_node(column: str, path: tuple[str, ...]) -> _SqliteNode:
    odd = [i for i, segment in enumerate(path) if not _SQLITE_PLAIN_KEY(segment)]
    if not odd:
        return _sqlite_plain_node(_Sql(column), path, lambda predicate: predicate)
    # Walk from the value at the plain lead (a json_extract path) one key at a
    # time with json_each, in a recursive CTE: constant-size SQL whatever the
    # path's length, and no join for the planner to order.
    lead, keys = path[: odd[0]], path[odd[0] :]
    if lead:
        start = _tpl(
            "SELECT 0, json_type({c}, {p}), json_extract({c}, {p})",
            c=column,
            p=_sqlite_path(lead),
        )
    else:
        start = _Sql(f"SELECT 0, 'object', {column}")

    def wrap(predicate: _Sql) -> _Sql:
        return _tpl(
            "EXISTS (WITH RECURSIVE _sg_w(depth, type, value) AS ({start} UNION ALL"
            " SELECT _sg_w.depth + 1, _sg_k.type, _sg_k.value FROM _sg_w, json_each(CASE"
            " WHEN _sg_w.type = 'object' THEN _sg_w.value ELSE '{{}}' END) AS _sg_k"
            " WHERE _sg_k.key = json_extract({keys}, '$[' || _sg_w.depth || ']'))"
            " SELECT 1 FROM _sg_w WHERE _sg_w.depth = {depth} AND {pred})",
            start=start,
            keys=_Sql("?", (json.dumps(keys, ensure_ascii=False),)),
            depth=_Sql("?", (len(keys),)),
            pred=predicate,
        )

    return _SqliteNode(
        type=_Sql("_sg_w.type"),
        value=_Sql("_sg_w.value"),
        elements=_Sql("json_each(CASE WHEN _sg_w.type = 'array' THEN _sg_w.value ELSE '[]' END)"),
        wrap=wrap,
    )


def _sqlite_scalar_in(type_: _Sql, value: _Sql, values: Sequence[Scalar]) -> _Sql:
    """The value (a scalar, not an array's elements) equals one of ``values``."""
    consts, numbers, strings = _split_values(values)
    parts: list[_Sql] = []
    if consts:
        names = ", ".join(f"'{name}'" for name in consts)
        parts.append(_tpl("{t} IN ({names})", t=type_, names=names))
    if numbers:
        parts.append(
            _tpl(
                "({t} IN ('integer', 'real') AND {v} IN ({p}))",
                t=type_,
                v=value,
                p=_params("?", numbers),
            )
        )
    if strings:
        parts.append(
            _tpl("({t} = 'text' AND {v} IN ({p}))", t=type_, v=value, p=_params("?", strings))
        )
    return _sql("(", _join(" OR ", parts), ")")


def _sqlite_leaf(column: str, f: Compare | In | Exists) -> _Sql:
    node = _sqlite_node(column, f.path)
    if isinstance(f, Exists):
        return node.wrap(_tpl("{t} IS NOT NULL", t=node.type))
    if isinstance(f, In) or f.op == "$eq":
        values = f.values if isinstance(f, In) else (f.value,)
        if not values:
            return _Sql("0")
        return node.wrap(
            _tpl(
                "({scalar} OR ({t} = 'array' AND EXISTS"
                " (SELECT 1 FROM {elements} AS _sg_e WHERE {element})))",
                scalar=_sqlite_scalar_in(node.type, node.value, values),
                t=node.type,
                elements=node.elements,
                element=_sqlite_scalar_in(_Sql("_sg_e.type"), _Sql("_sg_e.value"), values),
            )
        )
    if not _orderable(f.value):
        return _Sql("0")
    return node.wrap(
        _tpl(
            "({t} {kinds} AND {v} {op} {bound})",
            t=node.type,
            kinds="= 'text'" if isinstance(f.value, str) else "IN ('integer', 'real')",
            v=node.value,
            op=_RANGE_SQL[f.op],
            bound=_Sql("?", (f.value,)),
        )
    )


def to_sqlite(f: Filter, column: str = "payload") -> tuple[str, list[object]]:
    """Compile ``f`` to a SQLite (3.40+) WHERE fragment and its ``?`` parameters.

    ``column`` is SQL text naming a TEXT column of JSON objects; it comes from
    code, never from a client. Every value and JSON path is a parameter.
    """
    out = _compile(
        f,
        lambda leaf: _sqlite_leaf(column, leaf),
        lambda positive: _sql("NOT COALESCE(", positive, ", 0)"),
    )
    return out.text, list(out.params)


# --------------------------------------------------------------------------- PostgreSQL

# PostgreSQL's #> treats a path element as an array index when the value there is
# an array and the element parses as an integer (strtol: blanks, sign, digits),
# which our dotted paths must never do; such steps get an "is an object" guard.
_PG_INDEX_LIKE = re.compile(r"[ \t\n\v\f\r]*[+-]?[0-9]+").fullmatch


def _pg_path(column: str, path: tuple[str, ...], operator: str = "#>") -> _Sql:
    return _Sql(f"({column} {operator} %s::text[])", (list(path),))


def _pg_guards(column: str, path: tuple[str, ...]) -> list[_Sql]:
    return [
        _tpl("jsonb_typeof({parent}) = 'object'", parent=_pg_path(column, path[:i]))
        for i in range(1, len(path))
        if _PG_INDEX_LIKE(path[i])
    ]


def _pg_document(path: tuple[str, ...], value: object) -> str:
    doc: object = value
    for segment in reversed(path):
        doc = {segment: doc}
    return json.dumps(doc, ensure_ascii=False, allow_nan=False)


def _pg_leaf(column: str, f: Compare | In | Exists) -> _Sql:
    target = _pg_path(column, f.path)
    if isinstance(f, Exists):
        check = _tpl("{x} IS NOT NULL", x=target)
    elif isinstance(f, In) or f.op == "$eq":
        return _pg_equals_any(column, f.path, f.values if isinstance(f, In) else (f.value,))
    elif not _orderable(f.value):
        return _Sql("FALSE")
    elif isinstance(f.value, str):
        # Text order must be code-point order, as in Python and SQLite: collation "C".
        check = _tpl(
            """jsonb_typeof({x}) = 'string' AND {text} COLLATE "C" {op} {bound}""",
            x=target,
            text=_pg_path(column, f.path, "#>>"),
            op=_RANGE_SQL[f.op],
            bound=_Sql("%s", (f.value,)),
        )
    else:
        check = _tpl(
            "jsonb_typeof({x}) = 'number' AND {x} {op} {bound}",
            x=target,
            op=_RANGE_SQL[f.op],
            bound=_Sql("%s::jsonb", (json.dumps(f.value, allow_nan=False),)),
        )
    return _sql("(", _join(" AND ", [*_pg_guards(column, f.path), check]), ")")


def _pg_equals_any(column: str, path: tuple[str, ...], values: Sequence[Scalar]) -> _Sql:
    """Mongo equality by containment, which never indexes arrays and a GIN index serves.

    ``{"a": v}`` is "a equals v" and ``{"a": [v]}`` is "a is an array holding v".
    """
    docs: list[str] = []
    for v in values:
        docs += [_pg_document(path, v), _pg_document(path, [v])]
    if not docs:
        return _Sql("FALSE")
    if len(docs) == 2:
        return _tpl(
            "({c} @> {a} OR {c} @> {b})",
            c=column,
            a=_Sql("%s::jsonb", (docs[0],)),
            b=_Sql("%s::jsonb", (docs[1],)),
        )
    return _tpl("({c} @> ANY ({docs}))", c=column, docs=_Sql("%s::jsonb[]", (docs,)))


def to_postgres(f: Filter, column: str = "payload") -> tuple[str, list[object]]:
    """Compile ``f`` to a PostgreSQL WHERE fragment and its psycopg 3 ``%s`` parameters.

    ``column`` is SQL text naming a JSONB column; it comes from code, never from
    a client. Values travel as JSON text or text, paths as ``text[]``.
    """
    out = _compile(
        f,
        lambda leaf: _pg_leaf(column, leaf),
        lambda positive: _sql("NOT COALESCE(", positive, ", FALSE)"),
    )
    return out.text, list(out.params)


# --------------------------------------------------------------------------- cache keys


def _canonical_obj(f: Filter) -> dict[str, Any]:
    """A normalized filter object: logical operators flattened, sets sorted."""
    if isinstance(f, And | Or):
        key = "$and" if isinstance(f, And) else "$or"
        children: dict[str, dict[str, Any]] = {}
        for item in f.items:
            obj = _canonical_obj(item)
            nested = obj.get(key) if len(obj) == 1 else None
            for child in nested if nested is not None else [obj]:
                children.setdefault(_dump(child), child)
        if len(children) == 1:
            return next(iter(children.values()))
        if not children and isinstance(f, And):
            return {}
        return {key: [children[k] for k in sorted(children)]}
    name = ".".join(f.path)
    if isinstance(f, Exists):
        return {name: {"$exists": f.present}}
    if isinstance(f, In):
        unique = {_dump(v): v for v in f.values}
        return {name: {f.op: [unique[k] for k in sorted(unique)]}}
    return {name: {f.op: f.value}}


def _dump(obj: object) -> str:
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def canonical(f: Filter | None) -> str:
    """A stable string for ``f``, equal for filters that differ only in order.

    The string is itself a filter in the request language; ``"{}"`` is no filter.
    """
    return "{}" if f is None else _dump(_canonical_obj(f))
