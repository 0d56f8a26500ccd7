"""SQL for visits: built in the writer's ingest transaction as passages arrive, and read.

Ingest queues every new granted badge-in or badge-out (live or replayed) and folds a
write's passages at its end (``Deferred.fold``), rebuilding only the stretch of each
member's visits at each centre that they can change (``server.domain.visits.replay``):
a member's live passages from their last visit at once, any other passage on its own
(``record_passage``). What those visits feed follows: the member's first visit there,
their months (``visit_months``) and the centre's occupancy of the days they touch. The
live stream's changes (a visit closed, a new one after the member's others there) are
added to the member's months and first visit in the same transaction
(``Deferred._count_live``); the rest is recounted from the visits. Ingest records those
recounts in ``pending_recounts`` and ``settle`` does them together, before any report
and in the background: the members' firsts and months at most every second, the centres'
days less often (``DAY_KINDS``). Reports read these tables, never the events.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import date, timedelta
from functools import lru_cache
from itertools import groupby
from typing import Any

from sqlite_utils import Database

from protocol.calendar import Calendar
from server.domain import calendar as calendars
from server.domain import reports as rules
from server.domain.visits import (
    Key,
    Passage,
    Visit,
    as_read,
    build,
    days_spanned,
    month_rows,
    replay,
    seconds_present,
)
from server.store.errors import NotFound
from server.store.sqlite.params import chunks, insert_rows, marks, values_table

DEFAULT_MAX_STAY_S = 14 * 3600.0
DEFAULT_CALENDAR = Calendar()  # the default zone's days, to find a passage's centre calendar
# How far back a visit may begin and still be present on a day (visits end within a day or
# two: a longer maximum stay needs a longer look-back).
LOOKBACK_DAYS = 2

_PASSAGES = (
    "SELECT ts, event_id, direction, historical FROM events"
    " WHERE member_id = ? AND centre_id = ? AND kind = 'access' AND granted = 1"
    " AND time_suspect = 0 AND direction IN ('in', 'out')"
)
_COLUMNS = (
    "id, check_in, in_event_id, day, limit_at, limit_reason, check_out, stop_reason,"
    " out_event_id, historical"
)
_AROUND = (
    f"SELECT * FROM (SELECT {_COLUMNS} FROM visits WHERE member_id = ? AND centre_id = ?"
    " AND (check_in, in_event_id) <= (?, ?) ORDER BY check_in DESC, in_event_id DESC"
    f" LIMIT 1) AS latest UNION ALL SELECT {_COLUMNS} FROM visits WHERE member_id = ?"
    " AND centre_id = ? AND (check_in, in_event_id) > (?, ?)"
    " ORDER BY check_in, in_event_id"
)


def centre_calendar(db: Database, centre_id: str, around: date, days: int = 3) -> Calendar:
    """The centre's calendar with its closed days from ``days`` before ``around`` on."""
    rows = centre_rows(db, [centre_id])
    if centre_id not in rows:
        raise NotFound(f"no centre {centre_id!r}")
    return _calendar(*rows[centre_id], around, days)


CentreRows = tuple[tuple, tuple]  # (timezone, hours), closures: what a calendar is built from


def centre_rows(db: Database, centre_ids: Iterable[str]) -> dict[str, CentreRows]:
    """What the centres' calendars are built from, read in two statements for them all;
    centres that do not exist are left out."""
    wanted = sorted(set(centre_ids))
    out: dict[str, CentreRows] = {}
    for chunk in chunks(wanted):
        closures: dict[str, list[tuple]] = {}
        for centre_id, *closure in db.conn.execute(
            "SELECT centre_id, start_date, end_date, reason FROM closures"
            f" WHERE centre_id IN ({marks(chunk)})"
            " ORDER BY centre_id, start_date, end_date, reason",
            chunk,
        ):
            closures.setdefault(centre_id, []).append(tuple(closure))
        for centre_id, timezone, hours in db.conn.execute(
            f"SELECT id, timezone, hours FROM centres WHERE id IN ({marks(chunk)})", chunk
        ):
            out[centre_id] = ((timezone, hours), tuple(closures.get(centre_id, ())))
    return out


