"""What a technician and the central team see when a part goes away and comes back."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from fastapi.testclient import TestClient

from edge.agent import EdgeAgent
from edge.hardware.fakes import FakeCardReader
from server.app import create_app
from server.broker import LocalBroker
from server.settings import Settings
from tests.conftest import as_admin, wait_until

ALICE = bytes.fromhex("04a1b2c3")


def test_a_reader_that_stops_answering_shows_on_the_unit_status(
    server: TestClient, make_unit: Callable[..., EdgeAgent]
) -> None:
    unit = make_unit()
    wait_until(lambda: server.get("/api/devices/boitron-01").json().get("state") == "online")
    reader = unit.hardware.readers["entree"]
    assert isinstance(reader, FakeCardReader)

    reader.failing = True
    faults = wait_until(
        lambda: server.get("/api/devices/boitron-01").json()["faults"],
        what="the fault on the server",
    )
    assert faults == ["entree: card reader: fake reader: not answering"]

    reader.failing = False
    wait_until(
        lambda: server.get("/api/devices/boitron-01").json()["faults"] == [],
        what="the fault to clear",
    )


def test_a_unit_going_offline_makes_its_rooms_unknown(
    server: TestClient, make_unit: Callable[..., EdgeAgent]
) -> None:
    unit = make_unit()

    def visio_state() -> str | None:
        rooms = server.get("/api/occupancy").json()[0]["rooms"]
        return rooms[0]["state"] if rooms else None

    wait_until(lambda: visio_state() == "free", what="the room reported free")
    unit.stop()
    wait_until(lambda: visio_state() == "unknown", what="the room to turn unknown")
    assert server.get("/api/devices/boitron-01").json()["state"] == "offline"


def test_events_made_while_the_server_is_down_arrive_when_it_is_back(
    broker: LocalBroker,
    tmp_path: Path,
    key_file: Path,
    signing_key_file: Path,
    make_unit: Callable[..., EdgeAgent],
) -> None:
    settings = Settings(
        data_dir=tmp_path / "server",
        badge_key_file=key_file,
        signing_key_file=signing_key_file,
        **broker.server_settings(),
    )
    with TestClient(create_app(settings)) as client:
        as_admin(client)
        client.post("/api/centres", json={"id": "boitron", "name": "Boitron"})
        client.put("/api/devices/boitron-01", json={"centre_id": "boitron"})
        member = client.post("/api/members", json={"name": "Alice Martin"}).json()
        client.post(f"/api/members/{member['id']}/badges", json={"uid": ALICE.hex()})
        unit = make_unit()
        wait_until(lambda: len(unit.access) > 0, what="the list with Alice")

    # Server stopped (its broker session stays); the door goes on deciding.
    decisions = [unit.badge("entree", ALICE) for _ in range(20)]
    assert all(e.granted for e in decisions)

    with TestClient(create_app(settings)) as client:
        as_admin(client)
        wait_until(
            lambda: unit.outbox.pending_count() == 0, timeout=20, what="the unit's outbox to drain"
        )
        body = client.get("/api/events", params={"kind": "access"}).json()
        assert body["total"] == 20
        assert client.get("/api/occupancy").json()[0]["present"] == 0  # in/out ten times
