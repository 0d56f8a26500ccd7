"""The unit's list as the server cut it: per-segment dicts found by bisection, a delta beside."""

from __future__ import annotations

import hashlib

from edge.access import LocalAccess, Snapshot, segment_parts
from protocol.lists import SEGMENT_ENTRIES, cut_snapshot
from protocol.messages import REVOKED, ListDelta, ListEntry

NOW = 1_760_000_000.0


def badge(n: int) -> bytes:
    return hashlib.sha256(n.to_bytes(8, "big")).digest()


def entries(count: int) -> list[ListEntry]:
    return [ListEntry(badge(n), n + 1) for n in range(count)]


def test_every_badge_of_a_snapshot_cut_in_order_is_found_and_no_other() -> None:
    listed = entries(3 * SEGMENT_ENTRIES + 7)
    _, segments = cut_snapshot("boitron", 1, sorted(listed, key=lambda e: e.badge), NOW)
    snapshot = Snapshot(segment_parts(segments))
    assert len(snapshot) == len(listed)
    assert all(snapshot.get(e.badge) == e for e in listed)
    assert snapshot.get(badge(10**9)) is None
    assert snapshot.get(b"\x00" * 32) is None and snapshot.get(b"\xff" * 32) is None


def test_segments_out_of_order_or_overlapping_are_merged_not_lost() -> None:
    listed = entries(5_000)
    _, segments = cut_snapshot("boitron", 1, listed, NOW)  # not sorted: ranges overlap
    snapshot = Snapshot(segment_parts(reversed(segments)))
    assert len(snapshot) == 5_000
    assert all(snapshot.get(e.badge) == e for e in listed)


def test_a_delta_beside_the_snapshot_revokes_adds_and_removes() -> None:
    listed = sorted(entries(4_500), key=lambda e: e.badge)
    _, segments = cut_snapshot("boitron", 7, listed, NOW)
    access = LocalAccess()
    access.install(7, segment_parts(segments))
    kept, revoked, gone = listed[0], listed[2_500], listed[-1]
    added = ListEntry(badge(99_999), 42)
    delta = ListDelta(
        centre="boitron",
        base=7,
        version=8,
        upsert=[ListEntry(revoked.badge, revoked.member_id, REVOKED), added],
        remove=[gone.badge],
        issued_at=NOW,
    )
    assert access.apply(delta)
    assert access.decide(kept.badge, NOW).granted
    assert access.decide(revoked.badge, NOW).reason == "revoked"
    assert access.decide(gone.badge, NOW).reason == "unknown_card"
    assert access.decide(added.badge, NOW).granted
    assert len(access) == 4_500  # one added, one removed
    assert not access.apply(delta)  # the same version again changes nothing