@lru_cache(maxsize=4096)
def _calendar(centre: tuple, closures: tuple, around: date, days: int) -> Calendar:
    """Built once for the same rows and day: ingest asks it for every passage."""
    timezone, hours = centre
    rows = [{"start_date": s, "end_date": e, "reason": r} for s, e, r in closures]
    return calendars.calendar({"timezone": timezone, "hours": hours}, rows, around, days=days)


Queued = tuple[float, str, str | None, bool, Calendar, float]  # ts, event, direction, …
# A member's visits at a centre changed: (member, centre, removed, added, its calendar).
Change = tuple[int, str, list[Visit], list[Visit], Calendar]


class Deferred:
    """What passages of one write batch leave to its end: folding them into visits
    (``queue``, then ``fold``) and the recounts that follow (``finish`` or ``mark``): a
    member's first visit and months, a centre's occupied days. Recounting reads the visits
    table, so recounting once after many passages gives what recounting after each gives."""

    def __init__(self) -> None:
        # (member, centre) -> its new passages: (ts, event id, direction, historical,
        # calendar, maximum stay)
        self.queued: dict[tuple[int, str], list[Queued]] = {}
        self.firsts: set[tuple[int, str]] = set()
        self.months: set[tuple[int, str]] = set()
        self.days: dict[tuple[str, date], Calendar] = {}
        self._calendars: dict[tuple[str, date, int], Calendar] = {}
        self._centres: dict[str, CentreRows] = {}

    def know_centres(self, db: Database, centre_ids: Iterable[str]) -> None:
        """Read the calendars of every centre the batch names at once (``centre_rows``)."""
        self._centres.update(centre_rows(db, set(centre_ids) - self._centres.keys()))

    def calendar(self, db: Database, centre_id: str, ts: float) -> Calendar:
        """``centre_calendar`` around ``ts``'s day, read once per batch."""
        return self.calendar_on(db, centre_id, DEFAULT_CALENDAR.local_day(ts))

    def calendar_on(self, db: Database, centre_id: str, around: date, days: int = 3) -> Calendar:
        """``centre_calendar(db, centre_id, around, days)``, its rows read once per batch."""
        key = (centre_id, around, days)
        cal = self._calendars.get(key)
        if cal is None:
            if centre_id not in self._centres:
                self.know_centres(db, [centre_id])
            rows = self._centres.get(centre_id)
            if rows is None:
                raise NotFound(f"no centre {centre_id!r}")
            cal = self._calendars[key] = _calendar(*rows, around, days)
        return cal

    def queue(
        self,
        db: Database,
        centre_id: str,
        member_id: int,
        passage: tuple[float, str, str | None, bool],
        max_stay_s: float,
    ) -> None:
        """A stored passage ``(ts, event id, direction, historical)`` to fold at ``fold``."""
        cal = self.calendar(db, centre_id, passage[0])
        self.queued.setdefault((member_id, centre_id), []).append((*passage, cal, max_stay_s))

    def fold(self, db: Database) -> None:
        """Fold the queued passages into visits, as ``record_passage`` after each would.

        A member whose new passages at a centre all come after every other passage and
        visit of theirs there (the live stream: a badge-in, later its badge-out), on one
        day, is read once from their last visit, and the batch's members are read and
        written in a few statements for them all. Any other (a late passage, one before a
        stored one) is folded passage by passage (``record_passage``)."""
        queued, self.queued = self.queued, {}
        if not queued:
            return
        for items in queued.values():
            items.sort(key=lambda q: (q[0], q[1]))
        ahead = _ahead(db, queued)
        live: list[Change] = []
        for (member_id, centre_id), items in queued.items():
            if (member_id, centre_id) not in ahead:
                for ts, event_id, _, _, cal, max_stay_s in items:
                    record_passage(
                        db,
                        centre_id,
                        member_id,
                        ts,
                        event_id,
                        max_stay_s=max_stay_s,
                        calendar=cal,
                        deferred=self,
                    )
                continue
            start = ahead[(member_id, centre_id)]
            first, last, cal = items[0], items[-1], items[0][4]
            result = replay(
                [
                    Passage(ts, event_id, "in" if d == "in" else "out", h)  # in or out: _ahead
                    for ts, event_id, d, h, _, _ in items
                ],
                [] if start is None else [start],
                new=(first[0], first[1]),
                through=(last[0], last[1]),
                start=start,
                calendar=cal,
                max_stay_s=first[5],
            )
            if result.removed or result.added:
                live.append((member_id, centre_id, result.removed, result.added, cal))
        self._count_live(db, live)  # reads the visits as they were before these changes
        _store(db, [change[:4] for change in live])

    def changed(
        self,
        member_id: int,
        centre_id: str,
        removed: list[Visit],
        added: list[Visit],
        cal: Calendar,
    ) -> None:
        """The member's visits at the centre changed: what to recount."""
        self._member_changed(member_id, centre_id, removed, added)
        self._days_changed(centre_id, removed, added, cal)

    def _member_changed(
        self, member_id: int, centre_id: str, removed: list[Visit], added: list[Visit]
    ) -> None:
        self.firsts.add((member_id, centre_id))
        self.months.update((member_id, v.day[:7]) for v in (*removed, *added))

    def _days_changed(
        self, centre_id: str, removed: list[Visit], added: list[Visit], cal: Calendar
    ) -> None:
        for v in (*removed, *added):
            for day in days_spanned(v, cal):
                self.days.setdefault((centre_id, day), cal)

    def _count_live(self, db: Database, live: list[Change]) -> None:
        """Add the live stream's changes to the members' months and first visits where
        the changes themselves allow it: a visit changed in place (closed by a badge-out
        or at its limit: its seconds), a new visit after every other of the member at the
        centre on a day when the member has no visit at another centre (one visit more,
        and one day more and its first visit there if it is their first that day).
        Anything else (a visit gone, visits at two centres that day) is left to recount
        from the visits. Reads the stored visits: called before the changes are stored."""
        added: dict[tuple[str, str, int], list] = {}

        def add(member_id: int, centre_id: str, v: Visit, n: int, days: int, s: float) -> None:
            row = added.setdefault((v.day[:7], centre_id, member_id), [0, 0, 0, 0.0])
            row[0] += n
            row[1] += days
            row[2] += days  # a member's only centre that day is where their day began
            row[3] += s

        fresh: dict[tuple[int, str], list[tuple[str, Visit]]] = {}  # (member, day) -> new
        recount: set[tuple[int, str]] = set()
        for member_id, centre_id, removed, new_visits, cal in live:
            self._days_changed(centre_id, removed, new_visits, cal)
            before = {v.key: v for v in removed}
            if not before.keys() <= {v.key for v in new_visits}:
                recount.add((member_id, centre_id))  # a visit gone
                continue
            for v in new_visits:
                old = before.get(v.key)
                if old is None:
                    fresh.setdefault((member_id, v.day), []).append((centre_id, v))
                elif old.day != v.day:
                    recount.add((member_id, centre_id))
                else:
                    add(member_id, centre_id, v, 0, 0, _seconds(v) - _seconds(old))
        centres_by_day = _centres_by_day(db, list(fresh))
        firsts: list[tuple[int, str, str]] = []
        for (member_id, day), items in fresh.items():
            centres = centres_by_day.get((member_id, day), set()) | {c for c, _ in items}
            if len(centres) > 1:  # which centre began the day needs every visit of it
                recount.update((member_id, c) for c in centres)
                continue
            items.sort(key=lambda item: item[1].key)
            for i, (centre_id, v) in enumerate(items):
                first_of_day = i == 0 and (member_id, day) not in centres_by_day
                add(member_id, centre_id, v, 1, int(first_of_day), _seconds(v))
                if first_of_day:  # else an earlier visit at the centre has the row
                    firsts.append((member_id, centre_id, v.day))
        for member_id, centre_id, removed, new_visits, _ in live:
            if (member_id, centre_id) in recount:
                self._member_changed(member_id, centre_id, removed, new_visits)
        insert_rows(
            db, "INSERT OR IGNORE INTO first_visits (member_id, centre_id, day)", sorted(firsts)
        )
        _add_months(db, [(*key, *row) for key, row in sorted(added.items())])

    def mark(self, db: Database) -> None:
        """Leave the recounts to ``settle``, recorded in ``pending_recounts`` within this
        transaction (a crash before they are settled leaves them recorded, not lost)."""
        rows = sorted(  # in one order: two writers of PostgreSQL never wait on each other
            [
                *(("first", str(m), c) for m, c in self.firsts),
                *(("month", str(m), month) for m, month in self.months),
                *(("day", c, day.isoformat()) for c, day in self.days),
            ]
        )
        insert_rows(db, "INSERT OR IGNORE INTO pending_recounts (kind, a, b)", rows)
        self.firsts.clear()
        self.months.clear()
        self.days.clear()

    def finish(self, db: Database) -> None:
        """Recount now."""
        _refresh_firsts(db, sorted(self.firsts))
        _refresh_months(db, sorted(self.months))
        refresh_days(db, self.days)
        self.firsts.clear()
        self.months.clear()
        self.days.clear()


