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

The pieces live in submodules: ``ast`` (nodes, types, limits), ``parser``,
``evaluate`` (``matches``), ``sql`` (fragments and the compiler both dialects
share), ``sqlite``, ``postgres`` and ``canonical_form``. Import from this
package, not from them.
"""

from __future__ import annotations

from spyglass.filters.ast import (
    MAX_CONDITIONS,
    MAX_DEPTH,
    And,
    Compare,
    CompareOp,
    Exists,
    Filter,
    In,
    InOp,
    Or,
    Scalar,
)
from spyglass.filters.canonical_form import canonical
from spyglass.filters.evaluate import matches
from spyglass.filters.parser import parse
from spyglass.filters.postgres import to_postgres
from spyglass.filters.sqlite import to_sqlite

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
