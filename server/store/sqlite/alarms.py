"""SQL for alarms: open and close them as statuses, door events and silence dictate
(``server.domain.alarms``), list them, acknowledge them.

Writes run on the writer thread, inside the transaction of the status or events that
caused them. One alarm per (unit, kind, door) is open at a time (a partial unique index,
migration m070_alarms): raising an open one again only refreshes its detail.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlite_utils import Database

from protocol.messages import Event
from server.domain import alarms as rules
from server.store.errors import Conflict, NotFound

_SAME_DOOR = "ifnull(door, '') = ifnull(?, '')"


def raise_alarm(
    db: Database,
    device_id: str,
    centre_id: str | None,
    raised: rules.Raised,
    at: float,
    *,
    event_ts: float | None = None,
) -> tuple[int, bool]:
    """Open the alarm unless the same one is open already: (its id, whether it is new)."""
    row = db.execute(
        f"SELECT id, detail FROM alarms WHERE device_id = ? AND kind = ? AND {_SAME_DOOR}"
        " AND closed_at IS NULL",
        [device_id, raised.kind, raised.door],
    ).fetchone()
    if row is not None:
        if raised.detail is not None and raised.detail != row[1]:
            db.execute("UPDATE alarms SET detail = ? WHERE id = ?", [raised.detail, row[0]])
        return row[0], False
    row = {
        "kind": raised.kind,
        "device_id": device_id,
        "centre_id": centre_id,
        "door": raised.door,
        "detail": raised.detail,
        "opened_at": at,
        "event_ts": event_ts,
    }
    return db["alarms"].insert(row).last_pk, True


def close_alarms(
    db: Database,
    device_id: str,
    kinds: Iterable[str],
    at: float,
    *,
    keep: Iterable[tuple[str, str | None]] = (),
) -> int:
    """Close the unit's open alarms of ``kinds`` but those in ``keep`` (kind, door)."""
    kept, closed_kinds = set(keep), set(kinds)
    closing = [
        alarm_id
        for alarm_id, kind, door in db.execute(
            "SELECT id, kind, door FROM alarms WHERE device_id = ? AND closed_at IS NULL",
            [device_id],
        ).fetchall()
        if kind in closed_kinds and (kind, door) not in kept
    ]
    for alarm_id in closing:
        db.execute("UPDATE alarms SET closed_at = ? WHERE id = ?", [at, alarm_id])
    return len(closing)


def apply(
    db: Database, device_id: str, centre_id: str | None, verdict: rules.Verdict, at: float
) -> None:
    """Open what a status raised; close the rest of the kinds it settled."""
    for raised in verdict.raised:
        raise_alarm(db, device_id, centre_id, raised, at)
    close_alarms(
        db, device_id, verdict.settled, at, keep=[(r.kind, r.door) for r in verdict.raised]
    )


def door_event(db: Database, device_id: str, centre_id: str, e: Event, received_at: float) -> None:
    """A new door event of a registered unit: open or close that door's alarms.

    ``door_closed`` ends the door's alarms raised by earlier events (by the unit's own
    times); a forced or held door already followed by a stored ``door_closed`` (events
    that came out of order) is opened and closed at once, still listed for an operator.
    """
    kind = rules.OPENED_BY_EVENT.get(e.kind)
    if kind is not None:
        alarm_id, new = raise_alarm(
            db, device_id, centre_id, rules.Raised(kind, e.door), received_at, event_ts=e.ts
        )
        closed_later = (
            new
            and db.execute(
                "SELECT 1 FROM events WHERE centre_id = ? AND ts >= ? AND device_id = ?"
                " AND kind = 'door_closed' AND door = ? LIMIT 1",
                [centre_id, e.ts, device_id, e.door],
            ).fetchone()
        )
        if closed_later:
            db.execute(
                "UPDATE alarms SET closed_at = ? WHERE id = ? AND closed_at IS NULL",
                [received_at, alarm_id],
            )
        return
    ended = rules.CLOSED_BY_EVENT.get(e.kind)
    if ended:
        db.execute(
            f"UPDATE alarms SET closed_at = ? WHERE device_id = ? AND {_SAME_DOOR}"
            f" AND kind IN ({', '.join('?' * len(ended))}) AND closed_at IS NULL"
            " AND (event_ts IS NULL OR event_ts <= ?)",
            [received_at, device_id, e.door, *ended, e.ts],
        )


def open_offline(db: Database, thresholds: rules.Thresholds, now: float) -> int:
    """Open ``unit_offline`` for every registered unit offline too long; how many opened."""
    return _open_for_units(
        db,
        "state = 'offline' AND state_since <= ?",
        rules.offline_cutoff(now, thresholds),
        rules.Raised(rules.UNIT_OFFLINE, None, rules.offline_detail(thresholds)),
        now,
    )


