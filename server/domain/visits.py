"""Visits: each member's stay at a centre, from check-in to check-out. Pure rules, no I/O.

A member's passages at one centre (granted badge-ins and badge-outs, in time order, ties by
event id) are read left to right:

- a badge-in with no visit open opens one; its *limit* is the earlier of the end of the
  opening interval it fell in (``closing_time``, from the centre's calendar) and the check-in
  plus the store's maximum stay (``max_stay``);
- a badge-in while a visit is open (a second tap, a tailgated exit) changes nothing;
- a badge-out before the open visit's limit closes it (``badge_out``);
- a badge-out with no visit open is kept among the events and makes no visit;
- a visit still open when a later passage comes at or after its limit was closed at its
  limit, with the limit's reason. With no later passage it stays open in the table, and a
  read past its limit shows it closed there (``effective``): nothing is written by a read.

Visits are therefore a function of the set of passages, whatever order they arrive in. A
new passage (live or replayed late) changes only the visits between the last visit that
began at or before it and the first later passage where the old and the new readings are
both outside any visit: ``replay`` rebuilds that stretch and nothing else.

A visit belongs to the local day (centre's time zone) of its check-in, midnight or not.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import lru_cache
from typing import Literal

from protocol.calendar import MINUTES_PER_DAY, Calendar

BADGE_OUT = "badge_out"
CLOSING_TIME = "closing_time"
MAX_STAY = "max_stay"
STOP_REASONS = (BADGE_OUT, CLOSING_TIME, MAX_STAY)

Direction = Literal["in", "out"]
Key = tuple[float, str]


@dataclass(frozen=True)
class Passage:
    """A granted badge-in or badge-out of one member at one centre."""

    ts: float
    event_id: str
    direction: Direction
    historical: bool = False

    @property
    def key(self) -> Key:
        return (self.ts, self.event_id)


@dataclass(frozen=True)
class Visit:
    """A stay. ``limit_at``/``limit_reason``: when and why it ends if no badge-out comes
    first; ``check_out`` is None while it is open; ``historical``: its badge-in was sent
    late (replayed). ``id`` is the stored row's, if any."""

    check_in: float
    in_event_id: str
    day: str  # local date of the check-in, ISO
    limit_at: float
    limit_reason: str
    check_out: float | None = None
    stop_reason: str | None = None
    out_event_id: str | None = None
    historical: bool = False
    id: int | None = field(default=None, compare=False)

    @property
    def key(self) -> Key:
        return (self.check_in, self.in_event_id)

    @property
    def end_at(self) -> float:
        """When the visit ends: its check-out, or its limit while open."""
        return self.check_out if self.check_out is not None else self.limit_at

    def holds(self, key: Key) -> bool:
        """Whether a passage with this key (later than the check-in) falls within this
        visit: up to and including its badge-out, or before its limit."""
        if self.out_event_id is not None and self.check_out is not None:
            return key <= (self.check_out, self.out_event_id)
        return key[0] < self.limit_at


def closing_time(calendar: Calendar, ts: float) -> float | None:
    """When the centre closes after a check-in at ``ts``.

    The end of the opening interval holding ``ts`` (``Calendar.closing_after``), carried on
    past midnight while the next day opens at 00:00 (a centre open around the clock closes
    at no midnight). A check-in before the day's opening (an early arrival) closes with the
    interval that follows it that day. None outside hours after the day's last interval or
    on a closed day: only the maximum stay then applies.
    """
    moment = calendar.local(ts)
    return _closing_from(calendar, moment.date(), moment.hour * 60 + moment.minute)


@lru_cache(maxsize=8192)
def _closing_from(calendar: Calendar, day: date, minute: int) -> float | None:
    """``closing_time`` from the local day and minute of the check-in, which is all it
    depends on: worked out once per minute, where ingest asks it for every check-in."""
    end = None
    for start, stop in calendar.intervals(day):
        if start <= minute < stop:
            end = calendar.at(day, stop)
            break
    if end is None:
        later = [stop for start, stop in calendar.intervals(day) if start > minute]
        if not later:
            return None
        end = calendar.at(day, later[0])
    for _ in range(7):  # a week of round-the-clock days is beyond any maximum stay
        if end != calendar.at(day, MINUTES_PER_DAY):
            break
        day += timedelta(days=1)
        following = calendar.intervals(day)
        if not following or following[0][0] != 0:
            break
        end = calendar.at(day, following[0][1])
    return end


