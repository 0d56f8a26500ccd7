"""SQL for privacy: the retention purge (raw events folded into daily counts first), a
member's export and erasure, and the personal values of the audit log kept apart.

``MEMBER_TABLES`` is the one list of tables holding members' data: the export, the
erasure and the purge all walk it, and a table missing from the database is skipped.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

from sqlite_utils import Database

from server.domain import privacy as rules
from server.domain.audit import AuditEvent
from server.store.errors import NotFound
from server.store.sqlite.params import chunks, marks

Retention = Literal["events", "visits"]


@dataclass(frozen=True)
class MemberTable:
    """A table holding members' data.

    ``member_column`` / ``badge_column``: how a member's rows are found (their id, their
    cards' hashes). ``erase``: ``delete`` the rows, or ``anonymise`` them (those columns set
    to NULL, the row kept for counts), or ``pseudonymise`` them (the member column set to
    one random negative number for the erasure, kept nowhere else: the reports still count
    one person, who can no longer be named or linked to anything). ``time_column`` and
    ``retention``: rows dated before the retention of that kind are purged (``events``
    are first folded into daily counts).
    """

    table: str
    export_key: str
    member_column: str | None
    badge_column: str | None = None
    erase: Literal["delete", "anonymise", "pseudonymise"] = "delete"
    time_column: str | None = None
    retention: Retention | None = None


# table, export key, member column, badge column, erase, time column, retention
MEMBER_TABLES: tuple[MemberTable, ...] = (
    MemberTable("badges", "badges", "member_id"),
    MemberTable("member_plans", "plans", "member_id"),
    MemberTable("credit_days", "credit_days", "member_id", None, "delete", "ts", "visits"),
    MemberTable("presence", "presence", "member_id", None, "delete", "last_ts", "events"),
    MemberTable("events", "events", "member_id", "badge_hash", "anonymise", "ts", "events"),
    MemberTable(
        "unknown_cards", "unknown_cards", None, "badge_hash", "delete", "last_seen", "events"
    ),
    MemberTable("visits", "visits", "member_id", None, "pseudonymise", "check_in", "visits"),
    MemberTable("first_visits", "first_visits", "member_id", None, "pseudonymise"),
    MemberTable("visit_months", "visit_months", "member_id", None, "pseudonymise"),
)

_EVENTS = next(t for t in MEMBER_TABLES if t.table == "events")  # scanned apart: it is big

PURGE_BATCH = 2000  # rows per write: the writer is never held long


def table_exists(db: Database, table: str) -> bool:
    return (
        db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", [table]
        ).fetchone()
        is not None
    )


def centre_zones(db: Database) -> dict[str, ZoneInfo]:
    """Each centre's time zone."""
    return {r[0]: rules.zone(r[1]) for r in db.execute("SELECT id, timezone FROM centres")}


# -- retention ---------------------------------------------------------------------------------

_EVENT_COLUMNS = "id, ts, received_at, time_suspect, kind, granted, direction"


def fold_events(
    db: Database, centre_id: str | None, tz: ZoneInfo, before: float, limit: int, now: float
) -> tuple[int, int]:
    """Delete up to ``limit`` of a centre's events dated before ``before``, oldest first,
    after adding them to the daily counts (events of no centre are only deleted); return
    (events deleted, days newly counted).

    A day's unique members are counted when its first events go: its whole day is past
    the retention, so every event of it is still there. Events of an untrusted clock are
    dated by their arrival.
    """
    rows = db.execute(
        f"SELECT {_EVENT_COLUMNS} FROM events WHERE centre_id IS ? AND time_suspect = 0"
        " AND ts < ? ORDER BY ts LIMIT ?",
        [centre_id, before, limit],
    ).fetchall()
    if len(rows) < limit:
        rows += db.execute(
            f"SELECT {_EVENT_COLUMNS} FROM events WHERE time_suspect = 1 AND received_at < ?"
            " AND centre_id IS ? LIMIT ?",
            [before, centre_id, limit - len(rows)],
        ).fetchall()
    if not rows:
        return 0, 0
    new_days = 0
    if centre_id is not None:
        events = [rules.EventRow(r[1], r[2], bool(r[3]), r[4], r[5], r[6]) for r in rows]
        for day, counts in rules.count_by_day(events, tz).items():
            known = db.execute(
                "SELECT 1 FROM daily_counts WHERE centre_id = ? AND day = ?", [centre_id, day]
            ).fetchone()
            if known is None:
                start, end = rules.day_bounds(day, tz)
                db.execute(
                    "INSERT INTO daily_counts (centre_id, day, granted, denied, unique_members,"
                    " updated_at) VALUES (?, ?, 0, 0, ?, ?)",
                    [centre_id, day, _unique_members(db, centre_id, start, end), now],
                )
                new_days += 1
            db.execute(
                "UPDATE daily_counts SET granted = granted + ?, denied = denied + ?,"
                " updated_at = ? WHERE centre_id = ? AND day = ?",
                [counts.granted, counts.denied, now, centre_id, day],
            )
    ids = [r[0] for r in rows]
    for chunk in chunks(ids):
        db.execute(f"DELETE FROM events WHERE id IN ({marks(chunk)})", list(chunk))
    return len(ids), new_days


