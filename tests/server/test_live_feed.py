"""The live page's feed: one occupancy computation per change, whatever the number of
clients, pushed to each of them, each seeing only its centres."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from pathlib import Path

import httpx2 as httpx
import pytest
from fastapi.testclient import TestClient

from server.broker import free_port
from server.domain.operators import CentreScope
from server.routes.live import HEARTBEAT_S, OccupancyFeed, Snapshot
from server.store import Store
from tests.conftest import wait_until
from tests.server.support import badge_in


def test_one_computation_per_change_reaches_every_client(tmp_path: Path) -> None:
    store = Store(tmp_path / "telecentre.db")
    for centre in ("boitron", "belleme"):
        store.create_centre(centre, centre.title())
        store.assign_device(f"{centre}-01", centre)
        store.create_member({"name": f"Membre {centre}"})

    async def scenario() -> None:
        feed = OccupancyFeed(store)
        everyone = [feed.stream(CentreScope(None)) for _ in range(20)]
        manager = feed.stream(CentreScope(frozenset({"belleme"})))
        clients = [*everyone, manager]
        first = [json.loads(await anext(c)) for c in clients]
        assert feed.computations == 1  # twenty-one clients, one computation
        assert all(sum(c["present"] for c in page) == 0 for page in first)
        assert [c["centre_id"] for c in first[-1]] == ["belleme"]

        # A badge-in at each centre, committed in one write: one change, one computation.
        store.ingest_many(
            [
                ("boitron-01", [badge_in("boitron-01", 1, 1)], time.time()),
                ("belleme-01", [badge_in("belleme-01", 1, 2)], time.time()),
            ]
        ).result(timeout=10)
        pushed = [json.loads(await asyncio.wait_for(anext(c), 10)) for c in clients]
        assert feed.computations == 2
        assert all(sum(c["present"] for c in page) == 2 for page in pushed[:-1])
        assert [(c["centre_id"], c["present"]) for c in pushed[-1]] == [("belleme", 1)]
        for client in clients:
            await client.aclose()
        assert feed.clients == 0
        feed.close()

    try:
        asyncio.run(scenario())
    finally:
        store.close()


def test_a_failed_computation_keeps_the_streams_alive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(tmp_path / "telecentre.db")
    store.create_centre("boitron", "Boitron")
    store.assign_device("boitron-01", "boitron")
    for name in ("Alice", "Bruno"):
        store.create_member({"name": name})
    computed = store.occupancy
    failing = False

    def occupancy(now: float) -> list[dict]:
        if failing:
            raise sqlite3.OperationalError("disk I/O error")
        return computed(now)

    monkeypatch.setattr(store, "occupancy", occupancy)

    async def scenario() -> None:
        nonlocal failing
        feed = OccupancyFeed(store)
        updates = feed.updates()
        first = await anext(updates)
        assert first is not None and first.centres[0]["present"] == 0

        failing = True
        store.ingest_many([("boitron-01", [badge_in("boitron-01", 1, 1)], time.time())])
        # Nothing to show, but the client hears from the stream (an SSE comment).
        assert await asyncio.wait_for(anext(updates), 10) is None
        failing = False
        store.ingest_many([("boitron-01", [badge_in("boitron-01", 2, 2)], time.time())])
        latest = await asyncio.wait_for(anext(updates), 10)
        assert latest is not None and latest.centres[0]["present"] == 2  # both, at once
        await updates.aclose()
        feed.close()

    try:
        asyncio.run(scenario())
    finally:
        store.close()


def test_the_stream_over_http_sends_each_change_and_lets_a_leaving_client_go(
    server: TestClient,
) -> None:
    """Under uvicorn, as in production: frames are ``data: <json>`` events, and a client
    that closes its connection is let go at once, not at the next push."""
    import uvicorn

    member = server.post("/api/members", json={"name": "Alice Martin"}).json()
    store = server.app.state.runtime.store  # type: ignore[attr-defined]
    port = free_port()
    http = uvicorn.Server(
        uvicorn.Config(server.app, host="127.0.0.1", port=port, lifespan="off", log_level="warning")
    )
    serving = threading.Thread(target=http.run, daemon=True)
    serving.start()
    try:
        wait_until(lambda: http.started, what="uvicorn listening")
        with (
            httpx.Client(
                base_url=f"http://127.0.0.1:{port}",
                headers={"Authorization": server.headers["Authorization"]},
                timeout=10,
            ) as client,
            client.stream("GET", "/api/occupancy/stream") as stream,
        ):
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
            assert stream.headers["cache-control"] == "no-cache"
            assert stream.headers["x-accel-buffering"] == "no"  # nginx passes each push on
            lines = stream.iter_lines()
            counts = []
            for line in lines:
                if line:
                    assert line.startswith("data: "), line
                    counts.append(json.loads(line.removeprefix("data: "))[0]["present"])
                    if len(counts) == 1:
                        event = badge_in("boitron-01", 1, member["id"])
                        store.ingest_many([("boitron-01", [event], time.time())])
                    elif counts[-1] == 1:
                        break
            assert counts[0] == 0 and counts[-1] == 1
            feed = server.app.state.occupancy_feed  # type: ignore[attr-defined]
            assert feed.clients == 1
        # The heartbeat is 15 s away: only the server's pending read can see the client go.
        wait_until(lambda: feed.clients == 0, timeout=HEARTBEAT_S / 2, what="the client let go")
    finally:
        http.should_exit = True
        serving.join(10)


def test_what_clients_share_of_a_snapshot_is_made_once_and_outlives_one_leaving() -> None:
    """The dashboard's fragments: made once per snapshot for every client of the same
    centres and language, even when the first client to ask leaves before they are made."""
    made: list[str] = []

    async def scenario() -> None:
        snapshot = Snapshot(1, [])
        gate = asyncio.Event()

        async def render() -> str:
            made.append("render")
            await gate.wait()
            return "<section>"

        first = asyncio.ensure_future(snapshot.shared(("fr", None), render))
        others = [asyncio.ensure_future(snapshot.shared(("fr", None), render)) for _ in range(5)]
        english = asyncio.ensure_future(snapshot.shared(("en", None), render))
        await asyncio.sleep(0)  # one turn of the loop: the clients start and ask
        first.cancel()  # the first client leaves
        gate.set()
        assert await asyncio.gather(*others) == ["<section>"] * 5
        assert await english == "<section>"
        assert first.cancelled()

    asyncio.run(scenario())
    assert made == ["render", "render"]  # one per key: French once, English once