def record_passage(
    db: Database,
    centre_id: str,
    member_id: int,
    ts: float,
    event_id: str,
    *,
    max_stay_s: float = DEFAULT_MAX_STAY_S,
    calendar: Calendar | None = None,
    deferred: Deferred | None = None,
) -> None:
    """Fold a stored passage (event ``event_id``) into the member's visits at the centre;
    with ``deferred``, the recounts wait for the end of the batch."""
    if calendar is None and deferred is not None:
        calendar = deferred.calendar(db, centre_id, ts)
    cal = calendar or centre_calendar(db, centre_id, DEFAULT_CALENDAR.local_day(ts))
    new: Key = (ts, event_id)
    # The last visit that began at or before the new passage, then every later one.
    around = [_visit(r) for r in db.execute(_AROUND, [member_id, centre_id, *new] * 2)]
    start = around[0] if around and around[0].key <= new else None
    result = replay(
        _passages(db, member_id, centre_id, new),
        around,
        new=new,
        start=start,
        calendar=cal,
        max_stay_s=max_stay_s,
    )
    if not result.removed and not result.added:
        return
    _store(db, [(member_id, centre_id, result.removed, result.added)])
    later = deferred or Deferred()
    later.changed(member_id, centre_id, result.removed, result.added, cal)
    if deferred is None:
        later.finish(db)


