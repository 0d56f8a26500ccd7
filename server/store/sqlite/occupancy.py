"""SQL for live occupancy: who is inside each centre, room states, units' states."""

from __future__ import annotations

from sqlite_utils import Database

from server.store.sqlite import centres


def record_passage(db: Database, centre_id: str, member_id: int, inside: bool, ts: float) -> None:
    """A member went in or out at ``ts``; an older passage never overwrites a newer one."""
    db.execute(
        "INSERT INTO presence (centre_id, member_id, inside, since, last_ts)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT (centre_id, member_id) DO UPDATE SET"
        " inside = excluded.inside, since = excluded.since, last_ts = excluded.last_ts"
        " WHERE excluded.last_ts >= presence.last_ts",
        [centre_id, member_id, inside, ts, ts],
    )


def record_room(
    db: Database,
    centre_id: str,
    room_id: str,
    device_id: str,
    state: str | None,
    ts: float,
) -> None:
    """A room changed state at ``ts``; an older report never overwrites a newer one."""
    db.execute(
        "INSERT INTO rooms (centre_id, room_id, device_id, name, state, since, last_ts)"
        " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (centre_id, room_id) DO UPDATE SET"
        " state = excluded.state, since = excluded.since, last_ts = excluded.last_ts,"
        " device_id = excluded.device_id"
        " WHERE rooms.last_ts IS NULL OR excluded.last_ts >= rooms.last_ts",
        [centre_id, room_id, device_id, room_id, state, ts, ts],
    )


def current(db: Database, now: float, max_stay_s: float) -> list[dict]:
    """People present and room states per centre; rooms of a silent unit are unknown."""
    people: dict[str, list[dict]] = {}
    for r in db.query(
        "SELECT p.centre_id, p.member_id, p.since, m.name FROM presence p"
        " LEFT JOIN members m ON m.id = p.member_id"
        " WHERE p.inside = 1 AND p.since > ? ORDER BY p.since",
        [now - max_stay_s],
    ):
        people.setdefault(r["centre_id"], []).append(
            {"member_id": r["member_id"], "name": r["name"], "since": r["since"]}
        )
    rooms: dict[str, list[dict]] = {}
    for r in db.query(
        "SELECT r.*, d.state AS unit_state FROM rooms r"
        " LEFT JOIN devices d ON d.device_id = r.device_id ORDER BY r.name"
    ):
        state = (r["state"] or "unknown") if r["unit_state"] == "online" else "unknown"
        rooms.setdefault(r["centre_id"], []).append(
            {"room_id": r["room_id"], "name": r["name"], "state": state, "since": r["since"]}
        )
    units: dict[str, list[dict]] = {}
    for r in db.query("SELECT device_id, centre_id, state, last_seen FROM devices"):
        units.setdefault(r["centre_id"], []).append(
            {
                "device_id": r["device_id"],
                "state": r["state"] or "unknown",
                "last_seen": r["last_seen"],
            }
        )
    return [
        {
            "centre_id": c["id"],
            "name": c["name"],
            "present": len(people.get(c["id"], [])),
            "people": people.get(c["id"], []),
            "rooms": rooms.get(c["id"], []),
            "units": units.get(c["id"], []),
        }
        for c in centres.list_all(db)
    ]
