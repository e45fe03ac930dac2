"""The RAG Engine's way to run: ``spyglass serve --config FILE`` with document sources,
two real workers, an OpenAI-compatible LLM served by the test, then /chat and /ask."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests import conftest
from tests.e2e.server import running
from tests.fake_openai import Answer, FakeOpenAI, fake_openai_fixture  # noqa: F401

pytestmark = pytest.mark.e2e

PARAGRAPHS = conftest.SHARED_DATA / "rag_squad_normans" / "paragraphs_txt"


def test_serve_with_a_config_ingests_before_ready_and_answers(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    docs = tmp_path / "docs"
    (docs / "nested").mkdir(parents=True)
    for name in ("normans_p00", "normans_p01", "normans_p02"):
        (docs / f"{name}.txt").write_text((PARAGRAPHS / f"{name}.txt").read_text())
    (docs / "nested" / "skipped.txt").write_text("Not read: the source is not recursive.")
    config = tmp_path / "config.toml"
    config.write_text(
        f'default_collection = "normans"\n'
        f'llm_base_url = "{fake_openai.base_url}"\n'
        f"[[sources]]\n"
        f'path = "{docs}"\n'
        f'types = ["txt"]\n'
        f"recursive = false\n"
    )
    env = {"SPYGLASS_CONFIG": str(config)}
    with running(tmp_path / "data", workers=2, log=tmp_path / "server.log", env=env) as server:
        # start() returned once /readyz said ready: the sources are in, on any worker
        for _ in range(4):
            ready = httpx.get(server.url + "/readyz").json()
            assert ready["checks"]["sources"] == "done"
        info = httpx.get(server.url + "/collections/normans").json()
        assert info["count"] >= 3 and info["encoder"] == "text"
        fake_openai.script(
            *(Answer("The Normans gave their name to Normandy [1].") for _ in range(2))
        )
        r = httpx.post(
            server.url + "/chat", json={"query": "Who gave their name to Normandy?"}, timeout=60
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["status"] == "success" and "[1]" in body["response"]
        assert body["citations"][0]["source"].startswith("normans_p0")
        prompt = fake_openai.completions[-1].messages[-1]["content"]
        assert "Who gave their name to Normandy?" in prompt
        assert "Not read" not in prompt
        hits = httpx.post(
            server.url + "/collections/normans/search",
            json={"text": "Not read: the source is not recursive", "mode": "keyword"},
        ).json()["hits"]
        assert all(not h["id"].startswith("nested/") for h in hits)
    log = (tmp_path / "server.log").read_text()
    assert log.count("3 files (3 new or changed") == 1  # one worker ingested, the other skipped
