"""SQL for units (devices): their centre, their last status, the rooms they announce."""

from __future__ import annotations

import json
from typing import Any

import msgspec
from sqlite_utils import Database

from protocol.messages import Health, Status
from server.domain import alarms as alarm_rules
from server.domain import fleet
from server.store.errors import NotFound
from server.store.records import StatusResult
from server.store.sqlite import alarms


def assign(db: Database, device_id: str, centre_id: str) -> None:
    """Put a unit in a centre, creating its row if the unit never spoke yet."""
    db["devices"].upsert({"device_id": device_id, "centre_id": centre_id}, pk="device_id")


def get(db: Database, device_id: str) -> dict:
    rows = list(db["devices"].rows_where("device_id = ?", [device_id]))
    if not rows:
        raise NotFound(f"no unit {device_id!r}")
    return to_dict(rows[0])


def list_all(db: Database, centre_id: str | None = None) -> list[dict]:
    where, args = ("centre_id = ?", [centre_id]) if centre_id else (None, [])
    return [to_dict(r) for r in db["devices"].rows_where(where, args, order_by="device_id")]


def record_status(
    db: Database,
    status: Status,
    received_at: float,
    *,
    retained: bool = False,
    thresholds: alarm_rules.Thresholds | None = None,
) -> StatusResult:
    """Store a registered unit's birth or last will, the rooms it announces, and the
    alarms it opens or closes (``server.domain.alarms``).

    A unit missing from the registry creates nothing. A room another unit of the same
    centre already holds is refused for that room; the others are kept. A ``retained``
    status is the broker's copy replayed when the server (re)subscribes: it tells the
    unit's state but not that the unit was heard now, so ``last_seen`` stays.
    """
    existing = list(db["devices"].rows_where("device_id = ?", [status.device_id]))
    if not existing:
        return StatusResult(known=False, rooms_taken=[])
    before = existing[0]
    row: dict[str, Any] = {"state": status.state}
    if not retained:
        row["last_seen"] = received_at
    if before.get("state") != status.state:
        row["state_since"] = received_at
    if before.get("first_seen") is None:
        row["first_seen"] = received_at
    if status.state == "online":
        row.update(
            software_version=status.software_version,
            config_hash=status.config_hash,
            access_list_version=status.list_version,
            clock_synced=status.clock_synced,
            outbox_pending=status.outbox_pending,
            outbox_oldest_at=fleet.oldest_pending_at(
                status.ts, status.outbox_oldest_ts, received_at
            ),
            reported_centre=status.centre,
            faults=json.dumps(status.faults or []),
            doors=json.dumps(status.doors or []),
            lockdown=status.lockdown,
        )
    db["devices"].update(status.device_id, row)
    centre_id = before["centre_id"]
    verdict = alarm_rules.from_status(status, centre_id, thresholds or alarm_rules.Thresholds())
    alarms.apply(db, status.device_id, centre_id, verdict, received_at)
    taken: list[str] = []
    if centre_id and status.rooms:
        for room in status.rooms:
            holder = room_holder(db, centre_id, room.id)
            if holder is not None and holder != status.device_id:
                taken.append(room.id)
                continue
            db.execute(
                "INSERT INTO rooms (centre_id, room_id, device_id, name)"
                " VALUES (?, ?, ?, ?)"
                " ON CONFLICT (centre_id, room_id) DO UPDATE SET"
                " name = excluded.name, device_id = excluded.device_id",
                [centre_id, room.id, status.device_id, room.name],
            )
    return StatusResult(known=True, rooms_taken=taken)


def record_health(
    db: Database, health: Health, received_at: float, *, retained: bool = False
) -> bool:
    """Keep a registered unit's heartbeat; a live one (not the broker's retained copy)
    moves ``last_seen`` and ``health_at`` and closes ``unit_silent``.

    True when the dashboard has something new to show: the unit's condition changed, or
    it was silent and is heard again. A unit missing from the registry changes nothing.
    """
    row = db.execute(
        "SELECT centre_id, condition FROM devices WHERE device_id = ?", [health.device_id]
    ).fetchone()
    if row is None:
        return False
    changed = row[1] != health.condition
    values: dict[str, Any] = {
        "health": msgspec.json.encode(health).decode(),
        "condition": health.condition,
    }
    if not retained:
        values.update(health_at=received_at, last_seen=received_at)
    db["devices"].update(health.device_id, values)
    if not retained:
        silent = {alarm_rules.UNIT_SILENT}
        changed |= alarms.close_alarms(db, health.device_id, silent, received_at) > 0
    return changed


def room_holder(db: Database, centre_id: str, room_id: str) -> str | None:
    """The unit of the centre that reports this room, if one still does."""
    row = db.execute(
        "SELECT r.device_id FROM rooms r JOIN devices d ON d.device_id = r.device_id"
        " WHERE r.centre_id = ? AND r.room_id = ? AND d.centre_id = r.centre_id",
        [centre_id, room_id],
    ).fetchone()
    return row[0] if row else None


def centre_of(db: Database, device_id: str) -> tuple[bool, str | None]:
    """(whether the unit is in the registry, its centre)."""
    row = db.execute("SELECT centre_id FROM devices WHERE device_id = ?", [device_id]).fetchone()
    return (False, None) if row is None else (True, row[0])


def touch_all(db: Database, seen: dict[str, float]) -> None:
    """Units heard live (not replaying their outbox): unit -> when, in one statement."""
    if seen:
        db.conn.executemany(
            "UPDATE devices SET last_seen = ? WHERE device_id = ?",
            [(at, device_id) for device_id, at in sorted(seen.items())],
        )


def to_dict(r: dict) -> dict:
    """A devices row as the API gives it (faults and doors as lists)."""
    out = dict(r)
    for key in ("faults", "doors"):
        out[key] = json.loads(r[key]) if r.get(key) else []
    if "health" in out:
        out["health"] = json.loads(r["health"]) if r.get("health") else None
    for flag in ("clock_synced", "lockdown"):
        if out.get(flag) is not None:
            out[flag] = bool(out[flag])
    return out
