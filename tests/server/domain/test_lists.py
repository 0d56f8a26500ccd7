"""Which badges a centre's access list holds, on plain rows: no database, no clock."""

from __future__ import annotations

import json

from protocol.messages import ACTIVE, REVOKED, SUSPENDED, ListEntry
from server.domain.lists import BadgeRow, compile_entries, touched_centres

NOW = 1_750_000_000.0


def row(n: int, **changes: object) -> BadgeRow:
    fields: dict = {
        "badge_hash": f"{n:02x}" * 32,
        "member_id": n,
        "revoked_at": None,
        "active": 1,
        "valid_from": None,
        "valid_until": None,
        "centres": None,
    }
    fields.update(changes)
    return BadgeRow(**fields)


def test_each_badge_gets_its_state() -> None:
    rows = [
        row(1),
        row(2, revoked_at=NOW - 5),
        row(3, active=0),
        row(4, active=0, revoked_at=NOW - 5),  # revoked says more than suspended
        row(5, valid_from=NOW + 60, valid_until=NOW + 3600),
    ]
    entries = compile_entries("boitron", rows, NOW)
    states = {entry.member_id: entry.state for entry in entries.values()}
    assert states == {1: ACTIVE, 2: REVOKED, 3: SUSPENDED, 4: REVOKED, 5: ACTIVE}
    badge = bytes.fromhex("05" * 32)
    assert entries[badge] == ListEntry(badge, 5, ACTIVE, NOW + 60, NOW + 3600)


def test_expired_members_are_left_out_even_revoked_or_suspended() -> None:
    rows = [
        row(1, valid_until=NOW),  # valid_until is exclusive: expired at NOW
        row(2, valid_until=NOW - 1, revoked_at=NOW - 10),
        row(3, valid_until=NOW - 1, active=0),
        row(4, valid_until=NOW + 1),
    ]
    assert [e.member_id for e in compile_entries("boitron", rows, NOW).values()] == [4]


def test_only_members_allowed_at_the_centre() -> None:
    rows = [
        row(1),  # every centre
        row(2, centres=["boitron"]),
        row(3, centres=["belleme"]),
        row(4, centres=["belleme", "boitron"]),
        row(5, centres=[]),  # no centre at all
        row(6, centres=["boitron-2"]),  # a prefix is not the centre
    ]
    assert {e.member_id for e in compile_entries("boitron", rows, NOW).values()} == {1, 2, 4}
    assert {e.member_id for e in compile_entries("belleme", rows, NOW).values()} == {1, 3, 4}


def test_stored_centres_are_decoded_once_per_distinct_value() -> None:
    decoded: list[str | None] = []

    def centres_of(raw: str | None) -> list[str] | None:
        decoded.append(raw)
        return json.loads(raw) if raw else None

    stored = [row(n, centres=json.dumps(["boitron"]) if n % 2 else None) for n in range(1, 50)]
    entries = compile_entries("boitron", stored, NOW, centres_of=centres_of)
    assert len(entries) == 49
    assert sorted(decoded, key=str) == [None, '["boitron"]']
    other = compile_entries("belleme", stored, NOW, centres_of=centres_of)
    assert {e.member_id % 2 for e in other.values()} == {0}


def test_a_member_change_touches_the_centres_before_and_after() -> None:
    assert touched_centres(["boitron"]) == {"boitron"}
    assert touched_centres(["boitron"], ["belleme"]) == {"boitron", "belleme"}
    assert touched_centres([], ["belleme"]) == {"belleme"}
    assert touched_centres([]) == set()
    assert touched_centres(None) is None  # a member for every centre: every list
    assert touched_centres(["boitron"], None) is None
    assert touched_centres(None, ["boitron"]) is None