def open_silent(db: Database, thresholds: rules.Thresholds, now: float) -> int:
    """Open ``unit_silent`` for every online unit whose heartbeat stopped; how many opened.

    Only units that have sent a heartbeat are watched (older software sends none)."""
    return _open_for_units(
        db,
        "state = 'online' AND health_at IS NOT NULL AND health_at <= ?",
        rules.silent_cutoff(now, thresholds),
        rules.Raised(rules.UNIT_SILENT, None, rules.silent_detail(thresholds)),
        now,
    )


def _open_for_units(
    db: Database, condition: str, cutoff: float, raised: rules.Raised, now: float
) -> int:
    """Raise ``raised`` for every unit of a centre meeting ``condition`` (its one ``?`` is
    ``cutoff``) without that kind already open; how many opened."""
    rows = db.execute(
        f"SELECT device_id, centre_id FROM devices d WHERE {condition}"
        " AND centre_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM alarms a"
        " WHERE a.device_id = d.device_id AND a.kind = ? AND a.closed_at IS NULL)",
        [cutoff, raised.kind],
    ).fetchall()
    for device_id, centre_id in rows:
        raise_alarm(db, device_id, centre_id, raised, now)
    return len(rows)


def unit_moved(db: Database, device_id: str, centre_id: str, now: float) -> None:
    """The registry put the unit in ``centre_id``: its open alarms follow it, and its last
    reported centre is checked against the new one."""
    row = db.execute(
        "SELECT reported_centre FROM devices WHERE device_id = ?", [device_id]
    ).fetchone()
    if row is not None:  # what the move settles stays with the centre it was raised in
        apply(db, device_id, centre_id, rules.centre_verdict(row[0], centre_id), now)
    db.execute(
        "UPDATE alarms SET centre_id = ? WHERE device_id = ? AND closed_at IS NULL",
        [centre_id, device_id],
    )


# -- reading and acknowledging -------------------------------------------------------------------

_VIEWS = {
    "active": "(closed_at IS NULL OR acknowledged_at IS NULL)",
    "open": "closed_at IS NULL",
    "closed": "closed_at IS NOT NULL",
    "unacknowledged": "acknowledged_at IS NULL",
    "all": "1",
}


def page(
    db: Database,
    *,
    view: str = "active",
    centre_id: str | None = None,
    centre_ids: Iterable[str] | None = None,
    kind: str | None = None,
    device_id: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[int, list[dict]]:
    """(total matching, one page newest first); ``centre_ids``: only these centres'."""
    clauses, args = [_VIEWS[view]], []
    if centre_ids is not None:
        allowed = sorted(centre_ids)
        clauses.append(f"centre_id IN ({', '.join('?' * len(allowed)) or 'NULL'})")
        args.extend(allowed)
    filters = (("centre_id = ?", centre_id), ("kind = ?", kind), ("device_id = ?", device_id))
    for clause, value in filters:
        if value is not None:
            clauses.append(clause)
            args.append(value)
    where = " AND ".join(clauses)
    total = db.execute(f"SELECT count(*) FROM alarms WHERE {where}", args).fetchone()[0]
    rows = db["alarms"].rows_where(
        where, args, order_by="opened_at DESC, id DESC", limit=limit, offset=offset
    )
    return total, [to_dict(r) for r in rows]


def get(db: Database, alarm_id: int) -> dict:
    rows = list(db["alarms"].rows_where("id = ?", [alarm_id]))
    if not rows:
        raise NotFound(f"no alarm {alarm_id}")
    return to_dict(rows[0])


def acknowledge(db: Database, alarm_id: int, by: str, at: float) -> None:
    """Mark the alarm seen by ``by``; Conflict when someone already did."""
    alarm = get(db, alarm_id)
    if alarm["acknowledged_at"] is not None:
        raise Conflict(f"alarm {alarm_id} was already acknowledged by {alarm['acknowledged_by']}")
    db.execute(
        "UPDATE alarms SET acknowledged_at = ?, acknowledged_by = ? WHERE id = ?",
        [at, by, alarm_id],
    )


def open_counts(db: Database) -> dict[str, int]:
    """Open alarms by kind (every kind, zeros included)."""
    counts = dict.fromkeys(rules.KINDS, 0)
    for kind, n in db.execute(
        "SELECT kind, count(*) FROM alarms WHERE closed_at IS NULL GROUP BY kind"
    ).fetchall():
        counts[kind] = n
    return counts


def open_kinds(db: Database) -> dict[str, list[str]]:
    """Each unit's open alarm kinds."""
    found: dict[str, list[str]] = {}
    for device_id, kind in db.execute(
        "SELECT device_id, kind FROM alarms WHERE closed_at IS NULL ORDER BY kind"
    ).fetchall():
        found.setdefault(device_id, []).append(kind)
    return found


def to_dict(r: dict) -> dict:
    out = dict(r)
    out["open"] = r["closed_at"] is None
    out["acknowledged"] = r["acknowledged_at"] is not None
    return out