# What a recount is of: a member's first visit at a centre, a member's month, a centre's day.
MEMBER_KINDS = ("first", "month")
# A centre's day is recounted from every visit of that day there: with thousands of units
# it is most of a recount, and it costs the same however long it waited.
DAY_KINDS = ("day",)


def pending(db: Database) -> bool:
    """Whether ingest left recounts that ``settle`` has not done yet."""
    return db.execute("SELECT 1 FROM pending_recounts LIMIT 1").fetchone() is not None


def settle(db: Database, kinds: tuple[str, ...] = (*MEMBER_KINDS, *DAY_KINDS)) -> int:
    """Recount what ingest left in ``pending_recounts`` (``Deferred.mark``), of these
    ``kinds``; return how many recounts were done. A centre deleted since has nothing left
    to recount."""
    only = f" WHERE kind IN ({marks(kinds)})"
    rows = db.execute(f"SELECT kind, a, b FROM pending_recounts{only}", kinds).fetchall()
    if not rows:
        return 0
    later = Deferred()
    later.know_centres(db, {a for kind, a, _ in rows if kind == "day"})
    for kind, a, b in rows:
        if kind == "first":
            later.firsts.add((int(a), b))
        elif kind == "month":
            later.months.add((int(a), b))
        elif kind == "day":
            day = date.fromisoformat(b)
            try:
                later.days[(a, day)] = later.calendar_on(db, a, day)
            except NotFound:
                continue
    later.finish(db)
    db.execute(f"DELETE FROM pending_recounts{only}", kinds)
    return len(rows)


