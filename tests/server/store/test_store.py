"""The server's SQLite store on a real file: schema, idempotent ingest, occupancy, access."""

from __future__ import annotations

import sqlite3
import threading
import uuid
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from sqlite_utils import Database

from protocol.messages import Event, RoomInfo, Status
from server.domain.access import decide
from server.store import Conflict, IngestResult, NotFound, Store
from tests.conftest import sqlite_file

NOW = 1_750_000_000.0
HASH_A = "a" * 64
HASH_B = "b" * 64
HASH_C = "c" * 64
EPOCH = "e" * 32
OFFLINE = Status(device_id="boitron-01", state="offline")


@pytest.fixture
def store(store_at: Path | str) -> Iterator[Store]:
    s = Store(store_at)
    yield s
    s.close()


def access(
    device_id: str,
    seq: int,
    *,
    ts: float,
    member_id: int | None = 1,
    direction: str | None = "in",
    granted: bool = True,
    reason: str = "granted",
    badge_hash: str = HASH_A,
    door: str = "entree",
    historical: bool = False,
    event_id: str | None = None,
) -> Event:
    return Event(
        event_id=event_id or str(uuid.uuid4()),
        device_id=device_id,
        epoch=EPOCH,
        seq=seq,
        kind="access",
        ts=ts,
        clock_synced=True,
        historical=historical,
        door=door,
        badge_hash=badge_hash,
        granted=granted,
        reason=reason,
        direction=direction if granted else None,
        member_id=member_id,
    )


def room(device_id: str, seq: int, *, ts: float, state: str, room_id: str = "visio") -> Event:
    return Event(
        event_id=str(uuid.uuid4()),
        device_id=device_id,
        epoch=EPOCH,
        seq=seq,
        kind="room",
        ts=ts,
        clock_synced=True,
        room=room_id,
        room_state=state,  # type: ignore[arg-type]
    )


def ingest(store: Store, device_id: str, events: list[Event]) -> IngestResult:
    return store.ingest(device_id, events, received_at=NOW).result(timeout=10)


def centre_entry(store: Store, centre_id: str, now: float = NOW) -> dict:
    (entry,) = [c for c in store.occupancy(now) if c["centre_id"] == centre_id]
    return entry


@pytest.fixture
def centre(store: Store) -> str:
    store.create_centre("boitron", "Boitron", "Boitron")
    store.assign_device("boitron-01", "boitron")
    return "boitron"


def online(store: Store, device_id: str = "boitron-01", **fields: Any) -> None:
    status = Status(device_id=device_id, state="online", **fields)
    store.record_status(status, received_at=NOW).result(timeout=10)


# -- schema and file ---------------------------------------------------------------------------


