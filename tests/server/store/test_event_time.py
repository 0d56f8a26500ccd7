"""Event times the server does not trust: late (historical) and suspect (never moves state)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from protocol.messages import Event, RoomInfo, Status
from server.store import Store

NOW = 1_750_000_000.0
EPOCH = "f" * 32


@pytest.fixture
def store(store_at: Path | str) -> Iterator[Store]:
    s = Store(store_at, late_event_s=60, future_margin_s=300)
    s.create_centre("boitron", "Boitron")
    s.assign_device("boitron-01", "boitron")
    status = Status(device_id="boitron-01", state="online", rooms=[RoomInfo(id="visio", name="V")])
    s.record_status(status, NOW).result(timeout=10)
    yield s
    s.close()


def passage(seq: int, ts: float, direction: str, *, synced: bool = True) -> Event:
    return Event(
        event_id=str(uuid.uuid4()),
        device_id="boitron-01",
        epoch=EPOCH,
        seq=seq,
        kind="access",
        ts=ts,
        clock_synced=synced,
        door="entree",
        badge_hash="a" * 64,
        granted=True,
        reason="granted",
        direction=direction,  # type: ignore[arg-type]
        member_id=1,
    )


def room(seq: int, ts: float, state: str, *, synced: bool = True) -> Event:
    return Event(
        event_id=str(uuid.uuid4()),
        device_id="boitron-01",
        epoch=EPOCH,
        seq=seq,
        kind="room",
        ts=ts,
        clock_synced=synced,
        room="visio",
        room_state=state,  # type: ignore[arg-type]
    )


def ingest(store: Store, event: Event, received_at: float = NOW) -> None:
    store.ingest("boitron-01", [event], received_at).result(timeout=10)


def present(store: Store) -> int:
    (entry,) = store.occupancy(NOW)
    return entry["present"]


def stored(store: Store, seq: int) -> dict:
    _, items = store.events(limit=1000)
    (event,) = [e for e in items if e["seq"] == seq]
    return event


def test_a_future_dated_event_is_stored_flagged_and_does_not_freeze_presence(store: Store) -> None:
    ingest(store, passage(1, NOW + 3 * 3600, "in"))  # a unit whose clock jumped 3 h ahead
    assert stored(store, 1)["time_suspect"] is True
    assert present(store) == 0  # it moved nothing

    ingest(store, passage(2, NOW - 10, "in"))  # a later, synchronised event still counts
    assert present(store) == 1
    ingest(store, passage(3, NOW - 5, "out"))
    assert present(store) == 0
    assert stored(store, 2)["time_suspect"] is False

    ingest(store, passage(4, NOW + 200, "in"))  # within future_margin_s: trusted
    assert present(store) == 1 and stored(store, 4)["time_suspect"] is False


def test_an_unsynchronised_event_is_flagged_and_moves_nothing(store: Store) -> None:
    ingest(store, passage(1, NOW - 1, "in", synced=False))
    ingest(store, room(2, NOW - 1, "occupied", synced=False))
    assert stored(store, 1)["time_suspect"] is True and stored(store, 1)["clock_synced"] is False
    assert present(store) == 0
    (entry,) = store.occupancy(NOW)
    assert entry["rooms"][0]["state"] == "unknown"  # no trusted reading yet

    ingest(store, room(3, NOW - 1, "occupied"))
    (entry,) = store.occupancy(NOW)
    assert entry["rooms"][0]["state"] == "occupied"


def test_an_event_received_late_is_historical(store: Store) -> None:
    ingest(store, passage(1, NOW - 61, "in"))  # re-sent by the MQTT session after an outage
    ingest(store, passage(2, NOW - 59, "in"))
    ingest(store, passage(3, NOW - 3600, "in", synced=False))  # unsynchronised: cannot tell
    assert stored(store, 1)["historical"] is True
    assert stored(store, 2)["historical"] is False
    assert stored(store, 3)["historical"] is False and stored(store, 3)["time_suspect"] is True