def _unique_members(db: Database, centre_id: str, start: float, end: float) -> int:
    """Members who came in to ``centre_id`` in [start, end), erased ones included."""
    row = db.execute(
        "SELECT count(DISTINCT member_id) + coalesce(sum(unique_erased), 0) FROM events"
        " WHERE centre_id = ? AND kind = 'access' AND granted = 1"
        " AND (direction IS NULL OR direction != 'out')"
        " AND ((time_suspect = 0 AND ts >= ? AND ts < ?)"
        " OR (time_suspect = 1 AND received_at >= ? AND received_at < ?))",
        [centre_id, start, end, start, end],
    ).fetchone()
    return row[0]


def purge_rows(db: Database, table: MemberTable, before: float, limit: int) -> int:
    """Delete up to ``limit`` rows of ``table`` dated before ``before``; 0 without the table."""
    if table.time_column is None or not table_exists(db, table.table):
        return 0
    return db.execute(
        f"DELETE FROM [{table.table}] WHERE rowid IN (SELECT rowid FROM [{table.table}]"
        f" WHERE [{table.time_column}] < ? LIMIT ?)",
        [before, limit],
    ).rowcount


def daily_counts(
    db: Database,
    *,
    centre_ids: Iterable[str] | None = None,
    since: str | None = None,
    until: str | None = None,
) -> list[dict]:
    """Folded days by centre and day; ``since`` inclusive, ``until`` exclusive (ISO dates)."""
    clauses, args = [], []
    if centre_ids is not None:
        allowed = sorted(centre_ids)
        clauses.append(f"centre_id IN ({marks(allowed) or 'NULL'})")
        args += allowed
    for clause, value in (("day >= ?", since), ("day < ?", until)):
        if value is not None:
            clauses.append(clause)
            args.append(value)
    where = " AND ".join(clauses) or "1"
    return list(db["daily_counts"].rows_where(where, args, order_by="centre_id, day"))


# -- a member's data ---------------------------------------------------------------------------


def _member_row(db: Database, member_id: int) -> dict:
    rows = list(db["members"].rows_where("id = ?", [member_id]))
    if not rows:
        raise NotFound(f"no member {member_id}")
    return rows[0]


def _badge_hashes(db: Database, member_id: int) -> list[str]:
    return [
        r[0] for r in db.execute("SELECT badge_hash FROM badges WHERE member_id = ?", [member_id])
    ]


def _where(table: MemberTable, member_id: int, hashes: list[str]) -> tuple[str, list[Any]] | None:
    clauses, args = [], []
    if table.member_column:
        clauses.append(f"[{table.member_column}] = ?")
        args.append(member_id)
    if table.badge_column and hashes:
        clauses.append(f"[{table.badge_column}] IN ({marks(hashes)})")
        args += hashes
    return (" OR ".join(clauses), args) if clauses else None


