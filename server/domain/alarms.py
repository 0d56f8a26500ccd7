"""Alarms: which ones a unit's status, its door events and its silence open or close.

Pure rules, no I/O. An alarm is open while its condition holds and closes by itself when
the condition ends (a ``door_closed`` event, the unit back online, its clock synchronised,
its faults cleared…); open or closed, it stays listed until an operator acknowledges it.
One alarm per (unit, kind, door) is open at a time: raising it again while it is open
only counts the repeat.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from protocol.messages import Status

DOOR_FORCED = "door_forced"
DOOR_HELD = "door_held"
READER_FAULT = "reader_fault"
UNIT_OFFLINE = "unit_offline"
UNIT_SILENT = "unit_silent"
CLOCK_UNSYNCED = "clock_unsynced"
OUTBOX_FILLING = "outbox_filling"
CENTRE_MISMATCH = "centre_mismatch"

KINDS = (
    DOOR_FORCED,
    DOOR_HELD,
    READER_FAULT,
    UNIT_OFFLINE,
    UNIT_SILENT,
    CLOCK_UNSYNCED,
    OUTBOX_FILLING,
    CENTRE_MISMATCH,
)

# Door events: the kinds each opens, and the door kinds a ``door_closed`` ends.
OPENED_BY_EVENT = {"door_forced": DOOR_FORCED, "door_held": DOOR_HELD}
CLOSED_BY_EVENT = {"door_closed": (DOOR_FORCED, DOOR_HELD)}

# Which alarms a listing shows: ``active`` (the default) is what still needs someone,
# open or not yet acknowledged.
VIEWS = ("active", "open", "closed", "unacknowledged", "all")


@dataclass(frozen=True)
class Thresholds:
    """When a unit's silence or backlog becomes an alarm (settings ``alarm_*``)."""

    offline_after_s: float = 300.0
    silent_after_s: float = 30.0
    outbox_pending: int = 500


@dataclass(frozen=True)
class Raised:
    """One condition that must have an open alarm."""

    kind: str
    door: str | None = None
    detail: str | None = None


@dataclass(frozen=True)
class Verdict:
    """What one status says: ``raised`` must be open; any other open alarm of a kind in
    ``settled`` closes (the status shows its condition is over)."""

    raised: list[Raised] = field(default_factory=list)
    settled: frozenset[str] = frozenset()


def from_status(status: Status, registry_centre: str | None, thresholds: Thresholds) -> Verdict:
    """The alarms an ``online`` status opens and the kinds it settles.

    An ``offline`` status (the last will) says nothing about the unit's health: it settles
    nothing; ``unit_offline`` is opened by ``offline_too_long`` once the silence lasts.
    A field the unit left out settles nothing either.
    """
    if status.state != "online":
        return Verdict()
    raised: list[Raised] = []
    settled = {UNIT_OFFLINE, READER_FAULT}
    if status.clock_synced is not None:
        settled.add(CLOCK_UNSYNCED)
        if not status.clock_synced:
            raised.append(Raised(CLOCK_UNSYNCED, detail="the unit's clock is not synchronised"))
    if status.outbox_pending is not None:
        settled.add(OUTBOX_FILLING)
        if status.outbox_pending > thresholds.outbox_pending:
            raised.append(
                Raised(
                    OUTBOX_FILLING,
                    detail=f"{status.outbox_pending} events wait in the unit's outbox "
                    f"(alarm above {thresholds.outbox_pending})",
                )
            )
    by_door: dict[str | None, list[str]] = {}
    for fault in status.faults or []:
        door, message = split_fault(fault, status.doors or [])
        by_door.setdefault(door, []).append(message)
    raised += [Raised(READER_FAULT, door, "; ".join(msgs)[:200]) for door, msgs in by_door.items()]
    centre = centre_verdict(status.centre, registry_centre)
    return Verdict(raised + centre.raised, frozenset(settled | centre.settled))


def centre_verdict(reported: str | None, registry_centre: str | None) -> Verdict:
    """The centre a unit's config names against the registry's (either unknown: nothing)."""
    if reported is None or registry_centre is None:
        return Verdict()
    if reported == registry_centre:
        return Verdict([], frozenset({CENTRE_MISMATCH}))
    detail = f"the unit's config says centre {reported!r}, the registry {registry_centre!r}"
    return Verdict([Raised(CENTRE_MISMATCH, detail=detail)], frozenset({CENTRE_MISMATCH}))


def split_fault(fault: str, doors: Iterable[str]) -> tuple[str | None, str]:
    """``"entree: card reader: no answer"`` -> ``("entree", "card reader: no answer")``
    when ``entree`` is one of the unit's ``doors``; any other fault -> ``(None, fault)``."""
    door, sep, message = fault.partition(": ")
    if sep and message and door in set(doors):
        return door, message
    return None, fault


def offline_cutoff(now: float, thresholds: Thresholds) -> float:
    """A unit offline since this instant or before has been offline too long."""
    return now - thresholds.offline_after_s


def offline_too_long(state: str | None, since: float | None, now: float, t: Thresholds) -> bool:
    return state == "offline" and since is not None and since <= offline_cutoff(now, t)


def silent_cutoff(now: float, thresholds: Thresholds) -> float:
    """An online unit whose last heartbeat came at this instant or before has gone silent."""
    return now - thresholds.silent_after_s


def silent_detail(thresholds: Thresholds) -> str:
    return f"no heartbeat for more than {thresholds.silent_after_s:g} s while online"


def offline_detail(thresholds: Thresholds) -> str:
    return f"offline for more than {thresholds.offline_after_s:g} s"
