"""SQL for the fleet view: every unit with the list version published for its centre and
its open alarms, and units counted by state."""

from __future__ import annotations

from collections.abc import Iterable

from sqlite_utils import Database

from server.store.sqlite import alarms, devices


def units(
    db: Database,
    *,
    centre_id: str | None = None,
    centre_ids: Iterable[str] | None = None,
    device_id: str | None = None,
) -> list[tuple[dict, int | None, list[str]]]:
    """(unit, its centre's published list version, its open alarm kinds), by device id;
    ``centre_ids``: only units of these centres."""
    clauses, args = [], []
    if centre_ids is not None:
        allowed = sorted(centre_ids)
        clauses.append(f"d.centre_id IN ({', '.join('?' * len(allowed)) or 'NULL'})")
        args.extend(allowed)
    for clause, value in (("d.centre_id = ?", centre_id), ("d.device_id = ?", device_id)):
        if value is not None:
            clauses.append(clause)
            args.append(value)
    where = " AND ".join(clauses) or "1"
    rows = db.query(
        "SELECT d.*, ls.version AS published FROM devices d"
        " LEFT JOIN list_state ls ON ls.centre_id = d.centre_id"
        f" WHERE {where} ORDER BY d.device_id",
        args,
    )
    open_kinds = alarms.open_kinds(db)
    found = []
    for row in rows:
        published = row.pop("published")
        found.append((devices.to_dict(row), published, open_kinds.get(row["device_id"], [])))
    return found


def count_by_state(db: Database) -> dict[str, int]:
    """Registered units by state: online, offline, and never heard (``unknown``)."""
    counts = {"online": 0, "offline": 0, "unknown": 0}
    for state, n in db.execute(
        "SELECT ifnull(state, 'unknown'), count(*) FROM devices GROUP BY 1"
    ).fetchall():
        counts[state] = counts.get(state, 0) + n
    return counts
