"""A centre's calendar from its registry row: weekly hours, closures, French public holidays.

The public holidays come from the ``holidays`` library (France, metropolitan: the Orne
keeps no regional ones). A centre with no hours recorded is open around the clock.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import date, timedelta
from functools import cache

import holidays

from protocol.calendar import ALWAYS_OPEN, DEFAULT_TIMEZONE, Calendar, check_hours, days_between
from protocol.messages import CentreHours

# How far ahead a unit's list carries closed days: it decides alone for this long.
LIST_HORIZON_DAYS = 62


@cache
def public_holidays(year: int) -> dict[date, str]:
    return dict(holidays.France(years=year, language="fr"))


def holidays_between(first: date, last: date) -> dict[date, str]:
    found: dict[date, str] = {}
    for year in range(first.year, last.year + 1):
        found.update({d: n for d, n in public_holidays(year).items() if first <= d <= last})
    return found


def closed_days(
    closures: Iterable[dict], first: date, last: date, *, with_holidays: bool = True
) -> dict[date, str]:
    """Closed local dates between ``first`` and ``last``: closures (rows with start_date,
    end_date as ISO dates, reason) and, unless told otherwise, the public holidays."""
    closed = holidays_between(first, last) if with_holidays else {}
    for row in closures:
        start = max(date.fromisoformat(row["start_date"]), first)
        end = min(date.fromisoformat(row["end_date"]), last)
        for day in days_between(start, end):
            closed[day] = row.get("reason") or "fermeture"
    return dict(sorted(closed.items()))


def weekly_hours(raw: str | list | None) -> tuple:
    """A centre's ``hours`` (a list, or its stored JSON) as checked weekly hours; None:
    always open."""
    if not raw:
        return ALWAYS_OPEN
    return check_hours(json.loads(raw) if isinstance(raw, str) else raw)


def calendar(centre: dict, closures: Iterable[dict], around: date, days: int = 400) -> Calendar:
    """The centre's calendar with the closed days from ``days`` before ``around`` to
    ``LIST_HORIZON_DAYS`` after it (reports look back, lists look ahead)."""
    first, last = around - timedelta(days=days), around + timedelta(days=LIST_HORIZON_DAYS)
    closures = list(closures)
    shut = closed_days(closures, first, last, with_holidays=False)
    return Calendar(
        timezone=centre.get("timezone") or DEFAULT_TIMEZONE,
        hours=weekly_hours(centre.get("hours")),
        closed_days=frozenset(shut) | frozenset(holidays_between(first, last)),
        closures=frozenset(shut),
    )


def for_units(cal: Calendar, today: date) -> CentreHours:
    """What a list head carries: the hours and the closed days from yesterday (a unit in
    another time zone than UTC) to ``LIST_HORIZON_DAYS`` ahead."""
    first, last = today - timedelta(days=1), today + timedelta(days=LIST_HORIZON_DAYS)
    return CentreHours(
        timezone=cal.timezone,
        hours=[list(day) for day in cal.hours],
        closed=sorted(d.toordinal() for d in cal.closures if first <= d <= last),
        holidays=sorted(
            d.toordinal() for d in cal.closed_days - cal.closures if first <= d <= last
        ),
    )
