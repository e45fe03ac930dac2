"""A canonical string for a filter, equal for filters that differ only in order: cache keys."""

from __future__ import annotations

import json
from typing import Any

from spyglass.filters.ast import And, Exists, Filter, In, Or


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
