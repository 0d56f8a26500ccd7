"""SQL for reports: sums over the visits and the centres' occupancy days, never the events.

Each query reads a period's rows through the visits' covering indexes (by local day, then
centre); the rules that turn them into a report are in ``server.domain.reports``.
``centre_ids`` (a manager's centres, or the one centre asked for) keeps only these
centres' rows; None keeps every centre's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import timedelta
from typing import Any

from sqlite_utils import Database

from protocol.calendar import Calendar
from server.domain import reports as rules
from server.domain.reports import Commune, OccupancyDay, Period


def _only(column: str, centre_ids: Iterable[str] | None) -> tuple[str, list[str]]:
    if centre_ids is None:
        return "", []
    allowed = sorted(centre_ids)
    return f" AND {column} IN ({', '.join('?' * len(allowed)) or 'NULL'})", allowed


def _centres(db: Database, centre_ids: Iterable[str] | None) -> list[dict[str, Any]]:
    where, args = _only("id", centre_ids)
    return list(db.query(f"SELECT * FROM centres WHERE 1{where} ORDER BY name, id", args))


def _days(period: Period) -> list[str]:
    return [period.first.isoformat(), period.last.isoformat()]


def invoicing(
    db: Database, period: Period, *, now: float, centre_ids: Iterable[str] | None = None
) -> dict[str, Any]:
    """Per member: days present, visits, hours, day credits used, plans held."""
    where, only = _only("centre_id", centre_ids)
    usage = db.execute(
        "SELECT member_id, COUNT(DISTINCT day), COUNT(*), SUM(MAX(0, MIN(end_at, ?) - check_in))"
        f" FROM visits WHERE day BETWEEN ? AND ?{where} GROUP BY member_id",
        [now, *_days(period), *only],
    ).fetchall()
    credits = db.execute(
        "SELECT member_id, COUNT(*) FROM credit_days"
        f" WHERE day BETWEEN ? AND ?{where} GROUP BY member_id",
        [*_days(period), *only],
    ).fetchall()
    zone = Calendar()
    start, end = zone.at(period.first, 0), zone.at(period.last + timedelta(days=1), 0)
    plans = db.execute(
        "SELECT mp.member_id, p.name FROM member_plans mp JOIN plans p ON p.id = mp.plan_id"
        " WHERE (mp.valid_from IS NULL OR mp.valid_from < ?)"
        " AND (mp.valid_until IS NULL OR mp.valid_until >= ?)"
        " AND (mp.ended_at IS NULL OR mp.ended_at >= ?)",
        [end, start, start],
    ).fetchall()
    names = dict(db.execute("SELECT id, name FROM members").fetchall())
    return rules.invoicing(period, usage, credits, plans, names)


def departement(
    db: Database,
    period: Period,
    *,
    now: float,
    centre_ids: Iterable[str] | None,
    commune_names: Mapping[str, str],
) -> dict[str, Any]:
    """Visits, members, new members, hours and people present per centre and commune."""
    where, only = _only("centre_id", centre_ids)
    pairs = db.execute(
        "SELECT centre_id, member_id, COUNT(*), SUM(MAX(0, MIN(end_at, ?) - check_in))"
        f" FROM visits WHERE day BETWEEN ? AND ?{where} GROUP BY centre_id, member_id",
        [now, *_days(period), *only],
    ).fetchall()
    firsts = db.execute(
        f"SELECT member_id, centre_id, day FROM first_visits WHERE day <= ?{where}",
        [period.last.isoformat(), *only],
    ).fetchall()
    stored = [
        OccupancyDay(centre_id, rules.as_date(day), peak, rules.unpack_samples(samples))
        for centre_id, day, peak, samples in db.execute(
            "SELECT centre_id, day, peak, samples FROM occupancy_days"
            f" WHERE day BETWEEN ? AND ?{where}",
            [*_days(period), *only],
        )
    ]
    return rules.departement(
        period,
        _centres(db, centre_ids),
        pairs,
        firsts,
        stored,
        valid_samples=rules.valid_samples(period, Calendar(), now),
        commune_names=commune_names,
    )


def impact(
    db: Database,
    period: Period,
    *,
    centre_ids: Iterable[str] | None,
    communes: Mapping[str, Commune],
    kg_per_km: float,
) -> dict[str, Any]:
    """Commuting avoided: each member's days present, at the centre of the day's first
    visit, with their declared commute commune."""
    where, only = _only("centre_id", centre_ids)
    member_days: Sequence[tuple] = db.execute(
        "SELECT member_id, day, centre_id, MIN(check_in) FROM visits"
        f" WHERE day BETWEEN ? AND ?{where} GROUP BY member_id, day",
        [*_days(period), *only],
    ).fetchall()
    commutes = dict(
        db.execute("SELECT id, commute_insee FROM members WHERE commute_insee IS NOT NULL")
    )
    return rules.impact(
        period,
        _centres(db, centre_ids),
        [(m, d, c) for m, d, c, _ in member_days],
        commutes,
        communes,
        kg_per_km=kg_per_km,
    )
