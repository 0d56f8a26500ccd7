"""SQL for the audit log: append and read, nothing else (the table refuses UPDATE and
DELETE through triggers, see migration m031_audit). Personal values of an entry about a
member are stored apart (``privacy.keep_personal``) and put back when read."""

from __future__ import annotations

import json

from sqlite_utils import Database

from server.domain.audit import AuditEvent
from server.domain.privacy import split_personal
from server.store.sqlite import privacy


def append(db: Database, event: AuditEvent) -> int:
    public, member_id = split_personal(event)
    row = public.to_dict()
    for key in ("before", "after"):
        row[key] = json.dumps(row[key], ensure_ascii=False, default=str) if row[key] else None
    audit_id = db["audit"].insert(row).last_pk
    if member_id is not None:
        privacy.keep_personal(db, audit_id, member_id, event)
    return audit_id


def _where(
    actor: str | None,
    action: str | None,
    centre_id: str | None,
    since: float | None,
    until: float | None,
) -> tuple[str, list]:
    clauses = [
        ("actor = ?", actor),
        ("action = ?", action),
        ("centre_id = ?", centre_id),
        ("at >= ?", since),
        ("at < ?", until),
    ]
    used = [(sql, value) for sql, value in clauses if value is not None]
    return " AND ".join(sql for sql, _ in used) or "1", [value for _, value in used]


def page(
    db: Database,
    *,
    actor: str | None = None,
    action: str | None = None,
    centre_id: str | None = None,
    since: float | None = None,
    until: float | None = None,
    limit: int,
    offset: int,
) -> tuple[int, list[dict]]:
    """(total matching, one page newest first)."""
    where, args = _where(actor, action, centre_id, since, until)
    total = db.execute(f"SELECT count(*) FROM audit WHERE {where}", args).fetchone()[0]
    rows = db["audit"].rows_where(
        where, args, order_by="at DESC, id DESC", limit=limit, offset=offset
    )
    return total, privacy.restore_entries(db, [_row(r) for r in rows])


def times(
    db: Database,
    action: str,
    *,
    target_id: str | None = None,
    address: str | None = None,
    since: float,
) -> list[float]:
    """When ``action`` happened since ``since``, for one account or one address."""
    column, value = ("target_id", target_id) if target_id is not None else ("address", address)
    cur = db.execute(
        f"SELECT at FROM audit WHERE action = ? AND {column} = ? AND at >= ?",
        [action, value, since],
    )
    return [row[0] for row in cur.fetchall()]


def _row(r: dict) -> dict:
    out = dict(r)
    for key in ("before", "after"):
        out[key] = json.loads(r[key]) if r[key] else None
    return out