def _passages(db: Database, member_id: int, centre_id: str, start: Key) -> Iterator[Passage]:
    rows = db.execute(
        f"{_PASSAGES} AND (ts, event_id) >= (?, ?) ORDER BY ts, event_id",
        [member_id, centre_id, *start],
    )
    for ts, event_id, direction, historical in rows:
        yield Passage(ts, event_id, direction, bool(historical))


def _visit(r: tuple) -> Visit:
    return Visit(
        id=r[0],
        check_in=r[1],
        in_event_id=r[2],
        day=r[3],
        limit_at=r[4],
        limit_reason=r[5],
        check_out=r[6],
        stop_reason=r[7],
        out_event_id=r[8],
        historical=bool(r[9]),
    )


def _store(db: Database, changes: list[tuple[int, str, list[Visit], list[Visit]]]) -> None:
    """For each (member, centre, removed, added), replace the ``removed`` stored visits by
    the ``added`` ones: a visit read again with the same check-in (closed by a badge-out,
    closed at its limit, opened again) is updated in place, keeping its id; the others are
    deleted and inserted. One statement of each kind for them all."""
    gone: list[int | None] = []
    updates: list[tuple] = []
    inserts: list[tuple] = []
    for member_id, centre_id, removed, added in changes:
        by_key = {v.key: v for v in removed}
        for v in added:
            old = by_key.pop(v.key, None)
            if old is None:
                inserts.append(_row(member_id, centre_id, v))
            else:
                updates.append(
                    (
                        v.day,
                        v.check_out,
                        v.stop_reason,
                        v.limit_at,
                        v.limit_reason,
                        v.end_at,
                        v.out_event_id,
                        int(v.historical),
                        old.id,
                    )
                )
        gone.extend(v.id for v in by_key.values())
    for chunk in chunks(gone):
        db.conn.execute(f"DELETE FROM visits WHERE id IN ({marks(chunk)})", chunk)
    if updates:
        db.conn.executemany(
            "UPDATE visits SET day = ?, check_out = ?, stop_reason = ?, limit_at = ?,"
            " limit_reason = ?, end_at = ?, out_event_id = ?, historical = ? WHERE id = ?",
            updates,
        )
    insert_rows(db, _INSERT, inserts)


_INSERT = (
    "INSERT INTO visits (member_id, centre_id, day, check_in, check_out, stop_reason,"
    " limit_at, limit_reason, end_at, in_event_id, out_event_id, historical)"
)


def _row(member_id: int, centre_id: str, v: Visit) -> tuple:
    return (
        member_id,
        centre_id,
        v.day,
        v.check_in,
        v.check_out,
        v.stop_reason,
        v.limit_at,
        v.limit_reason,
        v.end_at,
        v.in_event_id,
        v.out_event_id,
        int(v.historical),
    )


def _insert(db: Database, member_id: int, centre_id: str, visits: Iterable[Visit]) -> None:
    insert_rows(db, _INSERT, [_row(member_id, centre_id, v) for v in visits])


