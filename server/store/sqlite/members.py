"""SQL for members: the people badges belong to, with their validity and centres."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from sqlite_utils import Database

from server.store.errors import NotFound
from server.store.sqlite import badges

_FIELDS = (
    "name",
    "email",
    "active",
    "valid_from",
    "valid_until",
    "centres",
    "suspended_reason",
    "suspended_at",
    "lockdown_exempt",
    "commute_insee",
)


def to_row(fields: dict[str, Any]) -> dict[str, Any]:
    """The stored columns for API fields; unknown keys are dropped, centres kept as JSON."""
    row = {k: v for k, v in fields.items() if k in _FIELDS}
    if "centres" in row and row["centres"] is not None:
        row["centres"] = json.dumps(sorted(row["centres"]))
    for flag in ("active", "lockdown_exempt"):
        if flag in row:
            row[flag] = int(bool(row[flag]))
    return row


def next_id(db: Database) -> int:
    """The id a new member gets: never one given before, not even an erased member's (the
    audit log names members by id)."""
    return (
        db.execute(
            "SELECT max(coalesce((SELECT max(id) FROM members), 0),"
            " coalesce((SELECT max(id) FROM erased_members), 0))"
        ).fetchone()[0]
        + 1
    )


def insert(db: Database, row: dict[str, Any], now: float) -> int:
    """Insert a member row (from ``to_row``), active unless told otherwise; return its id."""
    row = {**row, "id": next_id(db), "created_at": now}
    row.setdefault("active", 1)
    return db["members"].insert(row).last_pk


def update(db: Database, member_id: int, row: dict[str, Any]) -> None:
    db["members"].update(member_id, row)


def get(db: Database, member_id: int) -> dict:
    """One member with their badges."""
    rows = list(db["members"].rows_where("id = ?", [member_id]))
    if not rows:
        raise NotFound(f"no member {member_id}")
    return _row(rows[0], badges.for_member(db, member_id))


def page(
    db: Database,
    *,
    limit: int,
    offset: int,
    centre_ids: Iterable[str] | None = None,
    search: str | None = None,
    badge_hash: str | None = None,
) -> tuple[int, list[dict]]:
    """(total, members by name), without their badges; with ``centre_ids`` (a manager's
    centres) only members allowed at one of them or at every centre. ``search``: a part
    of the name, e-mail or a badge's label (case-insensitive); ``badge_hash``: or the
    member holding that card."""
    clauses: list[str] = []
    args: list[Any] = []
    if centre_ids is not None:
        allowed = sorted(centre_ids)
        marks = ", ".join("?" * len(allowed)) or "NULL"
        clauses.append(
            "(centres IS NULL OR EXISTS (SELECT 1 FROM json_each(members.centres)"
            f" WHERE json_each.value IN ({marks})))"
        )
        args += allowed
    if search:
        pattern = "%" + search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        found = [
            "name LIKE ? ESCAPE '\\'",
            "email LIKE ? ESCAPE '\\'",
            "EXISTS (SELECT 1 FROM badges WHERE badges.member_id = members.id"
            " AND badges.label LIKE ? ESCAPE '\\')",
        ]
        found_args: list[Any] = [pattern, pattern, pattern]
        if badge_hash:
            found.append(
                "EXISTS (SELECT 1 FROM badges WHERE badges.member_id = members.id"
                " AND badges.badge_hash = ?)"
            )
            found_args.append(badge_hash)
        clauses.append("(" + " OR ".join(found) + ")")
        args += found_args
    where = " AND ".join(clauses) or None
    total = db["members"].count_where(where or "1", args)
    rows = db["members"].rows_where(where, args, order_by="name", limit=limit, offset=offset)
    return total, [_row(r) for r in rows]


def centres_of(raw: str | None) -> list[str] | None:
    """The stored centres column as a list; None means every centre."""
    return json.loads(raw) if raw else None


def _row(r: dict, member_badges: Iterable[dict] | None = None) -> dict:
    out = dict(r)
    out["active"] = bool(r["active"])
    out["lockdown_exempt"] = bool(r.get("lockdown_exempt"))
    out["centres"] = centres_of(r["centres"])
    if member_badges is not None:
        out["badges"] = list(member_badges)
    return out
