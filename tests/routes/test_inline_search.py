"""Short vector searches run on the event loop; everything else on threads."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from spyglass.app import create_app
from spyglass.errors import ProblemError
from spyglass.middleware import admission
from spyglass.schema import SearchIn
from tests.conftest import test_settings as make_settings
from tests.routes.helpers import create

VECTORS = {f"v{i}": [float(i), 1.0, 0.0, float(i % 3)] for i in range(20)}

QUERY = {"vector": [4.1, 1.0, 0.0, 1.0], "k": 3}


@asynccontextmanager
async def serving(
    tmp_path: Path, **settings: object
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """An app with a collection ``plain`` of ``VECTORS`` (payload ``shop: a``), and a client."""
    app = create_app(make_settings(tmp_path / "data", **settings))
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://spyglass"
        ) as client:
            await create(client, "plain", dim=4, metric="l2")
            items = [{"id": k, "vector": v, "payload": {"shop": "a"}} for k, v in VECTORS.items()]
            r = await client.post("/collections/plain/items", json={"items": items})
            assert r.status_code == 200, r.text
            yield app, client


async def test_a_plain_vector_search_runs_on_the_loop_and_answers_as_a_thread_would(
    tmp_path: Path,
) -> None:
    async with serving(tmp_path) as (app, client):
        gate = app.state.admission.gates["search"]
        assert gate.executor is not None
        inline = await client.post("/collections/plain/search", json=QUERY)
        assert len(gate.executor._threads) == 0  # no thread of the lane ever started
        await asyncio.sleep(0)  # the slot is given back on the loop's next turn
        assert gate.lane.in_flight == 0
        assert gate.lane.service_s is not None  # its time still counted
        # a filter sends the same search to a thread; the answer must not change
        threaded = await client.post(
            "/collections/plain/search", json={**QUERY, "filter": {"shop": "a"}}
        )
        assert len(gate.executor._threads) == 1
    assert inline.status_code == 200, inline.text
    assert [h["id"] for h in inline.json()["hits"]] == ["v4", "v5", "v3"]
    assert threaded.status_code == 200, threaded.text
    assert threaded.json()["hits"] == inline.json()["hits"]


async def test_only_short_local_vector_searches_of_plain_collections_run_inline(
    tmp_path: Path,
) -> None:
    async with serving(tmp_path) as (app, client):
        await create(client, "colors", encoder="color")
        await create(client, "unseen", dim=4, metric="l2")
        engine = app.state.engine
        vector = [1.0, 0.0, 0.0, 0.0]
        assert not engine.runs_inline("unseen", SearchIn(vector=vector))  # not looked up yet
        engine.get_collection("unseen")
        assert engine.runs_inline("unseen", SearchIn(vector=vector))
        engine.get_collection("colors")
        assert engine.runs_inline("plain", SearchIn(vector=vector))
        assert engine.runs_inline("plain", SearchIn(vector=vector, k=100, ef=512))
        for slow in (
            SearchIn(vector=vector, filter={"a": 1}),
            SearchIn(vector=vector, exact=True),
            SearchIn(vector=vector, k=101),
            SearchIn(vector=vector, ef=513),
            SearchIn(text="a text query"),
        ):
            assert not engine.runs_inline("plain", slow), slow
        assert not engine.runs_inline("colors", SearchIn(vector=[0.0] * 1152))  # reranks


async def test_with_a_shared_cache_no_search_runs_inline(tmp_path: Path, redis_url: str) -> None:
    async with serving(tmp_path, redis_url=redis_url) as (app, _):
        engine = app.state.engine
        engine.get_collection("plain")
        assert not engine.runs_inline("plain", SearchIn(vector=[1.0, 0.0, 0.0, 0.0]))


@pytest.mark.parametrize("slice_s, waited", [(0.0, 7), (60.0, 0)])
async def test_searches_that_arrive_together_run_back_to_back_for_one_slice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, slice_s: float, waited: int
) -> None:
    monkeypatch.setattr(admission, "INLINE_SLICE_S", slice_s)
    async with serving(tmp_path) as (app, client):
        await client.post("/collections/plain/search", json=QUERY)  # learns the collection
        await asyncio.sleep(0)  # its slot is back
        lane = app.state.admission.gates["search"].lane
        lane.stats.delays.clear()
        answers = await asyncio.gather(
            *(client.post("/collections/plain/search", json=QUERY) for _ in range(8))
        )
    assert all(answer.status_code == 200 for answer in answers)
    # past its slice the loop hands the slot back on its next turn, so those behind
    # wait at admission (where the lane sees them); within it they run back to back
    assert len(lane.stats.delays) == 8
    assert sum(delay > 0 for delay in lane.stats.delays) == waited


async def test_the_short_way_of_a_plain_search_finds_what_the_general_path_finds(
    tmp_path: Path,
) -> None:
    async with serving(tmp_path, cache_max_bytes=0) as (app, client):
        engine = app.state.engine
        for query in (
            SearchIn(vector=[4.1, 1.0, 0.0, 1.0], k=3),
            SearchIn(vector=[0.0, 1.0, 0.0, 2.0], k=20, ef=64),
            SearchIn(vector=[9.0, 1.0, 0.0, 0.0], k=1, mode="vector", after_version=1),
        ):
            short = engine.search_plain("plain", query)
            assert short is not None and len(short) == query.k
            assert short == engine.search("plain", [query])[0]
        vector = [1.0, 0.0, 0.0, 0.0]
        for other in (  # each is the general path's to answer, errors included
            SearchIn(vector=vector, filter={"shop": "a"}),
            SearchIn(vector=vector, exact=True),
            SearchIn(vector=vector, mode="keyword"),
            SearchIn(vector=vector, k=10_000),
            SearchIn(vector=vector, weights=[1.0]),
            SearchIn(vector=vector, dominant_colors=2),
            SearchIn(vector=vector, text="both"),
            SearchIn(text="no vector"),
        ):
            assert engine.search_plain("plain", other) is None
        with pytest.raises(ProblemError) as wrong:
            engine.search_plain("plain", SearchIn(vector=[1.0, 2.0]))
        assert wrong.value.field == "vector"
