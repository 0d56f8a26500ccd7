"""Plain results the store hands back, the same whatever engine sits behind it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class IngestResult:
    """What one committed batch of a unit's events changed."""

    device_id: str
    epoch: str
    seqs: list[int]
    new: int
    centre_id: str | None


@dataclass(frozen=True)
class StatusResult:
    """What storing a unit's status did: nothing for a unit missing from the registry."""

    known: bool
    rooms_taken: list[str]
