"""The prompt an LLM answers from: numbered sources, the conversation, the question.

The model is told to answer only from the sources and to cite them as ``[n]``; the
numbers it cites become the answer's citations (:func:`cited`). When it cites none,
every source it was given is cited, since the answer came from them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from spyglass.llm.client import Message
from spyglass.rag.sessions import Turn
from spyglass.stores.base import Hit

SYSTEM = (
    "You answer questions using only the numbered sources you are given. Cite the sources"
    " that support each statement as [1], [2]. If the sources do not contain the answer, say"
    " that you cannot answer from the documents; do not guess. Answer briefly, in the"
    " language of the question."
)
CITE = re.compile(r"\[(\d{1,3})\]")


def messages(question: str, hits: Sequence[Hit], history: Sequence[Turn] = ()) -> list[Message]:
    """The chat messages asking ``question`` over ``hits``, after the earlier turns."""
    sources = "\n\n".join(
        f"[{number}] ({_label(hit)})\n{(hit.text or '').strip()}"
        for number, hit in enumerate(hits, start=1)
    )
    found: list[Message] = [{"role": "system", "content": SYSTEM}]
    for turn in history:
        found.append({"role": "user", "content": turn.query})
        found.append({"role": "assistant", "content": turn.response})
    found.append({"role": "user", "content": f"Sources:\n\n{sources}\n\nQuestion: {question}"})
    return found


def cited(answer: str, count: int) -> list[int]:
    """The source numbers (1..count) ``answer`` cites, in order of first citation; all of
    them when it cites none."""
    numbers = [int(n) for n in CITE.findall(answer) if 1 <= int(n) <= count]
    return list(dict.fromkeys(numbers)) or list(range(1, count + 1))


def _label(hit: Hit) -> str:
    payload = hit.payload
    label = str(payload.get("title") or payload.get("source") or hit.id)
    if payload.get("page") is not None:
        label += f", page {payload['page']}"
    return label
