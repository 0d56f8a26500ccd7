"""Access lists v2: one list per centre, a snapshot in segments, then cumulative deltas.

Pure functions shared by the server (which cuts snapshots and builds deltas) and the unit
(which puts them back together). The sync algorithm is in docs/protocol.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from protocol.messages import CentreHours, ListDelta, ListEntry, ListHead, ListSegment

# About 60 bytes an entry in MessagePack: a segment stays near 600 KB, under the 1 MiB cap.
SEGMENT_ENTRIES = 2_000
# Past this many changes since the snapshot, the server cuts a new snapshot instead.
MAX_DELTA_ENTRIES = 2_000


def cut_snapshot(
    centre: str,
    version: int,
    entries: Sequence[ListEntry],
    issued_at: float,
    calendar: CentreHours | None = None,
) -> tuple[ListHead, list[ListSegment]]:
    """The head and the segments of one snapshot (at least one segment, maybe empty)."""
    chunks = [entries[i : i + SEGMENT_ENTRIES] for i in range(0, len(entries), SEGMENT_ENTRIES)]
    chunks = chunks or [[]]
    segments = [
        ListSegment(
            centre=centre,
            version=version,
            index=i,
            segments=len(chunks),
            entries=list(chunk),
            issued_at=issued_at,
        )
        for i, chunk in enumerate(chunks)
    ]
    head = ListHead(
        centre=centre,
        version=version,
        segments=len(chunks),
        entries=len(entries),
        issued_at=issued_at,
        calendar=calendar,
    )
    return head, segments


def diff(
    before: dict[bytes, ListEntry], after: dict[bytes, ListEntry]
) -> tuple[list[ListEntry], list[bytes]]:
    """(entries new or changed, badges gone) from ``before`` to ``after``."""
    upsert = [entry for badge, entry in after.items() if before.get(badge) != entry]
    remove = [badge for badge in before if badge not in after]
    return upsert, remove


def cumulative_changes(
    current: dict[bytes, ListEntry], touched: Iterable[bytes]
) -> tuple[list[ListEntry], list[bytes]]:
    """(upsert, remove) of a cumulative delta: every badge touched since the snapshot.

    A badge changed and then changed back since the snapshot is still listed, with its
    current state: a unit that applied the intermediate delta must learn it is back, so
    the delta cannot be a mere diff between the snapshot and now.
    """
    upsert: list[ListEntry] = []
    remove: list[bytes] = []
    for badge in sorted(set(touched)):
        entry = current.get(badge)
        if entry is None:
            remove.append(badge)
        else:
            upsert.append(entry)
    return upsert, remove


def apply_delta(index: dict[bytes, ListEntry], delta: ListDelta) -> None:
    """Apply a cumulative delta in place (idempotent).

    Correct over the snapshot and over any earlier delta of the same snapshot, because a
    cumulative delta names every badge touched since the snapshot (``cumulative_changes``).
    """
    for entry in delta.upsert:
        index[entry.badge] = entry
    for badge in delta.remove:
        index.pop(badge, None)


def index_segments(segments: Iterable[ListSegment]) -> dict[bytes, ListEntry]:
    return {entry.badge: entry for segment in segments for entry in segment.entries}
