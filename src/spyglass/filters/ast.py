"""The filter AST: immutable nodes, the value types they hold, and the size limits.

``parse`` builds these from a client's JSON; ``matches``, the SQL compilers and
``canonical`` consume them. Semantics are described in the package docstring.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypeAlias

MAX_DEPTH = 32
"""Deepest allowed nesting of filter objects (the whole filter is depth 1), and the
most dotted parts a field name may have."""

MAX_CONDITIONS = 1000
"""Most conditions plus ``$in``/``$nin`` values one filter may hold."""

Scalar: TypeAlias = str | int | float | bool | None
"""A value a filter may compare against (finite floats, 64-bit ints)."""

CompareOp: TypeAlias = Literal["$eq", "$ne", "$gt", "$gte", "$lt", "$lte"]
InOp: TypeAlias = Literal["$in", "$nin"]


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


def orderable(value: Scalar) -> bool:
    """Whether ``value`` can bound a range: a number or a string, not a boolean."""
    return isinstance(value, int | float | str) and not isinstance(value, bool)


def json_kind(value: object) -> str:
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
