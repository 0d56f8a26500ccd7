"""SQL for live occupancy: who is inside each centre, room states, units' states."""

from __future__ import annotations

from sqlite_utils import Database

from server.domain.occupancy import by_centre, presence_cutoff
from server.store.sqlite import centres
from server.store.sqlite.params import insert_rows


def record_passages(db: Database, passages: dict[tuple[str, int], tuple[bool, float]]) -> None:
    """Members went in or out: ``(centre_id, member_id) -> (inside, ts)``, one passage each
    (``Presence`` keeps the last); an older passage never overwrites a newer one."""
    insert_rows(
        db,
        "INSERT INTO presence (centre_id, member_id, inside, since, last_ts)",
        [(c, m, inside, ts, ts) for (c, m), (inside, ts) in passages.items()],
        " ON CONFLICT (centre_id, member_id) DO UPDATE SET"
        " inside = excluded.inside, since = excluded.since, last_ts = excluded.last_ts"
        " WHERE excluded.last_ts >= presence.last_ts",
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
    # The cutoff in SQL only keeps the rows small; the rule itself is applied by the domain.
    people = db.query(
        "SELECT p.centre_id, p.member_id, p.since, m.name FROM presence p"
        " LEFT JOIN members m ON m.id = p.member_id"
        " WHERE p.inside = 1 AND p.since > ? ORDER BY p.since",
        [presence_cutoff(now, max_stay_s)],
    )
    rooms = db.query(
        "SELECT r.*, d.state AS unit_state FROM rooms r"
        " LEFT JOIN devices d ON d.device_id = r.device_id ORDER BY r.name"
    )
    units = db.query("SELECT device_id, centre_id, state, last_seen FROM devices")
    return by_centre(centres.list_all(db), people, rooms, units, now=now, max_stay_s=max_stay_s)
