"""Door decisions from the unit's local access list: pure logic, no I/O.

The list is the centre's signed snapshot (an index by the 32 raw bytes of each badge hash)
plus the cumulative delta applied over it. A revoked or suspended badge is denied at once,
offline too; an active one is checked against its validity window; a badge the list does
not know is for the server to decide. The rules are ``protocol.policy``'s, the same the
server applies online; the centre's calendar comes with the snapshot's head.
"""

from __future__ import annotations

import heapq
import threading
from array import array
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import accumulate

import msgspec

from protocol.calendar import Calendar
from protocol.messages import CentreHours, ListDelta, ListEntry, ListSegment
from protocol.policy import UNKNOWN_CARD, calendar_of, day_number
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
        return self.reason == UNKNOWN_CARD


UNKNOWN = Decision(False, UNKNOWN_CARD)


def _key(badge: bytes | str) -> bytes:
    return bytes.fromhex(badge) if isinstance(badge, str) else badge


BADGE_BYTES = 32  # protocol.messages.BadgeBytes
# How MessagePack writes an entry's badge (bin 8, 32 bytes) after the entry's array header:
# a packed entry leaves it out, since the part already holds every badge.
_BADGE_MARK = b"\xc4\x20"
_CUT = 1 + len(_BADGE_MARK) + BADGE_BYTES

_entry_decoder = msgspec.msgpack.Decoder(ListEntry)
_entry_encoder = msgspec.msgpack.Encoder()


class Part:
    """A run of entries sorted by badge, packed: no Python object per entry.

    ``badges`` holds the 32-byte badges end to end, ``blob`` each entry as MessagePack less
    its badge, and ``offsets`` where each one starts (one more for the end). A lookup is a
    binary search on ``badges`` and one small decode: about 60 bytes an entry instead of
    ~500 for a decoded ``ListEntry`` in a dict, and nothing for the garbage collector to walk.
    """

    __slots__ = ("badges", "blob", "offsets")

    def __init__(
        self, badges: Sequence[bytes] = (), packed: Sequence[bytes | msgspec.Raw] = ()
    ) -> None:
        """``badges`` sorted, each once, and ``packed`` their entries in the same order, each
        as MessagePack less its badge (``_without_badge``)."""
        self.badges = b"".join(badges)
        self.blob = b"".join(packed)
        self.offsets = array("I", accumulate(map(len, packed), initial=0))

    @classmethod
    def signed(cls, entries: Sequence[ListEntry], raws: Sequence[msgspec.Raw]) -> Part:
        """Pack a segment's validated ``entries`` with their bytes as signed (``raws``, the
        same entries undecoded): nothing is encoded again when the server cut them in badge
        order, as it does."""
        badges = [entry.badge for entry in entries]
        in_order = all(a < b for a, b in zip(badges, badges[1:], strict=False))
        if len(raws) != len(entries) or not in_order:
            return cls.of(entries)
        packed = [_without_badge(bytes(raw)) for raw in raws]
        if None in packed:  # a badge written another way than the server's encoder does
            return cls.of(entries)
        return cls(badges, packed)  # type: ignore[arg-type]

    @classmethod
    def of(cls, entries: Iterable[ListEntry]) -> Part:
        """Pack decoded entries (any order; of a badge listed twice the last one counts)."""
        latest = {entry.badge: entry for entry in entries}
        badges = sorted(latest)
        encode = _entry_encoder.encode
        return cls(badges, [_without_badge(encode(latest[badge])) for badge in badges])  # type: ignore[misc]

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def first(self) -> bytes:
        return self.badges[:BADGE_BYTES]

    @property
    def last(self) -> bytes:
        return self.badges[-BADGE_BYTES:]

    def get(self, badge: bytes) -> ListEntry | None:
        badges = self.badges
        lo, hi = 0, len(self.offsets) - 1
        while lo < hi:
            mid = (lo + hi) // 2
            if badges[mid * BADGE_BYTES : (mid + 1) * BADGE_BYTES] < badge:
                lo = mid + 1
            else:
                hi = mid
        at = lo * BADGE_BYTES
        if badges[at : at + BADGE_BYTES] != badge:
            return None
        packed = self.blob[self.offsets[lo] : self.offsets[lo + 1]]
        return _entry_decoder.decode(b"".join((packed[:1], _BADGE_MARK, badge, packed[1:])))

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        """(badge, packed entry less its badge) in badge order."""
        badges, blob, offsets = self.badges, self.blob, self.offsets
        for i in range(len(offsets) - 1):
            yield badges[i * BADGE_BYTES : (i + 1) * BADGE_BYTES], blob[offsets[i] : offsets[i + 1]]