def _ahead(
    db: Database, queued: dict[tuple[int, str], list[Queued]]
) -> dict[tuple[int, str], Visit | None]:
    """The (member, centre) pairs of ``queued`` whose new passages (badge-ins and -outs,
    on one calendar day) come after every other stored passage and every visit of the
    member at the centre, each with its last visit (None: it has none): two statements
    for the whole batch."""
    wanted = [
        (member_id, centre_id, items[0][0], items[0][1], len(items))
        for (member_id, centre_id), items in queued.items()
        if all(q[2] in ("in", "out") and q[4] is items[0][4] for q in items)
    ]
    latest: dict[tuple[int, str], int | None] = {}
    for chunk in chunks(wanted):
        table, params = values_table([w[:4] for w in chunk])
        counts = {(m, c): n for m, c, *_, n in chunk}
        for member_id, centre_id, stored, last_id in db.conn.execute(
            "SELECT p.column1, p.column2, (SELECT COUNT(*) FROM events e"
            " WHERE e.member_id = p.column1 AND e.centre_id = p.column2"
            " AND e.kind = 'access' AND e.granted = 1 AND e.time_suspect = 0"
            " AND e.direction IN ('in', 'out')"
            " AND (e.ts, e.event_id) >= (p.column3, p.column4)),"
            " (SELECT v.id FROM visits v WHERE v.member_id = p.column1"
            " AND v.centre_id = p.column2 ORDER BY v.check_in DESC, v.in_event_id DESC LIMIT 1)"
            f" FROM {table} AS p",
            params,
        ):
            if stored == counts[(member_id, centre_id)]:
                latest[(member_id, centre_id)] = last_id
    found: dict[int, Visit] = {}
    ids = [i for i in latest.values() if i is not None]
    for chunk in chunks(ids):
        for r in db.conn.execute(
            f"SELECT {_COLUMNS} FROM visits WHERE id IN ({marks(chunk)})", chunk
        ):
            found[r[0]] = _visit(r)
    out: dict[tuple[int, str], Visit | None] = {}
    for pair, last_id in latest.items():
        visit = None if last_id is None else found[last_id]
        first = queued[pair][0]
        # A later visit with no later passage: its events were purged (retention).
        if visit is None or visit.key <= (first[0], first[1]):
            out[pair] = visit
    return out


def _seconds(v: Visit) -> float:
    return seconds_present(v.check_in, v.end_at)


def _centres_by_day(db: Database, pairs: list[tuple[int, str]]) -> dict[tuple[int, str], set[str]]:
    """The centres of each (member, day)'s stored visits, for those that have any."""
    out: dict[tuple[int, str], set[str]] = {}
    for chunk in chunks(pairs):
        table, params = values_table(chunk)
        for member_id, day, centre_id in db.conn.execute(
            "SELECT DISTINCT v.member_id, v.day, v.centre_id FROM"
            f" {table} AS p JOIN visits v ON v.member_id = p.column1 AND v.day = p.column2",
            params,
        ):
            out.setdefault((member_id, day), set()).add(centre_id)
    return out


def _add_months(db: Database, rows: list[tuple[str, str, int, int, int, int, float]]) -> None:
    """Add (month, centre, member, visits, days, first days, seconds) to ``visit_months``."""
    insert_rows(
        db,
        "INSERT INTO visit_months (month, centre_id, member_id, visits, days, first_days, seconds)",
        rows,
        " ON CONFLICT (month, centre_id, member_id) DO UPDATE SET"
        " visits = visit_months.visits + excluded.visits,"
        " days = visit_months.days + excluded.days,"
        " first_days = visit_months.first_days + excluded.first_days,"
        " seconds = visit_months.seconds + excluded.seconds",
    )


def _refresh_firsts(db: Database, pairs: list[tuple[int, str]]) -> None:
    """Each (member, centre)'s first visit day, from their visits."""
    for chunk in chunks(pairs):
        table, params = values_table(chunk)
        found = {
            (m, c): day
            for m, c, day in db.conn.execute(
                f"SELECT v.member_id, v.centre_id, MIN(v.day) FROM {table} AS p"
                " JOIN visits v ON v.member_id = p.column1 AND v.centre_id = p.column2"
                " GROUP BY v.member_id, v.centre_id",
                params,
            )
        }
        insert_rows(
            db,
            "INSERT INTO first_visits (member_id, centre_id, day)",
            [(m, c, day) for (m, c), day in found.items()],
            " ON CONFLICT (member_id, centre_id) DO UPDATE SET day = excluded.day",
        )
        db.conn.executemany(
            "DELETE FROM first_visits WHERE member_id = ? AND centre_id = ?",
            [pair for pair in chunk if pair not in found],
        )


