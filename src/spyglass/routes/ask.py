"""Question answering: ``/collections/{name}/ask``, the RAG Engine's ``/chat``, ``/build``.

``ask`` answers one question over one collection, as JSON or streamed as server-sent
events. ``chat`` does the same over the ``default_collection`` with a session that
remembers the last turns, in the RAG Engine's request and response shape. ``build``
re-ingests the configured document sources (admin only).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any, Literal

import orjson
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field

from spyglass.auth import tenancy
from spyglass.errors import Conflict, ProblemError
from spyglass.ingest.sources import SourceBuilder
from spyglass.rag.ask import Asker, Question, Reply, source_json
from spyglass.rag.sessions import Sessions, Turn
from spyglass.routes.deps import run
from spyglass.schema import Body
from spyglass.stores.base import Hit

router = APIRouter(tags=["ask"])

MAX_QUESTION_CHARS = 4000
NO_ANSWER = "I cannot answer that from the documents."


class AskIn(Body):
    question: str = Field(min_length=1, max_length=MAX_QUESTION_CHARS)
    k: int = Field(5, ge=1, le=20, description="Passages to retrieve and answer from.")
    stream: bool = Field(
        False, description="Stream the answer as server-sent events (see docs/ask.md)."
    )
    filter: dict[str, Any] | None = Field(None, description="Payload filter of the retrieval.")
    mode: Literal["vector", "keyword", "hybrid"] | None = Field(
        None, description="Search mode of the retrieval; omitted: the collection's default."
    )


class CitationOut(BaseModel):
    number: int
    id: str
    source: str | None = None
    page: int | None = None
    start: int
    end: int
    text: str


class AskOut(BaseModel):
    answer: str
    citations: list[CitationOut]
    abstained: bool = Field(description="True when the passages did not support an answer.")
    reason: str = ""
    model: str = Field(description='The LLM that answered, or "extractive".')
    sources: list[CitationOut] = Field(description="Every passage retrieved, numbered.")
    took_ms: float


class ChatIn(Body):
    query: str = Field(min_length=1, max_length=MAX_QUESTION_CHARS)
    session_id: str | None = Field(
        None,
        min_length=1,
        max_length=128,
        description="The conversation to continue; omitted: a new one, whose id is returned.",
    )


class ChatOut(BaseModel):
    query: str
    response: str
    session_id: str
    status: Literal["success", "no_answer"]
    citations: list[CitationOut]


class BuildOut(BaseModel):
    status: str
    started_at: float | None = None
    finished_at: float | None = None
    error: str | None = None
    sources: list[dict[str, Any]] = Field(default_factory=list)


def asker(request: Request) -> Asker:
    value: Asker = request.app.state.asker
    return value


@router.post("/collections/{name}/ask", response_model=AskOut)
async def ask(name: str, body: AskIn, request: Request) -> Response:
    """Answer a question from the collection's passages, with numbered citations; with
    ``stream`` true, as server-sent events."""
    started = time.perf_counter()
    question = Question(body.question, body.k, body.filter, body.mode)
    hits = await run(request, asker(request).retrieve, name, question)
    if body.stream:
        return _event_stream(request, name, body.question, hits, started)
    reply = await _answer(request, name, body.question, hits)
    return JSONResponse(_ask_json(reply, started))


@router.post("/chat", response_model=ChatOut)
async def chat(body: ChatIn, request: Request) -> ChatOut:
    """The RAG Engine's chat: answer ``query`` over the default collection, remembering
    the session's last turns for follow-up questions."""
    sessions: Sessions = request.app.state.sessions
    session_id = body.session_id or uuid.uuid4().hex
    tenant = tenancy.principal_of(request).tenant
    kept = f"{tenant}:{session_id}"  # one tenant never continues another's conversation
    history = await run(request, sessions.history, kept)
    collection = tenancy.collection_for(request, asker(request).engine.settings.default_collection)
    retrieval = body.query
    if history and asker(request).llm is None:
        # no model to resolve "they" or "it": the last question lends its words
        retrieval = f"{history[-1].query} {body.query}"
    hits = await run(request, asker(request).retrieve, collection, Question(retrieval))
    reply = await _answer(request, collection, body.query, hits, history)
    await run(request, sessions.add, kept, Turn(body.query, reply.answer))
    return ChatOut(
        query=body.query,
        response=reply.answer or NO_ANSWER,
        session_id=session_id,
        status="no_answer" if reply.abstained else "success",
        citations=[CitationOut(**c) for c in reply.citations],
    )


@router.post("/build", response_model=BuildOut, status_code=202)
async def build(request: Request) -> BuildOut:
    """Ingest the configured document sources again, in the background (unchanged files
    are skipped); ``GET /build`` shows how it went. 409 while a build runs."""
    builder: SourceBuilder = request.app.state.sources
    if not builder.start():
        raise Conflict("a build of the document sources is already running", field="build")
    return _build_out(builder)


@router.get("/build", response_model=BuildOut)
async def build_status(request: Request) -> BuildOut:
    """How the last build of the document sources went."""
    return _build_out(request.app.state.sources)


async def _answer(
    request: Request,
    collection: str,
    question: str,
    hits: list[Hit],
    history: Sequence[Turn] = (),
) -> Reply:
    answers = asker(request)
    if answers.llm is None:
        return await run(request, answers.extract, collection, question, hits)
    return await answers.generate(question, hits, history)


def _event_stream(
    request: Request, collection: str, question: str, hits: list[Hit], started: float
) -> StreamingResponse:
    """``event: sources`` (the passages), ``data`` events of text deltas, then ``event:
    done`` with the finished answer; a failure midway ends with ``event: error``."""
    answers = asker(request)

    async def events() -> AsyncIterator[bytes]:
        sources = [source_json(n, hit) for n, hit in enumerate(hits, start=1)]
        yield _sse({"sources": sources}, "sources")
        try:
            reply: Reply | None = None
            if answers.llm is None:
                reply = await run(request, answers.extract, collection, question, hits)
                if reply.answer:
                    yield _sse({"delta": reply.answer})
            else:
                async for part in answers.stream(question, hits):
                    if isinstance(part, Reply):
                        reply = part
                    else:
                        yield _sse({"delta": part})
        except ProblemError as exc:
            yield _sse({"status": exc.status, "title": exc.title, "detail": exc.detail}, "error")
            return
        assert reply is not None
        yield _sse(_ask_json(reply, started), "done")

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


def _sse(data: dict[str, Any], event: str | None = None) -> bytes:
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + orjson.dumps(data) + b"\n\n"


def _ask_json(reply: Reply, started: float) -> dict[str, Any]:
    return {
        "answer": reply.answer,
        "citations": reply.citations,
        "abstained": reply.abstained,
        "reason": reply.reason,
        "model": reply.model,
        "sources": reply.sources,
        "took_ms": round((time.perf_counter() - started) * 1000, 3),
    }


def _build_out(builder: SourceBuilder) -> BuildOut:
    state = builder.state
    return BuildOut(
        status=state.status,
        started_at=state.started_at,
        finished_at=state.finished_at,
        error=state.error,
        sources=[
            {
                "collection": r.collection,
                "files": r.files,
                "skipped_files": r.skipped_files,
                "items": r.items,
                "deleted": r.deleted,
                "version": r.version,
            }
            for r in state.reports
        ],
    )
