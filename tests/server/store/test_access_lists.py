"""The store's side of access lists v2 on a real file: compiled entries, list state, imports."""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from protocol.messages import ACTIVE, REVOKED, SUSPENDED, ListEntry
from server.domain.access import admits_centre
from server.store import NotFound, Store
from server.store.records import CentreListState
from tests.conftest import database_errors

NOW = 1_750_000_000.0


@pytest.fixture
def store(store_at: Path | str) -> Iterator[Store]:
    s = Store(store_at)
    s.create_centre("boitron", "Boitron")
    s.create_centre("belleme", "Bellême")
    yield s
    s.close()


def member_with_badge(store: Store, badge: str, **fields: object) -> int:
    member_id = store.create_member({"name": "x", **fields})["id"]
    store.enrol_badge(member_id, badge)
    return member_id


def test_a_centre_list_holds_its_members_badges_with_their_state(store: Store) -> None:
    everywhere = member_with_badge(store, "01" * 32, valid_until=NOW + 10)
    here = member_with_badge(store, "02" * 32, centres=["boitron"])
    there = member_with_badge(store, "03" * 32, centres=["belleme"])
    both = member_with_badge(store, "04" * 32, centres=["boitron", "belleme"])
    member_with_badge(store, "05" * 32, valid_until=NOW)  # expired: left out
    suspended = member_with_badge(store, "06" * 32, active=False)
    revoked = member_with_badge(store, "07" * 32, centres=["boitron"])
    store.revoke_badge(store.member(revoked)["badges"][0]["id"])
    member_with_badge(store, "08" * 32, centres=[])  # no centre

    entries = store.list_entries("boitron", NOW)
    assert {e.member_id: e.state for e in entries.values()} == {
        everywhere: ACTIVE,
        here: ACTIVE,
        both: ACTIVE,
        suspended: SUSPENDED,
        revoked: REVOKED,
    }
    badge = bytes.fromhex("01" * 32)
    assert entries[badge] == ListEntry(badge, everywhere, ACTIVE, None, NOW + 10)
    belleme = {e.member_id for e in store.list_entries("belleme", NOW).values()}
    assert belleme == {everywhere, there, both, suspended}


def test_the_sql_centre_filter_agrees_with_the_domain_rule(store: Store) -> None:
    choices = [None, [], ["boitron"], ["belleme"], ["boitron", "belleme"], ["boitron-sud"]]
    for n, centres in enumerate(choices):
        member_with_badge(store, f"{n + 1:02x}" * 32, centres=centres)
    store.create_centre("boitron-sud", "Boitron sud")
    for centre in ("boitron", "belleme", "boitron-sud", "mortagne"):
        listed = {e.member_id for e in store.list_entries(centre, NOW).values()}
        expected = {
            m["id"] for m in store.members(limit=100)[1] if admits_centre(m["centres"], centre)
        }
        assert listed == expected, centre


def test_list_state_round_trip_and_deltas_need_a_snapshot(store: Store) -> None:
    assert store.list_state("boitron") is None
    entries = [ListEntry(bytes([n]) * 32, n, ACTIVE, None, None) for n in range(1, 4)]
    first = CentreListState("boitron", 10, NOW, entries, 10, NOW)
    with pytest.raises(NotFound):
        store.save_list_state(first, snapshot=False)
    store.save_list_state(first, snapshot=True)
    assert store.list_state("boitron") == first
    revoked = ListEntry(bytes([1]) * 32, 1, REVOKED, None, None)
    delta = CentreListState(
        "boitron", 10, NOW, entries, 11, NOW + 1, upsert=[revoked], remove=[bytes([2]) * 32]
    )
    store.save_list_state(delta, snapshot=False)
    assert store.list_state("boitron") == delta
    assert store.list_state_centres() == ["boitron"]
    assert first.segments == 1 and CentreListState("b", 1, NOW, [], 1, NOW).segments == 1


def test_the_v1_per_unit_list_table_is_gone(tmp_path: Path) -> None:
    Store(tmp_path / "t.db").close()
    with closing(sqlite3.connect(tmp_path / "t.db")) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "list_state" in tables and "access_lists" not in tables


def test_import_members_with_badges(store: Store) -> None:
    existing = member_with_badge(store, "aa" * 32)
    hashes = [secrets.token_hex(32) for _ in range(500)]
    count = store.import_members(
        {"name": f"M{i}", "centres": ["belleme"] if i % 2 else None, "badge_hash": h}
        for i, h in enumerate(hashes)
    )
    assert count == 500
    member = store.member_by_badge_hash(hashes[1])
    assert member["id"] > existing and member["centres"] == ["belleme"]
    assert [b["badge_hash"] for b in member["badges"]] == [hashes[1]]
    assert len(store.list_entries("boitron", NOW)) == 1 + 250
    assert len(store.list_entries("belleme", NOW)) == 1 + 500
    with pytest.raises(NotFound):
        store.member_by_badge_hash("ff" * 32)
    with pytest.raises(database_errors()):  # an enrolled card fails the whole import
        store.import_members([{"name": "Dup", "badge_hash": hashes[0]}, {"name": "Ok"}])
    assert store.members()[0] == 501


def test_a_centre_of_250000_badges_compiles_every_badge(store: Store) -> None:
    """Every badge of a big centre is in its list (how fast: ``python -m bench lists``)."""
    badges = 250_000
    store.import_members(
        {"name": f"M{i}", "centres": ["boitron"] if i % 4 else None, "badge_hash": f"{i:064x}"}
        for i in range(badges)
    )
    entries = store.list_entries("boitron", NOW)
    assert len(entries) == badges
    assert entries[bytes.fromhex(f"{badges - 1:064x}")].member_id == badges