def _refresh_months(db: Database, pairs: list[tuple[int, str]]) -> None:
    """Recount each (member, month) from their visits: a statement per month and chunk of
    members."""
    by_month: dict[str, list[int]] = {}
    for member_id, month in pairs:
        by_month.setdefault(month, []).append(member_id)
    for month, members in sorted(by_month.items()):
        for chunk in chunks(members):
            found: dict[int, list[tuple]] = {m: [] for m in chunk}
            for member_id, *visit in db.conn.execute(
                "SELECT member_id, centre_id, day, check_in, in_event_id, end_at FROM visits"
                f" WHERE member_id IN ({marks(chunk)}) AND day BETWEEN ? AND ?",
                [*chunk, f"{month}-01", f"{month}-31"],
            ):
                found[member_id].append(tuple(visit))
            db.conn.execute(
                f"DELETE FROM visit_months WHERE month = ? AND member_id IN ({marks(chunk)})",
                [month, *chunk],
            )
            _insert_months(db, month, found)


def _insert_months(db: Database, month: str, found: dict[int, list[tuple]]) -> None:
    """The month's counts of each member from their visits ``found`` (by member)."""
    insert_rows(
        db,
        "INSERT INTO visit_months (month, centre_id, member_id, visits, days, first_days, seconds)",
        [
            (month, c, member_id, *counts)
            for member_id, visits in found.items()
            for c, counts in month_rows(visits).items()
        ],
    )


def refresh_days(db: Database, days: dict[tuple[str, date], Calendar]) -> None:
    """Recount the people present at each (centre, local day) of ``days`` from its visits:
    a statement per day and chunk of centres to read, one to write them all."""
    by_day: dict[date, list[str]] = {}
    for centre_id, day in days:
        by_day.setdefault(day, []).append(centre_id)
    counted: list[tuple[str, str, int, Any]] = []
    empty: dict[str, list[str]] = {}  # day -> centres with nobody that day
    for day, centre_ids in sorted(by_day.items()):
        for chunk in chunks(sorted(centre_ids)):
            bounds = {
                c: (days[(c, day)].at(day, 0), days[(c, day)].at(day + timedelta(days=1), 0))
                for c in chunk
            }
            spans: dict[str, list[tuple[float, float]]] = {c: [] for c in chunk}
            # Bounds wide enough for every centre of the chunk (time zones differ); each
            # centre's own are applied below.
            for centre_id, check_in, end_at in db.conn.execute(
                "SELECT centre_id, check_in, end_at FROM visits"
                f" WHERE centre_id IN ({marks(chunk)}) AND day BETWEEN ? AND ?"
                " AND check_in < ? AND end_at > ?",
                [
                    *chunk,
                    (day - timedelta(days=LOOKBACK_DAYS)).isoformat(),
                    day.isoformat(),
                    max(end for _, end in bounds.values()),
                    min(start for start, _ in bounds.values()),
                ],
            ):
                start, end = bounds[centre_id]
                if check_in < end and end_at > start:
                    spans[centre_id].append((check_in, end_at))
            for centre_id in chunk:
                if not spans[centre_id]:
                    empty.setdefault(day.isoformat(), []).append(centre_id)
                    continue
                start, end = bounds[centre_id]
                cal = days[(centre_id, day)]
                peak, samples = rules.day_occupancy(
                    spans[centre_id], rules.sample_instants(cal, day), start, end
                )
                counted.append((centre_id, day.isoformat(), peak, rules.pack_samples(samples)))
    for day_text, centre_ids in empty.items():
        for chunk in chunks(centre_ids):
            db.conn.execute(
                f"DELETE FROM occupancy_days WHERE day = ? AND centre_id IN ({marks(chunk)})",
                [day_text, *chunk],
            )
    insert_rows(
        db,
        "INSERT INTO occupancy_days (centre_id, day, peak, samples)",
        counted,
        " ON CONFLICT (centre_id, day) DO UPDATE SET peak = excluded.peak,"
        " samples = excluded.samples",
    )


