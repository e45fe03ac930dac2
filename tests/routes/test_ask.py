"""Question answering over HTTP: /ask (extractive and through an LLM), /chat, /build."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from spyglass.app import create_app
from spyglass.errors import ConfigError
from tests import conftest
from tests.fake_openai import Answer, FakeOpenAI, Status, fake_openai_fixture  # noqa: F401
from tests.routes.helpers import problem

PARAGRAPHS = conftest.SHARED_DATA / "rag_squad_normans" / "paragraphs_txt"


@asynccontextmanager
async def serve(tmp_path: Path, **settings: Any) -> AsyncIterator[httpx.AsyncClient]:
    app: FastAPI = create_app(conftest.test_settings(tmp_path / "data", **settings))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://spyglass", timeout=60
        ) as client:
            yield client


def documents(folder: Path, names: tuple[str, ...] = ("normans_p00", "normans_p01")) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / f"{name}.txt").write_text((PARAGRAPHS / f"{name}.txt").read_text())
    return folder


def sources(folder: Path, collection: str = "docs") -> tuple[dict[str, object], ...]:
    return ({"path": str(folder), "collection": collection},)


async def built(client: httpx.AsyncClient) -> dict[str, Any]:
    for _ in range(600):
        state: dict[str, Any] = (await client.get("/build")).json()
        if state["status"] in {"done", "failed"}:
            return state
        await asyncio.sleep(0.05)
    raise AssertionError("the build did not finish")


def events(text: str) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for block in text.strip().split("\n\n"):
        name, data = "message", ""
        for line in block.splitlines():
            if line.startswith("event: "):
                name = line[len("event: ") :]
            elif line.startswith("data: "):
                data += line[len("data: ") :]
        found.append((name, json.loads(data)))
    return found


async def test_extractive_answer_cites_the_sentence_it_quotes(tmp_path: Path) -> None:
    folder = documents(tmp_path / "docs")
    async with serve(tmp_path, sources=sources(folder)) as client:
        assert (await built(client))["status"] == "done"
        r = await client.post(
            "/collections/docs/ask", json={"question": "In what country is Normandy located?"}
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["model"] == "extractive" and not body["abstained"]
        assert "France" in body["answer"]
        assert body["sources"] and body["sources"][0]["number"] == 1
        for citation in body["citations"]:
            text = (folder / citation["source"]).read_text()
            assert text[citation["start"] : citation["end"]] == citation["text"]
            assert citation["text"] in body["answer"]


async def test_an_unsupported_question_is_not_answered(tmp_path: Path) -> None:
    folder = documents(tmp_path / "docs")
    async with serve(tmp_path, sources=sources(folder)) as client:
        await built(client)
        r = await client.post(
            "/collections/docs/ask",
            json={"question": "What is the boiling point of liquid nitrogen in kelvin?"},
        )
        body = r.json()
        assert r.status_code == 200 and body["abstained"], body
        assert body["answer"] == "" and body["citations"] == [] and body["reason"]


async def test_extractive_answers_stream_as_server_sent_events(tmp_path: Path) -> None:
    folder = documents(tmp_path / "docs")
    async with serve(tmp_path, sources=sources(folder)) as client:
        await built(client)
        r = await client.post(
            "/collections/docs/ask",
            json={"question": "In what country is Normandy located?", "stream": True},
        )
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        seen = events(r.text)
        assert [name for name, _ in seen] == ["sources", "message", "done"]
        assert "France" in seen[1][1]["delta"]
        assert seen[2][1]["answer"] == seen[1][1]["delta"] and seen[2][1]["citations"]


async def test_bad_questions_are_problems(tmp_path: Path) -> None:
    async with serve(tmp_path) as client:
        problem(await client.post("/collections/nope/ask", json={"question": "why?"}), 404)
        await client.put("/collections/c", json={"encoder": "text"})
        problem(await client.post("/collections/c/ask", json={"question": ""}), 422, "question")
        problem(await client.post("/collections/c/ask", json={"question": "a", "k": 50}), 422, "k")
        problem(
            await client.post("/collections/c/ask", json={"question": "a", "mode": "x"}),
            422,
            "mode",
        )


async def test_an_llm_answers_from_numbered_sources(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    folder = documents(tmp_path / "docs")
    settings = {"sources": sources(folder), "llm_base_url": fake_openai.base_url}
    settings |= {"llm_api_key": "sk-test-key", "llm_model": "fake-gpt"}
    async with serve(tmp_path, **settings) as client:
        await built(client)
        fake_openai.script(Answer("Normandy is in France [2]."))
        r = await client.post(
            "/collections/docs/ask", json={"question": "Where is Normandy?", "k": 3}
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["answer"] == "Normandy is in France [2]." and body["model"] == "fake-gpt"
        assert [c["number"] for c in body["citations"]] == [2]
        assert body["citations"][0]["id"] == body["sources"][1]["id"]
        sent = fake_openai.completions[-1]
        assert sent.headers["authorization"] == "Bearer sk-test-key"
        prompt = sent.messages[-1]["content"]
        assert "Question: Where is Normandy?" in prompt and "[1] (" in prompt and "[3] (" in prompt
        # the same question again: the prompt cache answers, the upstream is not asked
        asked = len(fake_openai.completions)
        r = await client.post(
            "/collections/docs/ask", json={"question": "Where is Normandy?", "k": 3}
        )
        assert r.json()["answer"] == body["answer"] and len(fake_openai.completions) == asked
        metrics = (await client.get("/metrics")).text
        assert 'spyglass_llm_calls_total{outcome="ok"} 1.0' in metrics
        assert 'spyglass_llm_calls_total{outcome="cached"} 1.0' in metrics


async def test_llm_answers_stream_and_upstream_failures_are_503s(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    folder = documents(tmp_path / "docs")
    settings: dict[str, Any] = {"sources": sources(folder), "llm_base_url": fake_openai.base_url}
    settings |= {"llm_retries": 1, "llm_backoff_s": 0.01, "llm_cache": False}
    async with serve(tmp_path, **settings) as client:
        await built(client)
        fake_openai.script(Answer("It is in France [1]."))
        r = await client.post(
            "/collections/docs/ask", json={"question": "Where is Normandy?", "stream": True}
        )
        seen = events(r.text)
        assert seen[0][0] == "sources" and seen[-1][0] == "done"
        deltas = "".join(data["delta"] for name, data in seen if name == "message")
        assert deltas == "It is in France [1]." == seen[-1][1]["answer"]

        fake_openai.script(Status(429, retry_after="0"), Answer("Rouen [1]."))
        r = await client.post("/collections/docs/ask", json={"question": "Which city?"})
        assert r.status_code == 200 and r.json()["answer"] == "Rouen [1]."

        fake_openai.script(Status(500), Status(500))
        r = await client.post("/collections/docs/ask", json={"question": "Which river?"})
        problem(r, 503)
        assert r.headers["retry-after"]

        fake_openai.script(Status(500), Status(500))
        r = await client.post(
            "/collections/docs/ask", json={"question": "Which sea?", "stream": True}
        )
        assert events(r.text)[-1][0] == "error"


async def test_chat_keeps_the_session_for_follow_up_questions(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    folder = documents(tmp_path / "docs")
    settings = {"sources": sources(folder), "llm_base_url": fake_openai.base_url}
    async with serve(tmp_path, **settings) as client:
        await built(client)
        fake_openai.script(Answer("The Normans [1]."), Answer("In the 10th century [1]."))
        first = await client.post("/chat", json={"query": "Who gave their name to Normandy?"})
        assert first.status_code == 200, first.text
        body = first.json()
        assert set(body) == {"query", "response", "session_id", "status", "citations"}
        assert body["status"] == "success" and body["response"] == "The Normans [1]."
        session = body["session_id"]
        second = await client.post(
            "/chat", json={"query": "When did they get it?", "session_id": session}
        )
        assert second.json()["session_id"] == session
        roles = [m["role"] for m in fake_openai.completions[-1].messages]
        assert roles == ["system", "user", "assistant", "user"]
        assert fake_openai.completions[-1].messages[2]["content"] == "The Normans [1]."
        fresh = await client.post("/chat", json={"query": "Who are they?", "session_id": "new"})
        assert [m["role"] for m in fake_openai.completions[-1].messages] == ["system", "user"]
        assert fresh.json()["session_id"] == "new"


async def test_chat_without_an_llm_answers_extractively(tmp_path: Path) -> None:
    folder = documents(tmp_path / "docs")
    async with serve(tmp_path, sources=sources(folder)) as client:
        await built(client)
        r = await client.post("/chat", json={"query": "In what country is Normandy located?"})
        body = r.json()
        assert body["status"] == "success" and "France" in body["response"]
        r = await client.post("/chat", json={"query": "How do rockets reach orbit?"})
        assert r.json()["status"] == "no_answer"
        assert r.json()["response"] == "I cannot answer that from the documents."
        assert r.json()["citations"] == []


async def test_sources_are_ingested_before_ready_and_rebuilt_on_demand(tmp_path: Path) -> None:
    folder = documents(tmp_path / "docs")
    async with serve(tmp_path, sources=sources(folder)) as client:
        state = await built(client)
        assert state["sources"][0]["files"] == 2 and state["sources"][0]["skipped_files"] == 0
        ready = await client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["checks"]["sources"] == "done"
        (folder / "normans_p01.txt").write_text("Rollo was the first ruler of Normandy.")
        r = await client.post("/build")
        assert r.status_code == 202
        state = await built(client)
        assert state["sources"][0]["skipped_files"] == 1 and state["sources"][0]["items"] == 1
        hits = (
            await client.post("/collections/docs/search", json={"text": "Rollo ruler", "k": 1})
        ).json()["hits"]
        assert hits[0]["id"] == "normans_p01.txt#0"
    # a second start finds every file unchanged
    async with serve(tmp_path, sources=sources(folder)) as client:
        state = await built(client)
        assert state["sources"][0]["skipped_files"] == 2 and state["sources"][0]["items"] == 0


def test_sources_that_do_not_exist_stop_the_start(tmp_path: Path) -> None:
    missing = conftest.test_settings(tmp_path, sources=sources(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match="does not exist"):
        create_app(missing)
    folder = documents(tmp_path / "docs")
    wrong = ({"path": str(folder), "types": ["exe"]},)
    with pytest.raises(ConfigError, match="unknown document type"):
        create_app(conftest.test_settings(tmp_path, sources=wrong))
