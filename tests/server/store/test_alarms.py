"""Alarms in the SQLite store: door events in and out of order, one open alarm per unit,
kind and door, the offline sweep, acknowledgement."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from protocol.messages import Event, Status
from server.domain.alarms import Thresholds
from server.store import Conflict, NotFound, Store

NOW = 1_750_000_000.0
UNIT = "boitron-01"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "t.db", alarm_thresholds=Thresholds(offline_after_s=60))
    s.create_centre("boitron", "Boitron")
    s.assign_device(UNIT, "boitron")
    yield s
    s.close()


def door(kind: str, ts: float, door_id: str = "entree", device_id: str = UNIT) -> Event:
    return Event(
        event_id=str(uuid.uuid4()),
        device_id=device_id,
        epoch="e" * 32,
        seq=int(ts - NOW) + 1,
        kind=kind,  # type: ignore[arg-type]
        ts=ts,
        clock_synced=True,
        door=door_id,
    )


def ingest(store: Store, *events: Event, device_id: str = UNIT) -> None:
    store.ingest(device_id, list(events), NOW + 100).result(timeout=10)


def listed(store: Store, **filters: object) -> list[dict]:
    return store.alarms(view="all", **filters)[1]  # type: ignore[arg-type]


def test_door_closed_ends_the_alarms_of_that_door_only(store: Store) -> None:
    ingest(store, door("door_forced", NOW), door("door_held", NOW + 1, "garage"))
    ingest(store, door("door_closed", NOW + 2))
    by_door = {a["door"]: a["open"] for a in listed(store)}
    assert by_door == {"entree": False, "garage": True}


def test_a_door_closed_older_than_the_alarm_does_not_end_it(store: Store) -> None:
    ingest(store, door("door_forced", NOW + 10))
    ingest(store, door("door_closed", NOW + 5))  # sent late, from before the alarm
    assert [a["open"] for a in listed(store)] == [True]


def test_an_alarm_whose_door_closed_came_first_is_listed_closed(store: Store) -> None:
    ingest(store, door("door_closed", NOW + 5))
    ingest(store, door("door_forced", NOW))  # its first send was lost, resent later
    [alarm] = listed(store)
    assert alarm["open"] is False and alarm["acknowledged"] is False


def test_an_old_forced_door_arriving_late_leaves_the_open_alarm_open(store: Store) -> None:
    ingest(store, door("door_forced", NOW + 10))
    ingest(store, door("door_closed", NOW + 5), door("door_forced", NOW + 3))  # both late
    [alarm] = listed(store)
    assert alarm["open"] is True and alarm["event_ts"] == NOW + 10


def test_one_open_alarm_per_unit_kind_and_door(store: Store, tmp_path: Path) -> None:
    ingest(store, door("door_forced", NOW), door("door_forced", NOW + 1))
    assert len(listed(store)) == 1
    with closing(sqlite3.connect(tmp_path / "t.db")) as db, pytest.raises(sqlite3.IntegrityError):
        db.execute(
            "INSERT INTO alarms (kind, device_id, door, opened_at) VALUES (?, ?, ?, ?)",
            ["door_forced", UNIT, "entree", NOW],
        )


def test_a_unit_missing_from_the_registry_raises_nothing(store: Store) -> None:
    ingest(store, door("door_forced", NOW, device_id="stray-01"), device_id="stray-01")
    assert listed(store) == [] and store.event_count() == 1


def test_the_offline_sweep_opens_one_alarm_per_silent_unit(store: Store) -> None:
    store.record_status(Status(device_id=UNIT, state="offline"), NOW).result(timeout=10)
    assert store.open_offline_alarms(NOW + 59) == 0
    assert store.open_offline_alarms(NOW + 60) == 1
    assert store.open_offline_alarms(NOW + 600) == 0
    [alarm] = listed(store, kind="unit_offline")
    assert alarm["opened_at"] == NOW + 60 and alarm["centre_id"] == "boitron"
    store.record_status(Status(device_id=UNIT, state="online"), NOW + 700).result(timeout=10)
    assert listed(store, kind="unit_offline")[0]["closed_at"] == NOW + 700


def test_an_alarm_is_acknowledged_once(store: Store) -> None:
    ingest(store, door("door_forced", NOW))
    [alarm] = listed(store)
    done = store.acknowledge_alarm(alarm["id"], "alice", NOW + 200)
    assert (done["acknowledged_at"], done["acknowledged_by"]) == (NOW + 200, "alice")
    with pytest.raises(Conflict, match="already acknowledged by alice"):
        store.acknowledge_alarm(alarm["id"], "bob", NOW + 300)
    with pytest.raises(NotFound, match="no alarm 999"):
        store.acknowledge_alarm(999, "bob", NOW + 300)


def test_open_counts_name_every_kind(store: Store) -> None:
    ingest(store, door("door_held", NOW))
    counts = store.open_alarm_counts()
    assert counts["door_held"] == 1 and counts["unit_offline"] == 0 and len(counts) == 8
