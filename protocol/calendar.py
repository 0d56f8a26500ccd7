"""A centre's calendar in local time: weekly opening hours, closed days, time zone.

Shared by both sides: the server compiles it into each centre's access list (with the
public holidays and closures of the coming weeks as closed days) and uses it for visits and
reports; a unit decides from it offline. Times are the centre's wall-clock time through
``zoneinfo``, so a DST change moves nothing: 08:30 stays 08:30.

``hours`` is 7 lists (Monday first) of ``(start_minute, end_minute)`` pairs, minutes after
local midnight, each pair within one day (0 <= start < end <= 1440).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import cache, lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DEFAULT_TIMEZONE = "Europe/Paris"
MINUTES_PER_DAY = 1440

Interval = tuple[int, int]
WeeklyHours = tuple[tuple[Interval, ...], ...]

# Refusal rules of the calendar (also in protocol.policy's rules).
CENTRE_CLOSED = "centre_closed"
OUTSIDE_HOURS = "outside_hours"


class CalendarError(ValueError):
    """Opening hours or a time zone that cannot be used; the message names the fault."""


@cache
def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise CalendarError(f"unknown time zone {name!r}") from None


def check_hours(hours: Sequence[Sequence[Sequence[int]]]) -> WeeklyHours:
    """Validated weekly hours as tuples; raises CalendarError naming the bad day."""
    if len(hours) != 7:
        raise CalendarError(f"hours: 7 days expected (Monday first), got {len(hours)}")
    out = []
    for day, intervals in enumerate(hours):
        checked: list[Interval] = []
        for pair in intervals:
            if len(pair) != 2:
                raise CalendarError(f"hours[{day}]: each interval is [start, end] in minutes")
            start, end = int(pair[0]), int(pair[1])
            if not 0 <= start < end <= MINUTES_PER_DAY:
                raise CalendarError(
                    f"hours[{day}]: {start}-{end} is not within a day (0 <= start < end <= 1440)"
                )
            if checked and start < checked[-1][1]:
                raise CalendarError(f"hours[{day}]: intervals overlap or are not in order")
            checked.append((start, end))
        out.append(tuple(checked))
    return tuple(out)


ALWAYS_OPEN: WeeklyHours = tuple(((0, MINUTES_PER_DAY),) for _ in range(7))


@dataclass(frozen=True)
class Calendar:
    """When a centre is open. ``closed_days``: closures and public holidays (local dates);
    ``closures``: those of them the centre itself is shut (everyone stays out), the others
    being public holidays (the opening hours do not apply)."""

    timezone: str = DEFAULT_TIMEZONE
    hours: WeeklyHours = ALWAYS_OPEN
    closed_days: frozenset[date] = field(default_factory=frozenset)
    closures: frozenset[date] = field(default_factory=frozenset)

    def local(self, ts: float) -> datetime:
        return datetime.fromtimestamp(ts, zone(self.timezone))

    def local_day(self, ts: float) -> date:
        return self.local(ts).date()

    def closed_on(self, day: date) -> bool:
        return day in self.closed_days

    def intervals(self, day: date) -> tuple[Interval, ...]:
        """The day's opening intervals in local minutes; none on a closed day."""
        if self.closed_on(day):
            return ()
        return self.hours[day.weekday()]

    def why_closed(self, ts: float) -> str | None:
        """None while the centre is open at ``ts``; else ``centre_closed`` (a closed day)
        or ``outside_hours``."""
        moment = self.local(ts)
        if self.closed_on(moment.date()):
            return CENTRE_CLOSED
        minute = moment.hour * 60 + moment.minute
        if any(start <= minute < end for start, end in self.hours[moment.weekday()]):
            return None
        return OUTSIDE_HOURS

    def closing_after(self, ts: float) -> float | None:
        """When the opening interval holding ``ts`` ends; None outside opening hours (and on
        a closed day)."""
        moment = self.local(ts)
        minute = moment.hour * 60 + moment.minute
        intervals = self.intervals(moment.date())
        end = None
        for start, stop in intervals:
            if start <= minute < stop:
                end = stop
                break
        if end is None:
            return None
        return self.at(moment.date(), end)

    def at(self, day: date, minute: int) -> float:
        """The epoch time of ``minute`` after local midnight of ``day``."""
        return _at(self.timezone, day, minute)


@lru_cache(maxsize=4096)
def _at(timezone: str, day: date, minute: int) -> float:
    """``Calendar.at``, worked out once: every passage's closing time asks it many times."""
    if minute >= MINUTES_PER_DAY:
        nxt = day + timedelta(days=1)
        return datetime(nxt.year, nxt.month, nxt.day, tzinfo=zone(timezone)).timestamp()
    midnight = datetime(day.year, day.month, day.day, tzinfo=zone(timezone))
    return (midnight + timedelta(minutes=minute)).timestamp()


def days_between(first: date, last: date) -> Iterable[date]:
    """Every date from ``first`` to ``last`` included."""
    day = first
    while day <= last:
        yield day
        day += timedelta(days=1)


def in_window(window: Iterable[Sequence[int]], moment: datetime) -> bool:
    """Whether ``moment`` (local) falls in a weekly window of [weekday, start, end] rows."""
    minute = moment.hour * 60 + moment.minute
    weekday = moment.weekday()
    return any(w[0] == weekday and w[1] <= minute < w[2] for w in window)
