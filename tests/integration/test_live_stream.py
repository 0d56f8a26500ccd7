"""The live page's feed: the occupancy is pushed again when a member comes in."""

from __future__ import annotations

import json
from collections.abc import Callable

from fastapi.testclient import TestClient

from edge.agent import EdgeAgent
from protocol.badges import badge_hash
from tests.conftest import wait_until


def test_occupancy_stream_pushes_the_new_count(
    server: TestClient, make_unit: Callable[..., EdgeAgent], badge_key: bytes
) -> None:
    uid = bytes.fromhex("04a1b2c3")
    member = server.post("/api/members", json={"name": "Alice Martin"}).json()
    server.post(f"/api/members/{member['id']}/badges", json={"uid": uid.hex()})
    unit = make_unit()
    hashed = badge_hash(badge_key, uid)
    wait_until(lambda: unit.access.entry(hashed) is not None, what="the list with Alice")

    with server.stream("GET", "/api/occupancy/stream") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        counts = []
        for line in stream.iter_lines():
            if not line.startswith("data:"):
                continue
            centres = json.loads(line.removeprefix("data:"))
            counts.append(centres[0]["present"])
            if len(counts) == 1:
                unit.badge("entree", uid)
            if counts[-1] == 1:
                break
    assert counts[0] == 0 and counts[-1] == 1