def limit(calendar: Calendar, check_in: float, max_stay_s: float) -> tuple[float, str]:
    """When and why a visit that began at ``check_in`` ends with no badge-out: the earlier
    of the closing time and the maximum stay (closing time on a tie)."""
    cap = check_in + max_stay_s
    closing = closing_time(calendar, check_in)
    if closing is not None and closing <= cap:
        return closing, CLOSING_TIME
    return cap, MAX_STAY


def open_visit(p: Passage, calendar: Calendar, max_stay_s: float) -> Visit:
    limit_at, reason = limit(calendar, p.ts, max_stay_s)
    return Visit(
        check_in=p.ts,
        in_event_id=p.event_id,
        day=calendar.local_day(p.ts).isoformat(),
        limit_at=limit_at,
        limit_reason=reason,
        historical=p.historical,
    )


def closed_at_limit(v: Visit) -> Visit:
    return _ended(v, v.limit_at, v.limit_reason, None)


def closed_by(v: Visit, p: Passage) -> Visit:
    return _ended(v, p.ts, BADGE_OUT, p.event_id)


def _ended(
    v: Visit, check_out: float | None, stop_reason: str | None, out_event_id: str | None
) -> Visit:
    """``v`` with this end (None: open again); ``dataclasses.replace`` without its field
    introspection, which ingest paid on every passage."""
    return Visit(
        check_in=v.check_in,
        in_event_id=v.in_event_id,
        day=v.day,
        limit_at=v.limit_at,
        limit_reason=v.limit_reason,
        check_out=check_out,
        stop_reason=stop_reason,
        out_event_id=out_event_id,
        historical=v.historical,
        id=v.id,
    )


def build(passages: Iterable[Passage], calendar: Calendar, max_stay_s: float) -> list[Visit]:
    """Every visit from a member's passages at one centre (in key order), from scratch."""
    return replay(passages, [], new=None, calendar=calendar, max_stay_s=max_stay_s).added


@dataclass
class Replay:
    """What a new passage changed: stored visits to drop, visits to store. ``until`` is the
    first passage left as it was (None: the reading went to the last passage)."""

    removed: list[Visit]
    added: list[Visit]
    until: Key | None


def replay(
    passages: Iterable[Passage],
    old: Iterable[Visit],
    *,
    new: Key | None,
    calendar: Calendar,
    max_stay_s: float,
    start: Visit | None = None,
    through: Key | None = None,
) -> Replay:
    """Read the passages again after a new passage (key ``new``) arrived.

    ``start`` is the last stored visit that began at or before the new passage (None: there
    is none); the passages between its check-in and the new one left it as it is, so the
    reading starts at the new passage with that visit open if it held the new passage's
    time, and none open otherwise. ``passages``: the member's passages at the centre from
    the new one on, in key order; ``old``: the stored visits from ``start`` (or the new
    passage) on, in key order. The reading stops at the first passage after the new one
    before which neither reading has a visit open: from there on both readings see the same
    passages from the same state. A check-in read again keeps the limit and day it was
    stored with. Visits equal in both readings are neither removed nor added.

    ``through``: several new passages arrived together, ``new`` the first of them and
    ``through`` the last; the reading goes on to the last before it may stop.
    """
    stored: Iterator[Visit] = iter(old)
    pending: Visit | None = next(stored, None)
    seen_old: list[Visit] = []
    latest_old: Visit | None = None  # the last old visit that began before the passage
    rebuilt: list[Visit] = []
    current: Visit | None = None
    until: Key | None = None
    if start is not None and new is not None:
        latest_old = pending
        seen_old.append(start)
        pending = next(stored, None)
        if start.holds(new):  # open again until its passages from the new one close it
            current = _ended(start, None, None, None)
        elif start.check_out is None:  # a passage now follows its limit: it ended there
            rebuilt.append(closed_at_limit(start))
        else:
            rebuilt.append(start)
    for p in passages:
        while pending is not None and pending.key < p.key:
            latest_old = pending
            seen_old.append(pending)
            pending = next(stored, None)
        if current is not None and p.ts >= current.limit_at:
            rebuilt.append(closed_at_limit(current))
            current = None
        old_open = latest_old is not None and latest_old.holds(p.key)
        if (
            new is not None
            and p.key > new
            and (through is None or p.key > through)
            and current is None
            and not old_open
        ):
            until = p.key
            break
        if p.direction == "in":
            if current is None:
                if pending is not None and pending.key == p.key:
                    # Read again: keep the limit it was given (hours may have changed).
                    current = Visit(
                        check_in=p.ts,
                        in_event_id=p.event_id,
                        day=pending.day,
                        limit_at=pending.limit_at,
                        limit_reason=pending.limit_reason,
                        historical=p.historical,
                    )
                else:
                    current = open_visit(p, calendar, max_stay_s)
        elif current is not None:
            rebuilt.append(closed_by(current, p))
            current = None
    if current is not None:
        rebuilt.append(current)
    if until is None:  # every old visit from the anchor on is replaced
        if pending is not None:
            seen_old.append(pending)
        seen_old.extend(stored)
    kept = set(rebuilt) & set(seen_old)
    return Replay(
        removed=[v for v in seen_old if v not in kept],
        added=[v for v in rebuilt if v not in kept],
        until=until,
    )


