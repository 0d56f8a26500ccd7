"""SQL for reports: sums over the visits and their aggregates, never the events.

A month reads each member's month per centre (``visit_months``, kept with the visits), an
ISO week the visits themselves through their covering indexes (by local day, then centre);
both read the centres' occupancy days and first visits. Months store an open visit up to
its limit: what is still ahead of now is taken off (``_ahead``). The rules that turn the
rows into a report are in ``server.domain.reports``.
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


def _ahead(
    db: Database, period: Period, now: float, where: str, only: list[str]
) -> dict[tuple[str, int], float]:
    """Seconds still ahead of ``now`` in the period's open visits, by (centre, member)."""
    rows = db.execute(
        "SELECT centre_id, member_id, SUM(end_at - MAX(?, check_in))"
        " FROM visits INDEXED BY idx_visits_open"  # the few visits still open
        f" WHERE check_out IS NULL AND limit_at > ? AND day BETWEEN ? AND ?{where}"
        " GROUP BY centre_id, member_id",
        [now, now, *_days(period), *only],
    ).fetchall()
    return {(c, m): secs for c, m, secs in rows}


def _month(period: Period) -> str:
    if period.kind != "month":
        raise rules.ReportError(f"{period.label}: this report is monthly")
    return period.first.isoformat()[:7]


def invoicing(
    db: Database, period: Period, *, now: float, centre_ids: Iterable[str] | None = None
) -> dict[str, Any]:
    """Per member: days present, visits, hours, day credits used, plans held."""
    where, only = _only("centre_id", centre_ids)
    by_member: dict[int, list] = {}
    for member_id, days, visits, seconds in db.execute(
        f"SELECT member_id, first_days, visits, seconds FROM visit_months WHERE month = ?{where}",
        [_month(period), *only],
    ):
        row = by_member.setdefault(member_id, [member_id, 0, 0, 0.0])
        row[1] += days
        row[2] += visits
        row[3] += seconds
    for (_, member_id), ahead in _ahead(db, period, now, where, only).items():
        by_member[member_id][3] -= ahead
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
    return rules.invoicing(period, by_member.values(), credits, plans, names)


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
    if period.kind == "month":
        ahead = _ahead(db, period, now, where, only)
        pairs = [
            (c, m, n, seconds - ahead.get((c, m), 0.0))
            for c, m, n, seconds in db.execute(
                "SELECT centre_id, member_id, visits, seconds FROM visit_months"
                f" WHERE month = ?{where}",
                [_month(period), *only],
            )
        ]
    else:
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
    """Commuting avoided: each member's days present at each centre (a day belongs to the
    centre of its first visit), with their declared commute commune."""
    where, only = _only("centre_id", centre_ids)
    days: Sequence[tuple] = db.execute(
        "SELECT member_id, centre_id, first_days FROM visit_months"
        f" WHERE month = ? AND first_days > 0{where}",
        [_month(period), *only],
    ).fetchall()
    commutes = dict(
        db.execute("SELECT id, commute_insee FROM members WHERE commute_insee IS NOT NULL")
    )
    return rules.impact(
        period, _centres(db, centre_ids), days, commutes, communes, kg_per_km=kg_per_km
    )
