"""The reports page's figures: the stored reports (weekly activity, monthly invoicing and
impact) gathered over a span of months into what its charts and CSV files show.

Pure functions on the reports' dicts (see ``server.domain.reports``): no I/O.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime, timedelta
from typing import Any

from server.domain.reports import WEEKDAYS, Period, ReportError, month, week

MAX_MONTHS = 12
TOP_MEMBERS = 20


def months_between(first: str, last: str) -> list[Period]:
    """The months from ``first`` to ``last`` (YYYY-MM, both included); ReportError naming
    what is wrong when a month is malformed, the span is reversed or longer than a year."""
    start = month(first)
    end = month(last)
    if end.first < start.first:
        raise ReportError(f"to: {last} is before from: {first}")
    out = [start]
    while out[-1].last < end.first:
        nxt = out[-1].last + timedelta(days=1)
        out.append(month(f"{nxt.year:04d}-{nxt.month:02d}"))
        if len(out) > MAX_MONTHS:
            raise ReportError(f"from/to: at most {MAX_MONTHS} months at once")
    return out


def months_before(today: date, count: int) -> tuple[str, str]:
    """(first, last) months of the ``count`` months ending with ``today``'s."""
    year, number = today.year, today.month - (count - 1)
    while number < 1:
        year, number = year - 1, number + 12
    return f"{year:04d}-{number:02d}", f"{today.year:04d}-{today.month:02d}"


def weeks_over(months: Sequence[Period]) -> list[Period]:
    """The ISO weeks that overlap the months, in order."""
    first = months[0].first - timedelta(days=months[0].first.weekday())
    out = []
    while first <= months[-1].last:
        year, number, _ = first.isocalendar()
        out.append(week(f"{year:04d}-W{number:02d}"))
        first += timedelta(days=7)
    return out


def weekly_visits(weeks: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Visits per ISO week per centre, from one activity (departement) report a week:
    ``{"labels": [week, ...], "series": [{"centre_id", "name", "data": [...]}, ...]}``."""
    labels = [r["period"]["label"] for r in weeks]
    series: dict[str, dict[str, Any]] = {}
    for i, report in enumerate(weeks):
        for row in report["centres"]:
            entry = series.setdefault(
                row["centre_id"],
                {"centre_id": row["centre_id"], "name": row["name"], "data": [0] * len(weeks)},
            )
            entry["data"][i] = row["visits"]
    return {"labels": labels, "series": sorted(series.values(), key=lambda s: s["name"])}


def occupancy_by_hour(weeks: Sequence[Mapping[str, Any]], now: datetime) -> list[dict[str, Any]]:
    """Average people present by weekday and hour over the weeks, every centre shown
    together: ``[{"weekday": "mon", "hour": 8, "people": 2.5}, ...]`` (7 × 24 cells).

    A week's figure for an hour counts only once that hour has begun (``now``, local
    time): the current week's later hours are not zeros to average in.
    """
    totals = [[0.0] * 24 for _ in WEEKDAYS]
    counts = [[0] * 24 for _ in WEEKDAYS]
    for report in weeks:
        monday = date.fromisoformat(report["period"]["first_day"])
        profile = report["total"]["occupancy"]
        for w, name in enumerate(WEEKDAYS):
            day = monday + timedelta(days=w)
            for hour in range(24):
                if datetime(day.year, day.month, day.day, hour) > now:
                    continue
                totals[w][hour] += profile[name][hour]
                counts[w][hour] += 1
    return [
        {
            "weekday": name,
            "hour": hour,
            "people": round(totals[w][hour] / counts[w][hour], 2) if counts[w][hour] else 0.0,
        }
        for w, name in enumerate(WEEKDAYS)
        for hour in range(24)
    ]


def member_hours(
    invoices: Iterable[Mapping[str, Any]], top: int = TOP_MEMBERS
) -> list[dict[str, Any]]:
    """Hours present and days per member over the months (one invoicing report a month),
    most hours first, the first ``top``."""
    found: dict[int, dict[str, Any]] = {}
    for report in invoices:
        for row in report["members"]:
            entry = found.setdefault(
                row["member_id"],
                {"member_id": row["member_id"], "name": row["name"], "hours": 0.0, "days": 0},
            )
            entry["hours"] += row["hours"]
            entry["days"] += row["days_present"]
    rows = [{**r, "hours": round(r["hours"], 1)} for r in found.values() if r["hours"] > 0]
    rows.sort(key=lambda r: (-r["hours"], r["name"]))
    return rows[:top]


IMPACT_FIELDS = ("member_days", "undeclared_member_days", "km", "kg_co2e")


def impact_over(impacts: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The impact reports of the months added up, per centre and in total."""
    centres: dict[str, dict[str, Any]] = {}
    for report in impacts:
        for row in report["centres"]:
            entry = centres.setdefault(
                row["centre_id"],
                {
                    "centre_id": row["centre_id"],
                    "name": row["name"],
                    **dict.fromkeys(IMPACT_FIELDS, 0),
                },
            )
            for field in IMPACT_FIELDS:
                entry[field] += row[field]
    rows = [
        {**r, "km": round(r["km"], 1), "kg_co2e": round(r["kg_co2e"], 1)}
        for r in sorted(centres.values(), key=lambda r: r["name"])
    ]
    total = {field: sum(r[field] for r in rows) for field in IMPACT_FIELDS}
    total["km"] = round(total["km"], 1)
    total["kg_co2e"] = round(total["kg_co2e"], 1)
    method = impacts[0]["method"] if impacts else {}
    return {"centres": rows, "total": total, "method": method}


# -- CSV -------------------------------------------------------------------------------------

TABLES = ("visits", "occupancy", "members", "impact")


def _csv(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def charts_csv(table: str, figures: Mapping[str, Any]) -> str:
    """One chart's figures as CSV (``table``: one of TABLES)."""
    if table == "visits":
        data = figures["visits"]
        return _csv(
            ("week", "centre_id", "name", "visits"),
            (
                (label, s["centre_id"], s["name"], s["data"][i])
                for s in data["series"]
                for i, label in enumerate(data["labels"])
            ),
        )
    if table == "occupancy":
        return _csv(
            ("weekday", "hour", "people"),
            ((c["weekday"], c["hour"], c["people"]) for c in figures["occupancy"]),
        )
    if table == "members":
        return _csv(
            ("member_id", "name", "hours", "days"),
            ((r["member_id"], r["name"], r["hours"], r["days"]) for r in figures["members"]),
        )
    if table == "impact":
        impact = figures["impact"]
        rows = [
            (r["centre_id"], r["name"], *(r[f] for f in IMPACT_FIELDS)) for r in impact["centres"]
        ]
        rows.append(("total", "", *(impact["total"][f] for f in IMPACT_FIELDS)))
        return _csv(("centre_id", "name", *IMPACT_FIELDS), rows)
    raise ReportError(f"table: one of {', '.join(TABLES)}, not {table!r}")
