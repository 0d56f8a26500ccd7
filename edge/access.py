"""Door decisions from the unit's local access list: pure logic, no I/O.

The list is the centre's signed snapshot (an index by the 32 raw bytes of each badge hash)
plus the cumulative delta applied over it. A revoked or suspended badge is denied at once,
offline too; an active one is checked against its validity window; a badge the list does
not know is for the server to decide.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from protocol.lists import apply_delta
from protocol.messages import ACTIVE, ListDelta, ListEntry


@dataclass(frozen=True)
class Decision:
    granted: bool
    reason: str
    member_id: int | None = None

    @property
    def needs_server(self) -> bool:
        """The list does not know the card: only the server can say."""
        return self.reason == "unknown_card"


def _key(badge: bytes | str) -> bytes:
    return bytes.fromhex(badge) if isinstance(badge, str) else badge


class LocalAccess:
    """The installed snapshot + delta of the centre's list, and entries learnt online.

    Installs swap the whole index under a lock, so a decision sees the old list or the new
    one, never half of each.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._index: dict[bytes, ListEntry] = {}
        self._learnt: dict[bytes, ListEntry] = {}
        self.snapshot_version: int | None = None
        self.delta_version: int | None = None

    @property
    def version(self) -> int | None:
        """The installed list version: the applied delta's, else the snapshot's."""
        return self.delta_version if self.delta_version is not None else self.snapshot_version

    def __len__(self) -> int:
        return len(self._index)

    def install(self, version: int, index: dict[bytes, ListEntry]) -> None:
        """Replace the whole list by snapshot ``version`` (learnt entries are forgotten)."""
        with self._lock:
            self._index = index
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
            # In place, in O(delta): a cumulative delta names every badge touched since the
            # snapshot, so applying it over an earlier delta of the same snapshot is exact,
            # and a decision never waits for a copy of a 250,000-badge index.
            apply_delta(self._index, delta)
            self.delta_version = delta.version
            return True

    def learn(self, entry: ListEntry) -> None:
        """Keep an entry the server granted online until the next list install."""
        with self._lock:
            self._learnt[entry.badge] = entry

    def entry(self, badge: bytes | str) -> ListEntry | None:
        key = _key(badge)
        with self._lock:
            return self._index.get(key) or self._learnt.get(key)

    def decide(self, badge: bytes | str, now: float) -> Decision:
        """``now`` is the trusted time (``edge.clock.TrustedClock.now``)."""
        entry = self.entry(badge)
        if entry is None:
            return Decision(False, "unknown_card")
        if entry.state != ACTIVE:
            return Decision(False, "revoked", entry.member_id)
        return check_window(entry, now)


def check_window(entry: ListEntry, now: float) -> Decision:
    if entry.valid_from is not None and now < entry.valid_from:
        return Decision(False, "not_yet_valid", entry.member_id)
    if entry.valid_until is not None and now >= entry.valid_until:
        return Decision(False, "expired", entry.member_id)
    return Decision(True, "granted", entry.member_id)