def rebuild_all(db: Database, *, max_stay_s: float = DEFAULT_MAX_STAY_S) -> int:
    """Build every visit again from the stored events (a new database, or one whose events
    came in bulk); return how many. Replaces visits, first visits, visit months and
    occupancy days."""
    for table in ("visits", "first_visits", "occupancy_days", "visit_months"):
        db.execute(f"DELETE FROM {table}")
    if "pending_recounts" in db.table_names():  # all recounted here (older schemas: none)
        db.execute("DELETE FROM pending_recounts")
    pairs = db.execute(
        "SELECT DISTINCT member_id, centre_id FROM events WHERE member_id IS NOT NULL"
        " AND centre_id IS NOT NULL AND kind = 'access' AND granted = 1"
    ).fetchall()
    calendars_by_centre: dict[str, Calendar] = {}
    touched: dict[str, set[date]] = {}
    total = 0
    for member_id, centre_id in pairs:
        cal = calendars_by_centre.get(centre_id)
        if cal is None:
            cal = calendars_by_centre[centre_id] = _wide_calendar(db, centre_id)
        found = build(_passages(db, member_id, centre_id, (float("-inf"), "")), cal, max_stay_s)
        _insert(db, member_id, centre_id, found)
        total += len(found)
        days = touched.setdefault(centre_id, set())
        for v in found:
            days.update(days_spanned(v, cal))
    db.execute(
        "INSERT INTO first_visits (member_id, centre_id, day)"
        " SELECT member_id, centre_id, MIN(day) FROM visits GROUP BY member_id, centre_id"
    )
    rows = db.execute(
        "SELECT member_id, substr(day, 1, 7), centre_id, day, check_in, in_event_id, end_at"
        " FROM visits ORDER BY member_id, day"
    ).fetchall()
    for (member_id, month), group in groupby(rows, key=lambda r: (r[0], r[1])):
        _insert_months(db, month, {member_id: [r[2:] for r in group]})
    refresh_days(
        db,
        {(c, day): calendars_by_centre[c] for c, spanned in touched.items() for day in spanned},
    )
    return total


def _wide_calendar(db: Database, centre_id: str) -> Calendar:
    """The centre's calendar with closed days over the whole span of its events."""
    first, last = db.execute(
        "SELECT MIN(ts), MAX(ts) FROM events WHERE centre_id = ?", [centre_id]
    ).fetchone()
    if first is None:
        return centre_calendar(db, centre_id, date.today())
    probe = Calendar()
    start, end = probe.local_day(first), probe.local_day(last)
    return centre_calendar(db, centre_id, end, days=(end - start).days + 3)


# -- reading ------------------------------------------------------------------------------


def page(
    db: Database,
    *,
    centre_ids: Iterable[str] | None = None,
    centre_id: str | None = None,
    member_id: int | None = None,
    since: float | None = None,
    until: float | None = None,
    open_only: bool = False,
    limit: int = 100,
    offset: int = 0,
    now: float,
) -> tuple[int, list[dict[str, Any]]]:
    """(total matching, one page of visits newest check-in first, with the member's name,
    as read at ``now``); ``since``/``until`` bound the check-in; ``open_only``: still open
    at ``now``."""
    clauses, args = [], []
    if centre_ids is not None:
        allowed = sorted(centre_ids)
        clauses.append(f"v.centre_id IN ({', '.join('?' * len(allowed)) or 'NULL'})")
        args.extend(allowed)
    for clause, value in (
        ("v.centre_id = ?", centre_id),
        ("v.member_id = ?", member_id),
        ("v.check_in >= ?", since),
        ("v.check_in < ?", until),
    ):
        if value is not None:
            clauses.append(clause)
            args.append(value)
    if open_only:
        clauses.append("v.check_out IS NULL AND v.limit_at > ?")
        args.append(now)
    where = " AND ".join(clauses) or "1"
    total = db.execute(f"SELECT COUNT(*) FROM visits v WHERE {where}", args).fetchone()[0]
    rows = db.query(
        f"SELECT v.*, m.name AS member_name FROM visits v"
        f" LEFT JOIN members m ON m.id = v.member_id WHERE {where}"
        " ORDER BY v.check_in DESC, v.id DESC LIMIT ? OFFSET ?",
        [*args, limit, offset],
    )
    return total, [as_read(r, now) for r in rows]
