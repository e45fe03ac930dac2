"""Keyword queries: the words of a search text that a full-text index is asked for.

Both stores rank items by their own full-text engine (SQLite FTS5's BM25, PostgreSQL's
``ts_rank``), and both get the same terms: the lowercase words of the text, without
the commonest English function words, each asked for on its own and ranked by how
many and how rare the matches are (an OR query, as BM25 is usually run; an AND query
would find nothing for most questions). Stemming is the engines' own (FTS5's
``porter`` tokenizer, PostgreSQL's ``english`` configuration), applied to documents
and terms alike.
"""

from __future__ import annotations

import re
from typing import Final

#: Most terms one query asks for; the rest of a long text is ignored.
MAX_TERMS: Final = 64
WORD: Final = re.compile(r"\w+", re.UNICODE)
STOPWORDS: Final = frozenset(
    """a about above after again against all am an and any are as at be because been before
    being below between both but by can could did do does doing down during each few for from
    further had has have having he her here hers herself him himself his how i if in into is it
    its itself just me more most my myself no nor not now of off on once only or other our ours
    ourselves out over own same she should so some such than that the their theirs them
    themselves then there these they this those through to too under until up very was we were
    what when where which while who whom why will with would you your yours yourself
    yourselves""".split()
)


def query_terms(text: str) -> tuple[str, ...]:
    """The distinct words of ``text`` worth searching for, in order of first appearance.

    Function words are dropped unless nothing else is left ("who is who" still
    searches for "who"); so is everything past :data:`MAX_TERMS`.
    """
    kept: dict[str, None] = {}
    seen: dict[str, None] = {}  # every word, for a text of function words only
    for match in WORD.finditer(text):  # stops early: a long text is not read to its end
        word = match.group().lower()
        if word not in STOPWORDS:
            kept[word] = None
            if len(kept) == MAX_TERMS:
                break
        elif len(seen) < MAX_TERMS:
            seen[word] = None
    return tuple(kept or seen)


def fts5_match(terms: tuple[str, ...]) -> str:
    """An FTS5 MATCH expression asking for any of ``terms``, each quoted as a string
    (so no word is read as an operator or a column name)."""
    return " OR ".join('"' + term.replace('"', '""') + '"' for term in terms)


def tsquery(terms: tuple[str, ...]) -> str:
    """A ``to_tsquery`` text asking for any of ``terms``, each quoted as a lexeme."""
    return " | ".join("'" + term.replace("'", "''").replace("\\", "\\\\") + "'" for term in terms)
