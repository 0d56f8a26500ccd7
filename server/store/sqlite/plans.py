"""SQL for plans: the catalogue, the plans members hold, and the day credits they use."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import date
from typing import Any

from sqlite_utils import Database

from protocol.calendar import Calendar
from protocol.messages import SUBSCRIPTION, PlanRule
from protocol.policy import plan_reason
from server.domain.lists import PLAN_GRACE_S, MemberPlans
from server.domain.plans import HOURS, credit_plan
from server.store.errors import Conflict, NotFound

_PLAN_FIELDS = ("name", "kind", "days", "duration_days", "centres", "hours", "window")


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


def create_plan(db: Database, fields: dict[str, Any], now: float) -> int:
    if db["plans"].count_where("name = ?", [fields["name"]]):
        raise Conflict(f"a plan named {fields['name']!r} already exists")
    row = {k: fields.get(k) for k in _PLAN_FIELDS}
    row |= {
        "centres": _json(fields.get("centres")),
        "window": _json(fields.get("window")),
        "price_cents": fields.get("price_cents"),
        "active": 1,
        "created_at": now,
    }
    return db["plans"].insert(row).last_pk


def plan(db: Database, plan_id: int) -> dict:
    rows = list(db["plans"].rows_where("id = ?", [plan_id]))
    if not rows:
        raise NotFound(f"no plan {plan_id}")
    return _plan_row(rows[0])


def plans(db: Database) -> list[dict]:
    return [_plan_row(r) for r in db["plans"].rows_where(order_by="name")]


def _plan_row(r: dict) -> dict:
    out = dict(r)
    out["centres"] = json.loads(r["centres"]) if r["centres"] else None
    out["window"] = json.loads(r["window"]) if r["window"] else []
    out["active"] = bool(r["active"])
    return out


def give_plan(
    db: Database,
    member_id: int,
    plan_id: int,
    valid_from: float | None,
    valid_until: float | None,
    now: float,
) -> int:
    """A copy of the catalogue plan's rules for the member; returns its id."""
    if not db["members"].count_where("id = ?", [member_id]):
        raise NotFound(f"no member {member_id}")
    p = plan(db, plan_id)
    if valid_until is None and p["duration_days"] and valid_from is not None:
        valid_until = valid_from + p["duration_days"] * 86400
    return (
        db["member_plans"]
        .insert(
            {
                "member_id": member_id,
                "plan_id": plan_id,
                "kind": p["kind"],
                "valid_from": valid_from,
                "valid_until": valid_until,
                "centres": _json(p["centres"]),
                "hours": p["hours"],
                "window": _json(p["window"] or None),
                "days": p["days"],
                "created_at": now,
            }
        )
        .last_pk
    )


def end_plan(db: Database, member_plan_id: int, now: float) -> dict:
    rows = list(db["member_plans"].rows_where("id = ?", [member_plan_id]))
    if not rows:
        raise NotFound(f"no member plan {member_plan_id}")
    db["member_plans"].update(member_plan_id, {"ended_at": now})
    return rows[0]


_HELD = (
    "SELECT mp.id, mp.member_id, mp.plan_id, p.name, mp.kind, mp.valid_from, mp.valid_until,"
    " mp.centres, mp.hours, mp.window, mp.days, mp.created_at, mp.ended_at,"
    " (SELECT count(*) FROM credit_days cd WHERE cd.member_plan_id = mp.id) AS used"
    " FROM member_plans mp JOIN plans p ON p.id = mp.plan_id"
)


def member_plans(db: Database, member_id: int, *, live_only: bool = False) -> list[dict]:
    where = " WHERE mp.member_id = ?" + (" AND mp.ended_at IS NULL" if live_only else "")
    rows = db.query(_HELD + where + " ORDER BY mp.id", [member_id])
    return [_held_row(r) for r in rows]


def _held_row(r: dict) -> dict:
    out = dict(r)
    out["centres"] = json.loads(r["centres"]) if r["centres"] else None
    out["window"] = json.loads(r["window"]) if r["window"] else []
    if r["kind"] != "subscription":
        out["days_left"] = (r["days"] or 0) - r["used"]
    return out


def for_lists(db: Database, now: float, member_ids: Iterable[int] | None = None) -> MemberPlans:
    """The members' live plans (with credits used), who holds plans, recent counted days."""
    args: list[Any] = [now - PLAN_GRACE_S]
    only = ""
    ids = None if member_ids is None else sorted(set(member_ids))
    if ids is not None:
        only = f" AND mp.member_id IN ({','.join('?' * len(ids))})"
        args += ids
    rows: dict[int, list[dict]] = {}
    for r in db.query(
        _HELD
        + " WHERE mp.ended_at IS NULL AND (mp.valid_until IS NULL OR mp.valid_until > ?)"
        + only,
        args,
    ):
        rows.setdefault(r["member_id"], []).append(_held_row(r))
    holder_sql = "SELECT DISTINCT member_id FROM member_plans"
    if ids is not None:
        holder_sql += f" WHERE member_id IN ({','.join('?' * len(ids))})"
    holders = {r[0] for r in db.execute(holder_sql, ids or [])}
    since = date.fromtimestamp(now).toordinal() - 30
    days: dict[int, list[int]] = {}
    # For a few members (an online answer, a member's list delta), their rows only: the
    # whole table's last 30 days would be read for each of them otherwise.
    of_members = "" if ids is None else f" AND member_id IN ({','.join('?' * len(ids))})"
    for member_id, day in db.execute(
        "SELECT member_id, day FROM credit_days WHERE day >= ?" + of_members + " ORDER BY day",
        [date.fromordinal(since).isoformat(), *(ids or [])],
    ):
        if member_id in holders:
            days.setdefault(member_id, []).append(date.fromisoformat(day).toordinal())
    return MemberPlans(rows, holders, days)


def holds_plans(db: Database, member_id: int) -> bool:
    return (
        db.execute("SELECT 1 FROM member_plans WHERE member_id = ? LIMIT 1", [member_id]).fetchone()
        is not None
    )


def record_entry(
    db: Database,
    member_id: int,
    centre_id: str,
    calendar: Calendar,
    ts: float,
    event_id: str,
) -> bool:
    """Count a granted entry against the member's day credits (the policy's rule: the first
    entry of a local day, at any centre, uses one day, unless a subscription admitted it).
    True when a day was counted. A day already counted (another centre, a resend) is free."""
    day = calendar.local_day(ts).isoformat()
    if db["credit_days"].count_where("member_id = ? AND day = ?", [member_id, day]):
        return False
    held = member_plans(db, member_id, live_only=True)
    if not held:
        return False
    for p in held:
        if p["kind"] != "subscription":
            continue
        rule = PlanRule(SUBSCRIPTION, p["valid_from"], p["valid_until"], HOURS[p["hours"]])
        rule.window = [tuple(w) for w in p["window"]]  # type: ignore[misc]
        if (p["centres"] is None or centre_id in p["centres"]) and plan_reason(
            rule, calendar, ts
        ) is None:
            return False
    chosen = credit_plan(held, ts)
    if chosen is None:
        return False
    db["credit_days"].insert(
        {
            "member_id": member_id,
            "day": day,
            "member_plan_id": chosen["id"],
            "centre_id": centre_id,
            "event_id": event_id,
            "ts": ts,
        }
    )
    return True