def test_migrations_create_the_schema_and_reopening_keeps_data(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    first = Store(path)
    try:
        first.create_centre("boitron", "Boitron")
        member = first.create_member({"name": "Alice"})
    finally:
        first.close()

    with closing(sqlite3.connect(path)) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {
        "centres",
        "devices",
        "members",
        "badges",
        "events",
        "unknown_cards",
        "presence",
        "rooms",
        "commands",
    } <= tables

    second = Store(path)  # migrations already applied: must not fail or wipe anything
    try:
        assert second.centre("boitron")["name"] == "Boitron"
        assert second.member(member["id"])["name"] == "Alice"
        second.create_centre("belleme", "Bellême")
        assert [c["id"] for c in second.centres()] == ["belleme", "boitron"]
    finally:
        second.close()


def test_wal_mode_is_on(store: Store) -> None:
    path = sqlite_file(store)
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with closing(sqlite3.connect(path)) as other:  # persisted in the file itself
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


# -- idempotent ingest ---------------------------------------------------------------------------


def test_ingesting_the_same_events_twice_stores_them_once(store: Store, centre: str) -> None:
    events = [access("boitron-01", 1, ts=NOW - 10), access("boitron-01", 2, ts=NOW - 5)]
    first = ingest(store, "boitron-01", events)
    assert first.new == 2 and first.seqs == [1, 2] and first.centre_id == "boitron"

    again = ingest(store, "boitron-01", events)
    assert again.new == 0
    assert again.seqs == [1, 2]  # still acked, so the unit stops resending
    assert store.event_count() == 2


def test_same_event_id_on_another_seq_is_ignored(store: Store, centre: str) -> None:
    event = access("boitron-01", 1, ts=NOW)
    ingest(store, "boitron-01", [event])
    resent = access("boitron-01", 7, ts=NOW, event_id=event.event_id)
    result = ingest(store, "boitron-01", [resent])
    assert result.new == 0 and result.seqs == [7]
    assert store.event_count() == 1


def test_a_copy_within_one_message_is_stored_and_counted_once(store: Store, centre: str) -> None:
    badge_in = access("boitron-01", 1, ts=NOW - 60)
    copy = access("boitron-01", 2, ts=NOW - 60, event_id=badge_in.event_id)
    other = access("boitron-01", 3, ts=NOW - 30, member_id=2)
    result = ingest(store, "boitron-01", [badge_in, copy, other])
    assert result.new == 2 and result.seqs == [1, 2, 3]  # all acked; the copy stored once
    assert result.new_ids == frozenset({badge_in.event_id, other.event_id})
    assert store.event_count() == 2
    assert centre_entry(store, "boitron")["present"] == 2
    _, rows = store.events(limit=10)
    (first,) = [e for e in rows if e["event_id"] == badge_in.event_id]
    assert first["seq"] == 1  # the first copy's row, as the unit sent it first


def test_a_resent_unknown_card_is_counted_once(store: Store, centre: str) -> None:
    denied = access("boitron-01", 1, ts=NOW, granted=False, reason="unknown_card", member_id=None)
    ingest(store, "boitron-01", [denied])
    ingest(store, "boitron-01", [denied])
    (card,) = store.unknown_cards()
    assert card["count"] == 1


def test_events_of_an_unknown_unit_are_kept_but_create_no_device(store: Store) -> None:
    result = ingest(store, "stray-01", [access("stray-01", 1, ts=NOW)])
    assert result.new == 1 and result.centre_id is None and result.epoch == EPOCH
    _, items = store.events()
    assert [(e["device_id"], e.get("centre_id")) for e in items] == [("stray-01", None)]
    assert store.devices() == []  # never lost, but the registry is not grown by a sender
    with pytest.raises(NotFound):
        store.device("stray-01")


# -- occupancy ----------------------------------------------------------------------------------


def test_granted_in_and_out_move_the_present_count(store: Store, centre: str) -> None:
    alice = store.create_member({"name": "Alice"})["id"]
    bob = store.create_member({"name": "Bob"})["id"]
    assert centre_entry(store, centre)["present"] == 0

    ingest(store, "boitron-01", [access("boitron-01", 1, ts=NOW - 60, member_id=alice)])
    ingest(store, "boitron-01", [access("boitron-01", 2, ts=NOW - 50, member_id=bob)])
    entry = centre_entry(store, centre)
    assert entry["present"] == 2
    assert {p["name"] for p in entry["people"]} == {"Alice", "Bob"}

    out = access("boitron-01", 3, ts=NOW - 10, member_id=alice, direction="out")
    ingest(store, "boitron-01", [out])
    entry = centre_entry(store, centre)
    assert entry["present"] == 1
    assert [p["member_id"] for p in entry["people"]] == [bob]


def test_a_denied_access_does_not_count_anyone(store: Store, centre: str) -> None:
    denied = access("boitron-01", 1, ts=NOW, granted=False, reason="expired", member_id=1)
    ingest(store, "boitron-01", [denied])
    assert centre_entry(store, centre)["present"] == 0


def test_an_older_historical_event_does_not_overwrite_presence(store: Store, centre: str) -> None:
    alice = store.create_member({"name": "Alice"})["id"]
    ingest(store, "boitron-01", [access("boitron-01", 1, ts=NOW, member_id=alice)])
    replayed = access(
        "boitron-01", 2, ts=NOW - 50, member_id=alice, direction="out", historical=True
    )
    assert ingest(store, "boitron-01", [replayed]).new == 1  # stored for the record...
    entry = centre_entry(store, centre)
    assert entry["present"] == 1  # ...but Alice is still inside
    assert entry["people"][0]["since"] == NOW


def test_a_member_inside_longer_than_max_stay_is_not_counted(tmp_path: Path) -> None:
    s = Store(tmp_path / "t.db", max_stay_s=3600)
    try:
        s.create_centre("boitron", "Boitron")
        s.assign_device("boitron-01", "boitron")
        ingest(s, "boitron-01", [access("boitron-01", 1, ts=NOW - 2 * 3600, member_id=1)])
        ingest(s, "boitron-01", [access("boitron-01", 2, ts=NOW - 600, member_id=2)])
        entry = centre_entry(s, "boitron")
        assert entry["present"] == 1
        assert [p["member_id"] for p in entry["people"]] == [2]
        # the same data a few hours later: nobody is counted any more
        assert centre_entry(s, "boitron", now=NOW + 3 * 3600)["present"] == 0
    finally:
        s.close()


def test_room_state_follows_events_and_is_unknown_when_the_unit_is_offline(
    store: Store, centre: str
) -> None:
    online(store, rooms=[RoomInfo(id="visio", name="Salle visio")])
    (visio,) = centre_entry(store, centre)["rooms"]
    assert visio["name"] == "Salle visio" and visio["state"] == "unknown"  # no reading yet

    ingest(store, "boitron-01", [room("boitron-01", 1, ts=NOW - 10, state="occupied")])
    (visio,) = centre_entry(store, centre)["rooms"]
    assert visio["state"] == "occupied" and visio["since"] == NOW - 10
    assert visio["name"] == "Salle visio"

    older = room("boitron-01", 2, ts=NOW - 100, state="free")
    ingest(store, "boitron-01", [older])
    (visio,) = centre_entry(store, centre)["rooms"]
    assert visio["state"] == "occupied"  # the replayed older reading lost

    ingest(store, "boitron-01", [room("boitron-01", 3, ts=NOW - 1, state="free")])
    (visio,) = centre_entry(store, centre)["rooms"]
    assert visio["state"] == "free"

    store.record_status(OFFLINE, received_at=NOW).result(timeout=10)
    (visio,) = centre_entry(store, centre)["rooms"]
    assert visio["state"] == "unknown"  # a silent unit's room is not "free"


def test_record_status_flips_the_unit_state(store: Store, centre: str) -> None:
    online(store, software_version="1.2.3", doors=["entree"], faults=["reader: no answer"])
    (unit,) = store.devices("boitron")
    assert unit["state"] == "online" and unit["centre_id"] == "boitron"
    assert unit["software_version"] == "1.2.3"
    assert unit["doors"] == ["entree"] and unit["faults"] == ["reader: no answer"]

    store.record_status(OFFLINE, received_at=NOW + 5).result(timeout=10)
    (unit,) = store.devices("boitron")
    assert unit["state"] == "offline" and unit["last_seen"] == NOW + 5
    assert unit["centre_id"] == "boitron"  # the last will does not unassign it
    assert store.devices("belleme") == []


# -- unknown cards ----------------------------------------------------------------------------


def test_unknown_cards_are_counted_and_enrolment_clears_them(store: Store, centre: str) -> None:
    store.create_centre("belleme", "Bellême")
    store.assign_device("belleme-01", "belleme")

    def tap(device_id: str, seq: int, ts: float, door: str) -> None:
        event = access(
            device_id, seq, ts=ts, granted=False, reason="unknown_card", member_id=None, door=door
        )
        ingest(store, device_id, [event])

    tap("boitron-01", 1, NOW - 30, "entree")
    tap("belleme-01", 1, NOW - 10, "arriere")
    (card,) = store.unknown_cards()
    assert card["badge_hash"] == HASH_A
    assert card["count"] == 2
    assert (card["device_id"], card["door"], card["centre_id"]) == (
        "belleme-01",
        "arriere",
        "belleme",
    )
    assert card["first_seen"] == NOW - 30 and card["last_seen"] == NOW - 10
    assert store.unknown_cards("belleme") == [card]
    assert store.unknown_cards("boitron") == []

    member = store.create_member({"name": "Alice"})
    store.enrol_badge(member["id"], HASH_A)
    assert store.unknown_cards() == []


def test_an_older_replayed_unknown_tap_does_not_move_the_card(store: Store, centre: str) -> None:
    store.create_centre("belleme", "Bellême")
    store.assign_device("belleme-01", "belleme")
    live = access("boitron-01", 1, ts=NOW, granted=False, reason="unknown_card", member_id=None)
    ingest(store, "boitron-01", [live])
    replayed = access(
        "belleme-01",
        1,
        ts=NOW - 3600,
        granted=False,
        reason="unknown_card",
        member_id=None,
        door="arriere",
        historical=True,
    )
    ingest(store, "belleme-01", [replayed])
    (card,) = store.unknown_cards()
    assert card["count"] == 2
    assert card["last_seen"] == NOW and card["first_seen"] == NOW - 3600
    assert (card["device_id"], card["door"], card["centre_id"]) == (
        "boitron-01",
        "entree",
        "boitron",
    )


# -- access -------------------------------------------------------------------------------------


def test_badge_record_and_decide_give_the_reason(store: Store, centre: str) -> None:
    def member_with_badge(badge: str, **fields: Any) -> int:
        member_id = store.create_member({"name": "x", **fields})["id"]
        store.enrol_badge(member_id, badge)
        return member_id

    ok = member_with_badge("01" * 32, valid_from=NOW - 10, valid_until=NOW + 10)
    member_with_badge("02" * 32, valid_from=NOW + 10)
    member_with_badge("03" * 32, valid_until=NOW)
    member_with_badge("04" * 32, centres=["belleme"])
    member_with_badge("05" * 32, active=False)
    revoked = member_with_badge("06" * 32)
    store.revoke_badge(store.member(revoked)["badges"][0]["id"])

    def reason(badge: str, centre_id: str | None = "boitron") -> str:
        return decide(store.badge_record(badge), centre_id, NOW)

    record = store.badge_record("01" * 32)
    assert record is not None and record.member_id == ok
    assert (record.valid_from, record.valid_until) == (NOW - 10, NOW + 10)
    assert reason("01" * 32) == "granted"
    assert reason("ff" * 32) == "unknown_card"
    assert reason("02" * 32) == "not_yet_valid"
    assert reason("03" * 32) == "expired"
    assert reason("04" * 32) == "wrong_centre"
    assert reason("04" * 32, "belleme") == "granted"
    assert reason("01" * 32, None) == "wrong_centre"  # a unit not assigned to any centre
    assert reason("05" * 32) == "suspended"
    assert reason("06" * 32) == "revoked"
    assert store.badge_record("ff" * 32) is None


def test_a_revoked_card_can_be_enrolled_again_but_not_twice(store: Store) -> None:
    alice = store.create_member({"name": "Alice"})["id"]
    bob = store.create_member({"name": "Bob"})["id"]
    badge = store.enrol_badge(alice, HASH_C)
    with pytest.raises(Conflict):
        store.enrol_badge(bob, HASH_C)
    store.revoke_badge(badge["id"])
    again = store.enrol_badge(bob, HASH_C)
    assert again["member_id"] == bob and again["revoked_at"] is None
    with pytest.raises(NotFound):
        store.enrol_badge(9999, HASH_B)


# -- events query -------------------------------------------------------------------------------


def test_events_filter_and_order(store: Store, centre: str) -> None:
    store.create_centre("belleme", "Bellême")
    store.assign_device("belleme-01", "belleme")
    ingest(
        store,
        "boitron-01",
        [
            access("boitron-01", 1, ts=NOW - 300),
            room("boitron-01", 2, ts=NOW - 200, state="occupied"),
            access("boitron-01", 3, ts=NOW - 100, direction="out"),
        ],
    )
    ingest(store, "belleme-01", [access("belleme-01", 1, ts=NOW - 150)])

    total, items = store.events()
    assert total == 4
    assert [e["ts"] for e in items] == [NOW - 100, NOW - 150, NOW - 200, NOW - 300]

    total, items = store.events(centre_id="boitron")
    assert total == 3 and {e["centre_id"] for e in items} == {"boitron"}
    assert [e["seq"] for e in items] == [3, 2, 1]

    total, items = store.events(since=NOW - 200, until=NOW - 100)  # since inclusive
    assert total == 2 and [e["ts"] for e in items] == [NOW - 150, NOW - 200]

    total, items = store.events(kind="room")
    assert total == 1 and items[0]["room_state"] == "occupied"
    assert items[0]["clock_synced"] is True and items[0]["time_suspect"] is False
    assert items[0]["historical"] is True  # received 200 s after its time: late_event_s

    total, items = store.events(limit=1, offset=1)
    assert total == 4 and [e["ts"] for e in items] == [NOW - 150]
    total, items = store.events(centre_id="boitron", limit=2, offset=2)
    assert total == 3 and [e["seq"] for e in items] == [1]


# -- the writer ---------------------------------------------------------------------------------


def test_a_failing_write_fails_alone_in_its_batch(store: Store) -> None:
    started, release = threading.Event(), threading.Event()

    def hold(db: Database) -> None:
        started.set()
        release.wait(10)

    def bad(db: Database) -> None:
        db["centres"].insert({"id": "bad", "name": "half written", "created_at": NOW})
        raise ValueError("this item is broken")

    def good(db: Database) -> str:
        db["centres"].insert({"id": "good", "name": "Good", "created_at": NOW})
        return "committed"

    held = store._writer.submit(hold)
    assert started.wait(10)
    batches_before = store.writer_stats["batches"]
    bad_future = store._writer.submit(bad)
    good_future = store._writer.submit(good)
    release.set()

    assert good_future.result(timeout=10) == "committed"
    with pytest.raises(ValueError, match="broken"):
        bad_future.result(timeout=10)
    held.result(timeout=10)
    assert store.writer_stats["batches"] == batches_before + 2  # hold, then bad + good together

    assert store.centre("good")["name"] == "Good"
    with pytest.raises(NotFound):
        store.centre("bad")  # its own savepoint was rolled back


def test_server_worker_accounts_are_kept_listed_and_removed(store: Store, centre: str) -> None:
    store.add_server_account("telecentre-server-2", "$7$hash-2")
    store.add_server_account("telecentre-server-3", "$7$hash-3")
    store.add_server_account("telecentre-server-2", "$7$hash-2b")  # a new password
    assert [(r["username"], r["password_hash"]) for r in store.server_accounts()] == [
        ("telecentre-server-2", "$7$hash-2b"),
        ("telecentre-server-3", "$7$hash-3"),
    ]
    with pytest.raises(Conflict, match="boitron-01"):
        store.add_server_account("boitron-01", "$7$x")  # a unit's id
    assert store.remove_server_account("telecentre-server-2") is True
    assert store.remove_server_account("telecentre-server-2") is False
    assert [r["username"] for r in store.server_accounts()] == ["telecentre-server-3"]
