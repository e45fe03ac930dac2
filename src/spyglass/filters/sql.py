"""SQL fragments with their parameters, and the dialect-neutral part of compiling.

``compile_tree`` turns And/Or structure and negation into SQL and hands each
positive leaf to a dialect (``sqlite``, ``postgres``); the fragment helpers keep
every parameter in the textual order of its placeholder.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from spyglass.filters.ast import And, Compare, Exists, Filter, In, Or, Scalar

RANGE_SQL: dict[str, str] = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
"""The SQL comparison operator of each range operator."""


@dataclass(frozen=True, slots=True)
class Sql:
    """A piece of SQL text with its positional parameters, in order."""

    text: str
    params: tuple[object, ...] = ()


def sql(*parts: str | Sql) -> Sql:
    """Concatenate text and fragments, keeping parameters in textual order."""
    texts: list[str] = []
    params: list[object] = []
    for part in parts:
        if isinstance(part, str):
            texts.append(part)
        else:
            texts.append(part.text)
            params.extend(part.params)
    return Sql("".join(texts), tuple(params))


def join(sep: str, pieces: Iterable[Sql]) -> Sql:
    items = list(pieces)
    out: list[str | Sql] = []
    for i, piece in enumerate(items):
        if i:
            out.append(sep)
        out.append(piece)
    return sql(*out)


def tpl(template: str, **parts: str | Sql) -> Sql:
    """Fill ``{name}`` slots with text or fragments; ``{{`` and ``}}`` are literal braces."""
    pieces: list[str | Sql] = []
    for literal, name, _spec, _conversion in string.Formatter().parse(template):
        pieces.append(literal)
        if name is not None:
            pieces.append(parts[name])
    return sql(*pieces)


def placeholders(marker: str, values: Sequence[object]) -> Sql:
    """``marker`` once per value, comma-separated, with the values as parameters."""
    return Sql(", ".join(marker for _ in values), tuple(values))


def compile_tree(
    f: Filter,
    leaf: Callable[[Compare | In | Exists], Sql],
    negate: Callable[[Sql], Sql],
) -> Sql:
    """Compile And/Or structure, delegating leaves; negative leaves via ``negate``."""
    if isinstance(f, And | Or):
        sep = " AND " if isinstance(f, And) else " OR "
        pieces = [compile_tree(item, leaf, negate) for item in f.items]
        if not pieces:  # only hand-built ASTs: parse never makes an empty And/Or
            return Sql("(1 = 1)" if isinstance(f, And) else "(1 = 0)")
        # SQLite parses "a AND b AND c ..." into a chain and caps expression depth
        # at 1000, which a filter of 1000 conditions would reach: group by eights.
        while len(pieces) > 8:
            pieces = [sql("(", join(sep, pieces[i : i + 8]), ")") for i in range(0, len(pieces), 8)]
        return sql("(", join(sep, pieces), ")")
    if isinstance(f, Exists):
        positive = leaf(Exists(f.path, True))
        return positive if f.present else negate(positive)
    if isinstance(f, In):
        positive = leaf(In(f.path, "$in", f.values))
        return positive if f.op == "$in" else negate(positive)
    if f.op == "$ne":
        return negate(leaf(Compare(f.path, "$eq", f.value)))
    return leaf(f)


def split_values(values: Iterable[Scalar]) -> tuple[list[str], list[int | float], list[str]]:
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