def _without_badge(entry: bytes) -> bytes | None:
    """A packed entry's bytes less its badge, or None if it is not written as expected."""
    if entry[0] & 0xF0 != 0x90 or entry[1:3] != _BADGE_MARK:  # a short array, then bin 8
        return None
    return entry[:1] + entry[_CUT:]


def _merged(parts: Sequence[Part]) -> Part:
    """One part from parts whose ranges overlap; of a badge in several, the last part's."""
    streams = [
        (((badge, rank), packed) for badge, packed in part.items())
        for rank, part in enumerate(parts)
    ]
    badges: list[bytes] = []
    entries: list[bytes] = []
    for (badge, _), packed in heapq.merge(*streams, key=lambda item: item[0]):
        if badges and badges[-1] == badge:
            entries[-1] = packed  # a later part's entry for the same badge wins
        else:
            badges.append(badge)
            entries.append(packed)
    return Part(badges, entries)


class Snapshot:
    """A snapshot's entries kept as the server cut them: one packed ``Part`` per segment.

    The server cuts a snapshot in badge order, so a badge's segment is found by bisection
    on each segment's first badge. Parts that overlap (not cut in order) are merged into
    one. Dicts of entries (tests, the online path) are packed on the way in.
    """

    def __init__(self, parts: Sequence[Part | dict[bytes, ListEntry]] = ()) -> None:
        packed = [p if isinstance(p, Part) else Part.of(p.values()) for p in parts]
        packed = [p for p in packed if len(p)]
        in_order = sorted(packed, key=lambda p: p.first)
        if all(a.last < b.first for a, b in zip(in_order, in_order[1:], strict=False)):
            self._parts = in_order
        else:
            self._parts = [_merged(packed)]
        packed = self._parts
        self._firsts = [p.first for p in packed]
        self._count = sum(len(p) for p in packed)

    def get(self, badge: bytes) -> ListEntry | None:
        i = bisect_right(self._firsts, badge) - 1
        return self._parts[i].get(badge) if i >= 0 else None

    def __len__(self) -> int:
        return self._count


class _SignedEntries(msgspec.Struct):
    """A segment body's entries left undecoded (its other fields are not read)."""

    entries: list[msgspec.Raw]


_signed_entries = msgspec.msgpack.Decoder(_SignedEntries)


def signed_part(segment: ListSegment, body: bytes) -> Part:
    """``segment`` (opened and validated from ``body``, its signed bytes) packed."""
    return Part.signed(segment.entries, _signed_entries.decode(body).entries)


def segment_parts(segments: Iterable[ListSegment]) -> list[Part]:
    """One packed part per segment, for ``Snapshot``."""
    return [Part.of(segment.entries) for segment in segments]


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
        index: dict[bytes, ListEntry] | Sequence[Part | dict[bytes, ListEntry]],
        *,
        calendar: CentreHours | None = None,
    ) -> None:
        """Replace the whole list by snapshot ``version`` (learnt entries are forgotten).

        ``index`` is one dict, or one packed part per segment (``segment_parts``); ``calendar`` the
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
    if entry is None:  # for the server to decide: no calendar needed
        return UNKNOWN
    today = day_number(calendar, now)
    used_today, spent = False, 0
    if entry.plans and used_days is not None:
        counted = set(entry.days)
        mine = used_days(entry.member_id, today - 31)
        used_today = today in counted or today in mine
        spent = len(mine - counted)
    else:
        used_today = today in entry.days
    verdict = policy_decide(entry, calendar, now, used_today=used_today, spent_offline=spent)
    return Decision(
        verdict.granted,
        verdict.reason,
        verdict.member_id,
        today if verdict.uses_credit else None,
    )
