"""Door decisions from the unit's local access list: pure logic, no I/O.

The list is the centre's signed snapshot (an index by the 32 raw bytes of each badge hash)
plus the cumulative delta applied over it. A revoked or suspended badge is denied at once,
offline too; an active one is checked against its validity window; a badge the list does
not know is for the server to decide. The rules are ``protocol.policy``'s, the same the
server applies online; the centre's calendar comes with the snapshot's head.
"""

from __future__ import annotations

import threading
from bisect import bisect_right
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from protocol.calendar import Calendar
from protocol.messages import CentreHours, ListDelta, ListEntry, ListSegment
from protocol.policy import calendar_of, day_number
from protocol.policy import decide as policy_decide


@dataclass(frozen=True)
class Decision:
    granted: bool
    reason: str
    member_id: int | None = None
    credit_day: int | None = None  # the local day this entry uses a day credit for

    @property
    def needs_server(self) -> bool:
        """The list does not know the card: only the server can say."""
        return self.reason == "unknown_card"


def _key(badge: bytes | str) -> bytes:
    return bytes.fromhex(badge) if isinstance(badge, str) else badge


class Snapshot:
    """A snapshot's entries kept as the server cut them: one small dict per segment.

    The server cuts a snapshot in badge order, so a badge's segment is found by bisection
    on each segment's first badge. Building one dict of 250,000 entries instead holds the
    interpreter lock for tens of milliseconds while it resizes, and a card at the door
    would wait that long. Segments that overlap (not cut in order) are merged into one.
    """

    def __init__(self, parts: Sequence[dict[bytes, ListEntry]] = ()) -> None:
        parts = [p for p in parts if p]
        bounds = [(min(p), max(p)) for p in parts]
        order = sorted(range(len(parts)), key=lambda i: bounds[i][0])
        ordered = all(bounds[order[k]][1] < bounds[order[k + 1]][0] for k in range(len(order) - 1))
        if ordered:
            self._parts = [parts[i] for i in order]
        else:
            merged: dict[bytes, ListEntry] = {}
            for part in parts:
                merged.update(part)
            self._parts = [merged] if merged else []
        self._firsts = [min(p) for p in self._parts]
        self._count = sum(len(p) for p in self._parts)

    def get(self, badge: bytes) -> ListEntry | None:
        i = bisect_right(self._firsts, badge) - 1
        return self._parts[i].get(badge) if i >= 0 else None

    def __len__(self) -> int:
        return self._count


def segment_parts(segments: Iterable[ListSegment]) -> list[dict[bytes, ListEntry]]:
    """One dict per segment, for ``Snapshot``."""
    return [{entry.badge: entry for entry in segment.entries} for segment in segments]


class LocalAccess:
    """The installed snapshot + delta of the centre's list, and entries learnt online.

    Installs swap the whole snapshot under a lock, so a decision sees the old list or the
    new one, never half of each. A delta is kept beside the snapshot (badge -> its entry,
    or None when it left the list) and applied in O(delta): a cumulative delta names every
    badge touched since the snapshot, so it is exact over any earlier delta too.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._snapshot = Snapshot()
        self._changes: dict[bytes, ListEntry | None] = {}
        self._learnt: dict[bytes, ListEntry] = {}
        self.snapshot_version: int | None = None
        self.delta_version: int | None = None
        self.calendar: Calendar | None = None

    @property
    def version(self) -> int | None:
        """The installed list version: the applied delta's, else the snapshot's."""
        return self.delta_version if self.delta_version is not None else self.snapshot_version

    def __len__(self) -> int:
        with self._lock:
            count = len(self._snapshot)
            for badge, entry in self._changes.items():
                listed = self._snapshot.get(badge) is not None
                count += (entry is not None) - listed
            return count

    def install(
        self,
        version: int,
        index: dict[bytes, ListEntry] | Sequence[dict[bytes, ListEntry]],
        *,
        calendar: CentreHours | None = None,
    ) -> None:
        """Replace the whole list by snapshot ``version`` (learnt entries are forgotten).

        ``index`` is one dict, or one per segment (``segment_parts``); ``calendar`` the
        head's (None: open around the clock).
        """
        snapshot = Snapshot([index] if isinstance(index, dict) else index)
        cal = calendar_of(calendar)
        with self._lock:
            self.calendar = cal
            self._snapshot = snapshot
            self._changes = {}
            self._learnt = {}
            self.snapshot_version = version
            self.delta_version = None

    def apply(self, delta: ListDelta) -> bool:
        """Apply a cumulative delta over the installed snapshot; False if it does not fit."""
        with self._lock:
            if delta.base != self.snapshot_version:
                return False
            if self.delta_version is not None and delta.version <= self.delta_version:
                return False
            for entry in delta.upsert:
                self._changes[entry.badge] = entry
            for badge in delta.remove:
                self._changes[badge] = None
            self.delta_version = delta.version
            return True

    def learn(self, entry: ListEntry) -> None:
        """Keep an entry the server granted online until the next list install."""
        with self._lock:
            self._learnt[entry.badge] = entry

    def entry(self, badge: bytes | str) -> ListEntry | None:
        key = _key(badge)
        with self._lock:
            listed = self._changes[key] if key in self._changes else self._snapshot.get(key)
            return listed or self._learnt.get(key)

    def decide(
        self,
        badge: bytes | str,
        now: float,
        used_days: Callable[[int, int], set[int]] | None = None,
    ) -> Decision:
        """``now`` is the trusted time (``edge.clock.TrustedClock.now``); ``used_days(member,
        since_day)`` the local days this unit used a day credit of the member."""
        entry = self.entry(badge)
        return decide_entry(entry, self.calendar, now, used_days)


def decide_entry(
    entry: ListEntry | None,
    calendar: Calendar | None,
    now: float,
    used_days: Callable[[int, int], set[int]] | None = None,
) -> Decision:
    """``protocol.policy.decide`` with the day credits this unit used itself."""
    today = day_number(calendar, now)
    used_today, spent = False, 0
    if entry is not None and entry.plans and used_days is not None:
        counted = set(entry.days)
        mine = used_days(entry.member_id, today - 31)
        used_today = today in counted or today in mine
        spent = len(mine - counted)
    elif entry is not None:
        used_today = today in entry.days
    verdict = policy_decide(entry, calendar, now, used_today=used_today, spent_offline=spent)
    return Decision(
        verdict.granted,
        verdict.reason,
        verdict.member_id,
        today if verdict.uses_credit else None,
    )