def export(db: Database, member_id: int) -> dict[str, Any]:
    """Everything stored about one member: the profile, one list per table of
    ``MEMBER_TABLES`` that exists, and the audit entries about them."""
    profile = _member_row(db, member_id)
    profile["centres"] = json.loads(profile["centres"]) if profile["centres"] else None
    out: dict[str, Any] = {"member": profile}
    hashes = _badge_hashes(db, member_id)
    for table in MEMBER_TABLES:
        found = _where(table, member_id, hashes)
        if not table_exists(db, table.table) or found is None:
            continue
        where, args = found
        order = f"{table.time_column}, rowid" if table.time_column else "rowid"
        out[table.export_key] = list(db[table.table].rows_where(f"({where})", args, order_by=order))
    audit = db.query(
        "SELECT a.*, p.before AS personal_before, p.after AS personal_after FROM audit a"
        " LEFT JOIN audit_personal p ON p.audit_id = a.id"
        " WHERE p.member_id = ? OR (a.target_kind = 'member' AND a.target_id = ?)"
        " ORDER BY a.at, a.id",
        [member_id, str(member_id)],
    )
    out["audit"] = [_restored(r) for r in audit]
    return out


def member_event_ids(db: Database, member_id: int) -> tuple[list[int], int]:
    """(ids of the events naming the member or one of their cards, the highest event id
    looked at). Run on a read connection: it reads the whole events table, and the writer
    then only looks at events stored since."""
    found = _where(_EVENTS, member_id, _badge_hashes(db, member_id))
    assert found is not None
    where, args = found
    top = db.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()[0]
    ids = [
        r[0] for r in db.execute(f"SELECT id FROM events WHERE id <= ? AND ({where})", [top, *args])
    ]
    return ids, top


def erase(
    db: Database,
    member_id: int,
    *,
    event_ids: list[int],
    scanned_to: int,
    zones: dict[str, ZoneInfo],
    now: float,
    list_centres: list[str] | None,
    forget_lists: bool,
) -> dict[str, int]:
    """Erase a member: their rows deleted or anonymised table by table, the personal values
    of their audit entries deleted, the member row replaced by its id in ``erased_members``.

    Their events (``event_ids`` from ``member_event_ids``, and any stored after
    ``scanned_to``) lose member and card but keep counting: the first entry of each day is
    marked so that the member still counts once among that day's unique members.
    ``forget_lists``: also drop the stored access-list state of ``list_centres`` (None:
    every centre), which names their cards, so that the next publication is a new snapshot.
    Returns how many rows each table lost or had anonymised.
    """
    _member_row(db, member_id)
    db.execute("PRAGMA secure_delete = ON")  # deleted values are overwritten on disk
    hashes = _badge_hashes(db, member_id)
    removed: dict[str, int] = {}
    where, args = _where(_EVENTS, member_id, hashes) or ("0", [])
    ids = list(event_ids) + [
        r[0]
        for r in db.execute(
            f"SELECT id FROM events WHERE id > ? AND ({where})", [scanned_to, *args]
        )
    ]
    entries = []
    for chunk in chunks(ids):
        entries += db.execute(
            "SELECT id, centre_id, ts, received_at, time_suspect, kind, granted, direction"
            f" FROM events WHERE id IN ({marks(chunk)}) AND member_id = ?"
            " AND centre_id IS NOT NULL",
            [*chunk, member_id],
        ).fetchall()
    firsts = rules.first_entry_per_day(
        [
            (r[0], r[1], rules.event_time(r[2], r[3], bool(r[4])))
            for r in entries
            if rules.is_entry(r[5], r[6], r[7])
        ],
        zones,
    )
    for chunk in chunks(firsts):
        db.execute(f"UPDATE events SET unique_erased = 1 WHERE id IN ({marks(chunk)})", chunk)
    removed["events"] = 0
    for chunk in chunks(ids):
        removed["events"] += db.execute(
            "UPDATE events SET member_id = NULL, badge_hash = NULL"
            f" WHERE id IN ({marks(chunk)}) AND ({where})",
            [*chunk, *args],
        ).rowcount
    pseudonym = -secrets.randbelow(2**62) - 1  # this erasure's stand-in, never stored apart
    for table in MEMBER_TABLES:
        found = _where(table, member_id, hashes)
        if table is _EVENTS or found is None or not table_exists(db, table.table):
            continue
        where, args = found
        if table.erase == "delete":
            sql = f"DELETE FROM [{table.table}] WHERE {where}"
        elif table.erase == "pseudonymise":
            sql = f"UPDATE [{table.table}] SET [{table.member_column}] = ? WHERE {where}"
            args = [pseudonym, *args]
        else:
            cleared = [c for c in (table.member_column, table.badge_column) if c]
            sets = ", ".join(f"[{c}] = NULL" for c in cleared)
            sql = f"UPDATE [{table.table}] SET {sets} WHERE {where}"
        removed[table.export_key] = db.execute(sql, args).rowcount
    removed["audit_values"] = db.execute(
        "DELETE FROM audit_personal WHERE member_id = ?", [member_id]
    ).rowcount
    if forget_lists:
        centres = list_centres
        if centres is None:
            centres = [r[0] for r in db.execute("SELECT centre_id FROM list_state")]
        removed["list_states"] = 0
        for chunk in chunks(centres):
            removed["list_states"] += db.execute(
                f"DELETE FROM list_state WHERE centre_id IN ({marks(chunk)})", list(chunk)
            ).rowcount
    db.execute("DELETE FROM members WHERE id = ?", [member_id])
    db["erased_members"].insert({"id": member_id, "erased_at": now}, replace=True)
    return removed


