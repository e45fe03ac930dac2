"""Parse a decoded JSON filter into the AST, or raise ``FilterError``.

Errors name the JSON path of the offending part (``filter.$and[1].price.$gt``),
rooted at the ``field`` the caller passes. Besides shape, parsing enforces what
every backend can store: 64-bit integers, finite numbers, strings without NUL
characters or lone surrogates, and the ``MAX_DEPTH`` and ``MAX_CONDITIONS`` limits.
"""

from __future__ import annotations

import math

from spyglass.errors import FilterError
from spyglass.filters.ast import (
    MAX_CONDITIONS,
    MAX_DEPTH,
    And,
    Compare,
    CompareOp,
    Exists,
    Filter,
    In,
    Or,
    Scalar,
    json_kind,
    orderable,
)

_INT_MIN = -(2**63)
_INT_MAX = 2**63 - 1

_RANGE_OPS: dict[str, CompareOp] = {"$gt": "$gt", "$gte": "$gte", "$lt": "$lt", "$lte": "$lte"}


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
    kind = json_kind(value)
    if kind == "null":
        return kind
    if kind == "other":
        return type(value).__name__
    return ("an " if kind[0] in "aeiou" else "a ") + kind


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
        if not orderable(value):
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