def effective(v: Visit, now: float) -> tuple[float | None, str | None]:
    """(check-out, stop reason) as a reader at ``now`` sees them: an open visit past its
    limit is closed at its limit; one not yet at it is still open (None, None)."""
    if v.check_out is not None:
        return v.check_out, v.stop_reason
    if v.limit_at <= now:
        return v.limit_at, v.limit_reason
    return None, None


def days_spanned(v: Visit, calendar: Calendar) -> list[date]:
    """The local days a visit is present on, from its check-in's to its end's."""
    first = calendar.local_day(v.check_in)
    last = calendar.local_day(max(v.check_in, v.end_at - 1e-6))
    days = []
    day = first
    while day <= last:
        days.append(day)
        day += timedelta(days=1)
    return days


def as_read(row: dict, now: float) -> dict:
    """A stored visit row as a reader at ``now`` sees it: ``open`` while no check-out is
    stored and its limit is ahead; past its limit, closed there (``closed_on_read``)."""
    out = {k: v for k, v in row.items() if v is not None and k != "end_at"}
    out["historical"] = bool(row.get("historical"))
    stored = row.get("check_out") is not None
    out["open"] = not stored and row["limit_at"] > now
    out["closed_on_read"] = not stored and not out["open"]
    if out["closed_on_read"]:
        out["check_out"], out["stop_reason"] = row["limit_at"], row["limit_reason"]
    return out


def seconds_present(check_in: float, end_at: float) -> float:
    """A visit's seconds in its member's month. Timestamps from 2**30 to 2**31 (2004 to
    2038) are multiples of 2**-22, and so are their differences and any sum of them below
    2**31: added visit by visit or summed again, in any order, a month's seconds are the
    same float."""
    return max(0.0, end_at - check_in)


def month_rows(
    visits: Iterable[tuple[str, str, float, str, float]],
) -> dict[str, tuple[int, int, int, float]]:
    """A member's month by centre, from their visits that month as (centre_id, day,
    check_in, in_event_id, end_at): centre -> (visits, days with a visit there, days whose
    first visit was there, seconds from check-in to end)."""
    rows: dict[str, list] = {}
    first_of_day: dict[str, tuple[float, str, str]] = {}
    for centre_id, day, check_in, in_event_id, end_at in visits:
        row = rows.setdefault(centre_id, [0, set(), 0, 0.0])
        row[0] += 1
        row[1].add(day)
        row[3] += seconds_present(check_in, end_at)
        key = (check_in, in_event_id, centre_id)
        if day not in first_of_day or key < first_of_day[day]:
            first_of_day[day] = key
    for _, _, centre_id in first_of_day.values():
        rows[centre_id][2] += 1
    return {c: (n, len(days), first, secs) for c, (n, days, first, secs) in rows.items()}