def erased(db: Database, member_id: int) -> bool:
    """Whether this member id belonged to a member since erased."""
    return (
        db.execute("SELECT 1 FROM erased_members WHERE id = ?", [member_id]).fetchone() is not None
    )


def checkpoint(path: Path) -> bool:
    """Copy the write-ahead log into the database file and empty it, so that erased values
    leave it too; False when a reader kept it busy (the next checkpoint does it)."""
    conn = sqlite3.connect(str(path), timeout=1)
    try:
        busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        return busy == 0
    except sqlite3.OperationalError:
        return False
    finally:
        conn.close()


# -- personal values of the audit log ------------------------------------------------------------


def keep_personal(db: Database, audit_id: int, member_id: int, event: AuditEvent) -> None:
    """Store the personal copy of an audit entry (the entry itself holds marks)."""
    db["audit_personal"].insert(
        {
            "audit_id": audit_id,
            "member_id": member_id,
            "before": _dumps(event.before),
            "after": _dumps(event.after),
        }
    )


def restore_entries(db: Database, items: list[dict]) -> list[dict]:
    """Audit entries (``before``/``after`` decoded) with their personal values put back."""
    ids = [item["id"] for item in items]
    personal: dict[int, tuple[str | None, str | None]] = {}
    for chunk in chunks(ids):
        for audit_id, before, after in db.execute(
            f"SELECT audit_id, before, after FROM audit_personal WHERE audit_id IN"
            f" ({marks(chunk)})",
            list(chunk),
        ):
            personal[audit_id] = (before, after)
    for item in items:
        before, after = personal.get(item["id"], (None, None))
        item["before"] = rules.restore(item["before"], _loads(before))
        item["after"] = rules.restore(item["after"], _loads(after))
    return items


def _restored(row: dict) -> dict:
    out = {k: v for k, v in row.items() if not k.startswith("personal_")}
    for key in ("before", "after"):
        out[key] = rules.restore(_loads(row[key]), _loads(row[f"personal_{key}"]))
    return out


def move_personal_audit_values(db: Database, *, keys: frozenset[str]) -> int:
    """Move the personal values of existing audit entries about members to
    ``audit_personal`` (migration m080; the caller lifts the update trigger)."""
    moved = 0
    for row in list(db["audit"].rows):
        before, after = _loads(row["before"]), _loads(row["after"])
        public_before, public_after, member_id = rules.split_values(
            row["target_kind"], row["target_id"], before, after, keys
        )
        if member_id is None:
            continue
        db.execute(
            "UPDATE audit SET before = ?, after = ? WHERE id = ?",
            [_dumps(public_before), _dumps(public_after), row["id"]],
        )
        db["audit_personal"].insert(
            {
                "audit_id": row["id"],
                "member_id": member_id,
                "before": row["before"],
                "after": row["after"],
            }
        )
        moved += 1
    return moved


def _dumps(value: Any) -> str | None:
    return json.dumps(value, ensure_ascii=False, default=str) if value else None


def _loads(raw: str | None) -> Any:
    return json.loads(raw) if raw else None
