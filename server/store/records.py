"""Plain results the store hands back, the same whatever engine sits behind it."""

from __future__ import annotations

from dataclasses import dataclass, field

from protocol.lists import SEGMENT_ENTRIES
from protocol.messages import CentreHours, ListEntry


@dataclass(frozen=True)
class IngestResult:
    """What one committed batch of a unit's events changed."""

    device_id: str
    epoch: str
    seqs: list[int]
    new: int
    centre_id: str | None
    credited: tuple[int, ...] = ()  # members a day credit was counted for
    new_ids: frozenset[str] = frozenset()  # event_id of each event stored for the first time


@dataclass(frozen=True)
class StatusResult:
    """What storing a unit's status did: nothing for a unit missing from the registry."""

    known: bool
    rooms_taken: list[str]


@dataclass(frozen=True)
class CentreListState:
    """A centre's access list as published: snapshot ``snapshot_version`` (its entries in
    badge order) and the cumulative delta over it up to ``version``."""

    centre_id: str
    snapshot_version: int
    snapshot_issued_at: float
    snapshot: list[ListEntry]
    version: int
    issued_at: float  # of the delta
    upsert: list[ListEntry] = field(default_factory=list)
    remove: list[bytes] = field(default_factory=list)
    calendar: CentreHours | None = None  # the centre's, in the snapshot's head

    @property
    def segments(self) -> int:
        """How many segments the snapshot is cut into (at least one)."""
        return max(1, -(-len(self.snapshot) // SEGMENT_ENTRIES))
