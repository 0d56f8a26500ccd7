"""SQL for units (devices): their centre, their last status, the rooms they announce."""

from __future__ import annotations

import json
from typing import Any

from sqlite_utils import Database

from protocol.messages import Status
from server.store.errors import NotFound


def assign(db: Database, device_id: str, centre_id: str) -> None:
    """Put a unit in a centre, creating its row if the unit never spoke yet."""
    db["devices"].upsert({"device_id": device_id, "centre_id": centre_id}, pk="device_id")


def get(db: Database, device_id: str) -> dict:
    rows = list(db["devices"].rows_where("device_id = ?", [device_id]))
    if not rows:
        raise NotFound(f"no unit {device_id!r}")
    return _row(rows[0])


def list_all(db: Database, centre_id: str | None = None) -> list[dict]:
    where, args = ("centre_id = ?", [centre_id]) if centre_id else (None, [])
    return [_row(r) for r in db["devices"].rows_where(where, args, order_by="device_id")]


def record_status(db: Database, status: Status, received_at: float) -> None:
    """Store a unit's birth or last will; rooms it announces appear on the dashboard."""
    row: dict[str, Any] = {
        "device_id": status.device_id,
        "state": status.state,
        "last_seen": received_at,
    }
    existing = list(db["devices"].rows_where("device_id = ?", [status.device_id]))
    if not existing:
        row["first_seen"] = received_at
    if status.state == "online":
        row.update(
            software_version=status.software_version,
            config_hash=status.config_hash,
            access_list_version=status.access_list_version,
            clock_synced=status.clock_synced,
            outbox_pending=status.outbox_pending,
            faults=json.dumps(status.faults or []),
            doors=json.dumps(status.doors or []),
        )
    db["devices"].upsert(row, pk="device_id")
    centre_id = existing[0]["centre_id"] if existing else None
    if centre_id and status.rooms:
        for room in status.rooms:
            db.execute(
                "INSERT INTO rooms (centre_id, room_id, device_id, name)"
                " VALUES (?, ?, ?, ?)"
                " ON CONFLICT (centre_id, room_id) DO UPDATE SET"
                " name = excluded.name, device_id = excluded.device_id",
                [centre_id, room.id, status.device_id, room.name],
            )


def register_sender(db: Database, device_id: str, received_at: float) -> str | None:
    """The centre of a unit that sent events; a unit never seen before gets a row (online)."""
    rows = list(db["devices"].rows_where("device_id = ?", [device_id]))
    if rows:
        return rows[0]["centre_id"]
    db["devices"].insert(
        {
            "device_id": device_id,
            "first_seen": received_at,
            "last_seen": received_at,
            "state": "online",
        }
    )
    return None


def touch(db: Database, device_id: str, seen_at: float) -> None:
    """The unit was heard live (not replaying its outbox) at ``seen_at``."""
    db.execute("UPDATE devices SET last_seen = ? WHERE device_id = ?", [seen_at, device_id])


def _row(r: dict) -> dict:
    out = dict(r)
    for key in ("faults", "doors"):
        out[key] = json.loads(r[key]) if r.get(key) else []
    if out.get("clock_synced") is not None:
        out["clock_synced"] = bool(out["clock_synced"])
    return out
