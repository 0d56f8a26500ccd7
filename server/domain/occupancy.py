"""The occupancy rules: who counts as present, what a room's state means, grouped by centre."""

from __future__ import annotations

from collections.abc import Iterable

UNKNOWN = "unknown"


def presence_cutoff(now: float, max_stay_s: float) -> float:
    """Presence that began at or before this instant is gone.

    Nobody stays longer than the maximum stay, so someone whose exit was never seen
    (tailgating out, a unit offline) stops counting instead of staying forever.
    """
    return now - max_stay_s


def is_present(since: float, now: float, max_stay_s: float) -> bool:
    """Whether a person who went in at ``since`` still counts as inside at ``now``."""
    return since > presence_cutoff(now, max_stay_s)


def room_state(recorded: str | None, unit_state: str | None) -> str:
    """What the page shows for a room: its last state only while its unit is online.

    A silent unit's rooms may have changed since, so they are unknown, not stale.
    """
    if unit_state != "online":
        return UNKNOWN
    return recorded or UNKNOWN


def by_centre(
    centres: Iterable[dict],
    people: Iterable[dict],
    rooms: Iterable[dict],
    units: Iterable[dict],
    *,
    now: float,
    max_stay_s: float,
) -> list[dict]:
    """One entry per centre (in the given order): people present, rooms, units.

    ``people`` rows carry centre_id, member_id, name, since (those inside); ``rooms`` rows
    centre_id, room_id, name, state, since and unit_state; ``units`` rows centre_id,
    device_id, state, last_seen. Each list keeps the order it was given in.
    """
    present: dict[str, list[dict]] = {}
    for p in people:
        if is_present(p["since"], now, max_stay_s):
            present.setdefault(p["centre_id"], []).append(
                {"member_id": p["member_id"], "name": p["name"], "since": p["since"]}
            )
    room_rows: dict[str, list[dict]] = {}
    for r in rooms:
        room_rows.setdefault(r["centre_id"], []).append(
            {
                "room_id": r["room_id"],
                "name": r["name"],
                "state": room_state(r["state"], r["unit_state"]),
                "since": r["since"],
            }
        )
    unit_rows: dict[str, list[dict]] = {}
    for u in units:
        unit_rows.setdefault(u["centre_id"], []).append(
            {
                "device_id": u["device_id"],
                "state": u["state"] or UNKNOWN,
                "last_seen": u["last_seen"],
            }
        )
    return [
        {
            "centre_id": c["id"],
            "name": c["name"],
            "present": len(present.get(c["id"], [])),
            "people": present.get(c["id"], []),
            "rooms": room_rows.get(c["id"], []),
            "units": unit_rows.get(c["id"], []),
        }
        for c in centres
    ]
