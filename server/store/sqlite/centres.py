"""SQL for centres: the telecentres units are assigned to."""

from __future__ import annotations

import json
from datetime import date

from sqlite_utils import Database

from protocol.calendar import Calendar
from server.domain import calendar as calendar_rules
from server.store.errors import Conflict, NotFound


def create(db: Database, centre_id: str, name: str, commune: str | None, now: float) -> None:
    """Insert a new centre; an existing id is a conflict, never overwritten."""
    if db["centres"].count_where("id = ?", [centre_id]):
        raise Conflict(f"centre {centre_id!r} already exists")
    db["centres"].insert({"id": centre_id, "name": name, "commune": commune, "created_at": now})


def get(db: Database, centre_id: str) -> dict:
    rows = list(db["centres"].rows_where("id = ?", [centre_id]))
    if not rows:
        raise NotFound(f"no centre {centre_id!r}")
    return _row(rows[0])


def list_all(db: Database) -> list[dict]:
    return [_row(r) for r in db["centres"].rows_where(order_by="name")]


def _row(r: dict) -> dict:
    out = dict(r)
    out["hours"] = json.loads(r["hours"]) if r.get("hours") else None
    return out


def closures(db: Database, centre_id: str) -> list[dict]:
    return list(db["closures"].rows_where("centre_id = ?", [centre_id], order_by="start_date"))


def calendar(db: Database, centre_id: str, ts: float) -> Calendar:
    """The centre's calendar around ``ts`` (hours, closures, public holidays)."""
    centre = get(db, centre_id)
    return calendar_rules.calendar(centre, closures(db, centre_id), date.fromtimestamp(ts))


def update(db: Database, centre_id: str, fields: dict, now: float) -> None:
    get(db, centre_id)
    row = dict(fields)
    if "hours" in row:
        row["hours"] = None if row["hours"] is None else json.dumps(row["hours"])
    db["centres"].update(centre_id, {**row, "updated_at": now})


def add_closure(db: Database, centre_id: str, start: str, end: str, reason: str | None) -> int:
    get(db, centre_id)
    return (
        db["closures"]
        .insert({"centre_id": centre_id, "start_date": start, "end_date": end, "reason": reason})
        .last_pk
    )


def remove_closure(db: Database, centre_id: str, closure_id: int) -> dict:
    rows = list(db["closures"].rows_where("id = ? AND centre_id = ?", [closure_id, centre_id]))
    if not rows:
        raise NotFound(f"no closure {closure_id} at centre {centre_id!r}")
    db["closures"].delete(closure_id)
    return rows[0]


def rooms(db: Database, centre_id: str) -> list[dict]:
    get(db, centre_id)
    rows = db.query(
        "SELECT room_id, name, capacity, bookable, device_id FROM rooms WHERE centre_id = ?"
        " ORDER BY room_id",
        [centre_id],
    )
    return [{**r, "bookable": bool(r["bookable"])} for r in rows]


def put_room(db: Database, centre_id: str, room_id: str, fields: dict) -> None:
    """Describe a room (its live state, reported by the units, is left alone)."""
    get(db, centre_id)
    db.execute(
        "INSERT INTO rooms (centre_id, room_id, name, capacity, bookable)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT (centre_id, room_id) DO UPDATE SET"
        " name = excluded.name, capacity = excluded.capacity, bookable = excluded.bookable",
        [centre_id, room_id, fields["name"], fields.get("capacity"), int(fields["bookable"])],
    )


def doors(db: Database, centre_id: str) -> list[dict]:
    get(db, centre_id)
    return list(db["doors"].rows_where("centre_id = ?", [centre_id], order_by="door_id"))


def put_door(db: Database, centre_id: str, door_id: str, fields: dict) -> None:
    get(db, centre_id)
    device = fields.get("device_id")
    if device is not None and not db["devices"].count_where(
        "device_id = ? AND centre_id = ?", [device, centre_id]
    ):
        raise NotFound(f"device_id: no unit {device!r} at centre {centre_id!r}")
    db["doors"].insert(
        {"centre_id": centre_id, "door_id": door_id, "device_id": device, "name": fields["name"]},
        pk=("centre_id", "door_id"),
        replace=True,
    )
