"""The reference evaluator: what a filter means, for in-memory stores and the tests.

The SQL compilers in ``sqlite`` and ``postgres`` must agree with ``matches``
exactly; the congruence tests check that they do.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from spyglass.filters.ast import And, Exists, Filter, In, Or, Scalar, json_kind


def _resolve(payload: object, path: tuple[str, ...]) -> tuple[bool, object]:
    """Walk ``path`` through nested objects: (found, value)."""
    node = payload
    for segment in path:
        if not isinstance(node, dict) or segment not in node:
            return False, None
        node = node[segment]
    return True, node


def _same(value: object, wanted: Scalar) -> bool:
    return json_kind(value) == json_kind(wanted) and value == wanted


def _equals_any(value: object, wanted: Sequence[Scalar]) -> bool:
    """Mongo equality: the value, or when it is an array any element, is in ``wanted``."""
    if any(_same(value, w) for w in wanted):
        return True
    if isinstance(value, list | tuple):
        return any(_same(element, w) for element in value for w in wanted)
    return False


def _in_range(value: object, op: str, bound: Scalar) -> bool:
    kind = json_kind(bound)
    if json_kind(value) != kind or kind not in ("number", "string"):
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
