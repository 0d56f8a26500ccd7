"""The live page's feed: one occupancy computation per change, whatever the number of
clients, pushed to each of them, each seeing only its centres."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from server.domain.operators import CentreScope
from server.routes.live import OccupancyFeed
from server.store import Store
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
