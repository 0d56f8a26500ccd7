"""What the live page shows: every centre visible to the operator, as one snapshot.

Built from the store (occupancy, centres, fleet, open alarms) and the bridge: while the
server has lost the broker, nothing it holds about units or rooms is current, so every
unit and room is shown as unknown ("inconnu"), never "en ligne".
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from server.domain.operators import CentreScope
from server.runtime import Runtime

ONLINE, OFFLINE, DEGRADED, UNKNOWN = "online", "offline", "degraded", "unknown"
# Open alarms that say a unit online is not working fully.
DEGRADING = frozenset({"reader_fault", "clock_unsynced", "outbox_filling", "centre_mismatch"})


@dataclass
class Snapshot:
    broker_connected: bool
    centres: list[dict[str, Any]]
    alarms: list[dict[str, Any]]
    at: float
    present: int = 0
    sites: list[dict[str, Any]] = field(default_factory=list)


def unit_state(unit: dict, broker_connected: bool) -> str:
    if not broker_connected:
        return UNKNOWN
    state = unit.get("state")
    if state == ONLINE:
        if "unit_silent" in (unit.get("open_alarms") or ()):
            return OFFLINE  # its heartbeat stopped: the network died without a word
        if (
            unit.get("faults")
            or unit.get("condition") == "degraded"
            or DEGRADING.intersection(unit.get("open_alarms") or ())
        ):
            return DEGRADED
        return ONLINE
    if state == OFFLINE:
        return OFFLINE
    return UNKNOWN


def snapshot(runtime: Runtime, scope: CentreScope, now: float | None = None) -> Snapshot:
    now = time.time() if now is None else now
    store = runtime.store
    connected = runtime.bridge.connected.is_set()
    details = {c["id"]: c for c in store.centres()}
    health: dict[str, dict] = {}
    for unit, _published, kinds in store.fleet(centre_ids=scope.centres):
        health[unit["device_id"]] = {**unit, "open_alarms": kinds}
    _, alarms = store.alarms(view="open", centre_ids=scope.centres, limit=50)
    alarms_by_centre: dict[str, list[dict]] = {}
    for alarm in alarms:
        alarms_by_centre.setdefault(alarm.get("centre_id") or "", []).append(alarm)
    centres = []
    for entry in store.occupancy(now):
        if not scope.sees(entry["centre_id"]):
            continue
        info = details.get(entry["centre_id"], {})
        units = []
        for unit in entry["units"]:
            full = health.get(unit["device_id"], unit)
            units.append(
                {
                    "device_id": unit["device_id"],
                    "state": unit_state(full, connected),
                    "since": (
                        full.get("health_at")
                        if "unit_silent" in (full.get("open_alarms") or ())
                        else full.get("state_since")
                    )
                    or unit.get("last_seen"),
                    "last_seen": unit.get("last_seen"),
                    "faults": full.get("faults") or [],
                }
            )
        rooms = [
            {**room, "state": room["state"] if connected else UNKNOWN} for room in entry["rooms"]
        ]
        centres.append(
            {
                **entry,
                "rooms": rooms,
                "units": units,
                "capacity": info.get("capacity"),
                "lat": info.get("lat"),
                "lon": info.get("lon"),
                "alarms": alarms_by_centre.get(entry["centre_id"], []),
                "state": centre_state(units),
            }
        )
    return Snapshot(
        broker_connected=connected,
        centres=centres,
        alarms=alarms,
        at=now,
        present=sum(c["present"] for c in centres),
    )


def centre_state(units: list[dict]) -> str:
    """The worst of its units' known states (unknown when none is known)."""
    states = {u["state"] for u in units}
    for state in (OFFLINE, DEGRADED, ONLINE, UNKNOWN):
        if state in states:
            return state
    return UNKNOWN
