"""SQL for events: idempotent ingest of a unit's events, folded into live state, and queries."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import date
from typing import Any

from sqlite_utils import Database

from protocol.calendar import Calendar
from protocol.messages import Event
from server.store.records import IngestResult
from server.store.sqlite import alarms, badges, devices, occupancy, plans, privacy, visits
from server.store.sqlite.params import chunks, marks, values, values_table

log = logging.getLogger(__name__)


class Batch:
    """What one write batch reads once and finishes once: each unit's centre, each centre's
    calendar of a day, erased members and plan holders; visit recounts, the units' last
    seen times and the check of reused seqs wait for ``finish``.

    Nothing outside the batch's transaction changes these meanwhile (one writer)."""

    def __init__(self) -> None:
        self.visits = visits.Deferred()
        self._units: dict[str, tuple[bool, str | None]] = {}
        self._erased: dict[int, bool] = {}
        self._holders: dict[int, bool] = {}
        self._heard: dict[str, float] = {}  # unit -> when it was last heard live
        self._stored: list[tuple[str, int]] = []  # (unit, seq) of each event stored
        # Each member's last passage at a centre, written with the visits (``fold``).
        self._presence: dict[tuple[str, int], tuple[bool, float]] = {}

    def know_units(self, db: Database, device_ids: Iterable[str]) -> None:
        """Read the centre of every unit the batch names, and those centres' calendars: a
        few statements for the batch instead of three per unit."""
        wanted = sorted(set(device_ids) - self._units.keys())
        for chunk in chunks(wanted):
            found = dict(
                db.conn.execute(
                    f"SELECT device_id, centre_id FROM devices WHERE device_id IN ({marks(chunk)})",
                    chunk,
                ).fetchall()
            )
            for device_id in chunk:
                known = device_id in found
                self._units[device_id] = (known, found.get(device_id))
        centres = {c for _, c in self._units.values() if c is not None}
        self.visits.know_centres(db, centres)

    def centre_of(self, db: Database, device_id: str) -> tuple[bool, str | None]:
        found = self._units.get(device_id)
        if found is None:
            found = self._units[device_id] = devices.centre_of(db, device_id)
        return found

    def calendar(self, db: Database, centre_id: str, ts: float) -> Calendar:
        # The same calendar as centres.calendar, built once for the same rows and day.
        return self.visits.calendar_on(db, centre_id, date.fromtimestamp(ts), days=400)

    def stored(self, device_id: str, seqs: list[int], heard_live_at: float | None) -> None:
        """A unit's events were stored (their seqs); it was heard live at ``heard_live_at``."""
        self._stored.extend((device_id, seq) for seq in seqs)
        if heard_live_at is not None:
            self._heard[device_id] = max(heard_live_at, self._heard.get(device_id, 0.0))

    def know_members(self, db: Database, items: list[tuple[str, list[Event], float]]) -> None:
        """Read, for every member the batch's events name, whether they were erased and
        whether they hold plans: two queries for the batch instead of two per member."""
        wanted = sorted({e.member_id for _, events, _ in items for e in events if e.member_id})
        for chunk in chunks(wanted):
            erased = {
                r[0]
                for r in db.execute(
                    f"SELECT id FROM erased_members WHERE id IN ({marks(chunk)})", chunk
                )
            }
            holders = {
                r[0]
                for r in db.execute(
                    "SELECT DISTINCT member_id FROM member_plans"
                    f" WHERE member_id IN ({marks(chunk)})",
                    chunk,
                )
            }
            for member_id in chunk:
                self._erased[member_id] = member_id in erased
                self._holders[member_id] = member_id in holders

    def erased(self, db: Database, member_id: int) -> bool:
        found = self._erased.get(member_id)
        if found is None:
            found = self._erased[member_id] = privacy.erased(db, member_id)
        return found

    def holds_plans(self, db: Database, member_id: int) -> bool:
        found = self._holders.get(member_id)
        if found is None:
            found = self._holders[member_id] = plans.holds_plans(db, member_id)
        return found

    def passage(self, centre_id: str, member_id: int, inside: bool, ts: float) -> None:
        """Keep the member's latest passage (the later one of equal times, as its upsert
        one after the other would)."""
        key = (centre_id, member_id)
        kept = self._presence.get(key)
        if kept is None or ts >= kept[1]:
            self._presence[key] = (inside, ts)

    def fold(self, db: Database) -> None:
        """Write what the events of this write changed in presence and visits."""
        if self._presence:
            occupancy.record_passages(db, self._presence)
            self._presence = {}
        self.visits.fold(db)

    def forget_changes(self) -> None:
        """The write's events were not stored: neither is what they changed."""
        self._presence = {}
        self.visits.queued.clear()

    def finish(self, db: Database) -> None:
        _warn_reused(db, self._stored)
        devices.touch_all(db, self._heard)
        self.visits.mark(db)  # recounted by ``visits.settle``


def lock_keys(items: Iterable[tuple[str, list[Event], float]]) -> frozenset[str]:
    """What an ingest of ``items`` reads and changes that another server process's ingest
    may change too (``Writer.submit``'s keys): each unit (its events, alarms and state),
    each member named (presence, visits, credits, recounts), each unknown card, each room.
    Everything else ingest reads only changes in writes that lock every write."""
    keys: set[str] = set()
    for device_id, events, _ in items:
        keys.add(f"device:{device_id}")
        for e in events:
            if e.member_id is not None:
                keys.add(f"member:{e.member_id}")
            if e.badge_hash is not None and e.reason == "unknown_card":
                keys.add(f"badge:{e.badge_hash}")
            if e.room is not None:
                keys.add(f"room:{e.room}")
    return frozenset(keys)


def ingest(
    db: Database,
    device_id: str,
    events: list[Event],
    received_at: float,
    *,
    late_event_s: float = 60.0,
    future_margin_s: float = 300.0,
    max_stay_s: float = visits.DEFAULT_MAX_STAY_S,
) -> IngestResult:
    """Insert a unit's events (one outbox epoch) once each; fold the new ones into live state.

    A unit missing from the registry still has its events stored (never lost) but gets no
    device row and moves no live state. An event is stored historical if the unit says so
    or if it arrived more than ``late_event_s`` after its (synchronised) time; its time is
    suspect if the clock was not synchronised or it is dated more than ``future_margin_s``
    ahead of its arrival: such an event is shown, flagged, and moves nothing.
    """
    batch = Batch()
    (result,) = _ingest_units(
        db, batch, [(device_id, events, received_at)], late_event_s, future_margin_s, max_stay_s
    )
    batch.fold(db)
    batch.finish(db)
    return result


def ingest_many(
    db: Database,
    items: list[tuple[str, list[Event], float]],
    *,
    late_event_s: float = 60.0,
    future_margin_s: float = 300.0,
    max_stay_s: float = visits.DEFAULT_MAX_STAY_S,
) -> list[IngestResult | Exception]:
    """``ingest`` for many units' ``(device_id, events, received_at)`` in one transaction,
    reading what they share once. A unit whose events fail gets its exception in the list
    and the others are stored: the batch is then done again with each unit's events in a
    savepoint of their own."""
    batch = Batch()
    batch.know_members(db, items)
    batch.know_units(db, (device_id for device_id, _, _ in items))
    args = (late_event_s, future_margin_s, max_stay_s)
    try:  # the common case, every unit's events good: one savepoint for them all
        with db.atomic():
            out: list[IngestResult | Exception] = [*_ingest_units(db, batch, items, *args)]
            batch.fold(db)
    except Exception:  # again, each unit in its own savepoint: the bad one fails alone
        batch = Batch()
        out = []
        for device_id, events, received_at in items:
            try:
                with db.atomic():
                    unit = [(device_id, events, received_at)]
                    out.extend(_ingest_units(db, batch, unit, *args))
                    batch.fold(db)
            except Exception as exc:  # this unit's events fail alone; it resends them
                batch.forget_changes()
                log.exception("events of %s not stored", device_id)
                out.append(exc)
    batch.finish(db)
    return out


def _ingest_units(
    db: Database,
    batch: Batch,
    items: list[tuple[str, list[Event], float]],
    late_event_s: float,
    future_margin_s: float,
    max_stay_s: float,
) -> list[IngestResult]:
    """Store the units' events, every unit's in one statement (thousands of units: one
    event each), then fold each unit's new ones into live state; a result per unit."""
    prepared = [
        _rows(db, batch, device_id, events, received_at, late_event_s, future_margin_s)
        for device_id, events, received_at in items
    ]
    inserted = _insert_events(db, [row for rows, _ in prepared for row in rows])
    return [
        _apply_unit(db, batch, device_id, events, received_at, flags, inserted, max_stay_s)
        for (device_id, events, received_at), (_, flags) in zip(items, prepared, strict=True)
    ]


Flags = tuple[bool, bool, bool]  # an event's member erased since; historical; time suspect


def _rows(
    db: Database,
    batch: Batch,
    device_id: str,
    events: list[Event],
    received_at: float,
    late_event_s: float,
    future_margin_s: float,
) -> tuple[list[tuple[Any, ...]], list[Flags]]:
    """A unit's events as rows of the events table, and the flags of each."""
    _, centre_id = batch.centre_of(db, device_id)
    rows: list[tuple[Any, ...]] = []
    flags: list[Flags] = []
    for e in events:
        # An event of a member erased since (from a unit's outbox) is kept naming nobody.
        gone = e.member_id is not None and batch.erased(db, e.member_id)
        member_id, badge_hash = (None, None) if gone else (e.member_id, e.badge_hash)
        historical = e.historical or (e.clock_synced and received_at - e.ts > late_event_s)
        suspect = time_suspect(e, received_at, future_margin_s)
        flags.append((gone, historical, suspect))
        rows.append(
            (
                e.event_id,
                device_id,
                e.seq,
                centre_id,
                e.kind,
                e.ts,
                received_at,
                e.clock_synced,
                historical,
                suspect,
                e.door,
                badge_hash,
                e.granted,
                e.reason,
                e.direction,
                member_id,
                e.room,
                e.room_state,
            )
        )
    return rows, flags


def _apply_unit(
    db: Database,
    batch: Batch,
    device_id: str,
    events: list[Event],
    received_at: float,
    flags: list[Flags],
    inserted: set[str],
    max_stay_s: float,
) -> IngestResult:
    """Fold the unit's events just ``inserted`` (their ids; each taken out of the set as it
    is folded) into live state, alarms and credits."""
    known, centre_id = batch.centre_of(db, device_id)
    new = 0
    new_ids: set[str] = set()
    live = False
    credited: list[int] = []
    new_seqs: list[int] = []
    for e, (gone, historical, suspect) in zip(events, flags, strict=True):
        if e.event_id not in inserted:
            continue  # already stored: a resend after a lost ack
        inserted.discard(e.event_id)  # a second copy in the same message is a resend too
        new_seqs.append(e.seq)
        new += 1
        new_ids.add(e.event_id)
        live = live or not historical
        if e.kind == "access" and not e.granted and e.reason == "unknown_card":
            badges.record_unknown_tap(db, e.badge_hash, e.ts, device_id, e.door, centre_id)
        if not suspect and not gone:
            _apply(db, batch, centre_id, device_id, e, historical, max_stay_s)
        if (
            e.kind == "access"
            and e.granted
            and e.member_id is not None
            and centre_id is not None
            and batch.holds_plans(db, e.member_id)
        ):
            # Day credits are reconciled from what the units decided, online or offline.
            cal = batch.calendar(db, centre_id, e.ts)
            if plans.record_entry(db, e.member_id, centre_id, cal, e.ts, e.event_id):
                credited.append(e.member_id)
        if known and centre_id is not None and e.door is not None:
            alarms.door_event(db, device_id, centre_id, e, received_at)
    batch.stored(device_id, new_seqs, received_at if live and known else None)
    epoch = events[0].epoch if events else ""
    return IngestResult(
        device_id,
        epoch,
        [e.seq for e in events],
        new,
        centre_id,
        tuple(credited),
        frozenset(new_ids),
    )


def _insert_events(db: Database, rows: list[tuple[Any, ...]]) -> set[str]:
    """Insert the rows the events table does not hold yet (by event id), a few hundred in
    one statement; return the ids inserted."""
    inserted: set[str] = set()
    for chunk in chunks(rows):
        listed, params = values(chunk)
        inserted.update(
            r[0]
            for r in db.conn.execute(
                "INSERT OR IGNORE INTO events (event_id, device_id, seq, centre_id, kind, ts,"
                " received_at, clock_synced, historical, time_suspect, door, badge_hash,"
                f" granted, reason, direction, member_id, room, room_state) {listed}"
                " RETURNING event_id",
                params,
            )
        )
    return inserted


def _warn_reused(db: Database, stored: list[tuple[str, int]]) -> None:
    """Log the (unit, seq) just stored that the unit had already used (its outbox was
    reset)."""
    for chunk in chunks(stored):
        table, params = values_table(chunk)
        reused = db.conn.execute(
            f"SELECT e.device_id, e.seq FROM {table} AS v"
            " JOIN events e ON e.device_id = v.column1 AND e.seq = v.column2"
            " GROUP BY e.device_id, e.seq HAVING COUNT(*) > 1 ORDER BY e.device_id, e.seq",
            params,
        ).fetchall()
        for device_id, seq in reused:
            log.warning("unit %s reused seq %d: its outbox was reset; event kept", device_id, seq)


def time_suspect(e: Event, received_at: float, future_margin_s: float) -> bool:
    """Whether the event's time cannot be trusted to move live state."""
    return not e.clock_synced or e.ts > received_at + future_margin_s


def _apply(
    db: Database,
    batch: Batch,
    centre_id: str | None,
    device_id: str,
    e: Event,
    historical: bool,
    max_stay_s: float,
) -> None:
    """Fold one new event into live state; an older (replayed) event never overwrites newer.
    A passage goes into visits at the end of the write (``visits.Deferred.fold``)."""
    if centre_id is None:
        return
    if e.kind == "access" and e.granted and e.member_id is not None:
        batch.passage(centre_id, e.member_id, e.direction == "in", e.ts)
        passage = (e.ts, e.event_id, e.direction, bool(historical))
        batch.visits.queue(db, centre_id, e.member_id, passage, max_stay_s)
    elif e.kind == "room" and e.room is not None:
        holder = devices.room_holder(db, centre_id, e.room)
        if holder is not None and holder != device_id:
            log.warning(
                "unit %s reported room %s of %s, held by %s: state unchanged",
                device_id,
                e.room,
                centre_id,
                holder,
            )
            return
        occupancy.record_room(db, centre_id, e.room, device_id, e.room_state, e.ts)


def page(
    db: Database,
    *,
    centre_id: str | None = None,
    since: float | None = None,
    until: float | None = None,
    kind: str | None = None,
    limit: int = 100,
    offset: int = 0,
    centre_ids: Iterable[str] | None = None,
    door: str | None = None,
    member_id: int | None = None,
    member_name: str | None = None,
    granted: bool | None = None,
    reason: str | None = None,
    after: tuple[float, int] | None = None,
    count_limit: int | None = None,
) -> tuple[int, list[dict]]:
    """(total matching, one page of events newest first with the member's name);
    ``centre_ids`` (a manager's centres) keeps only events of these centres;
    ``member_name``: members whose name contains it (any case); ``granted`` and
    ``reason``: the decision on a card and the rule that made it.

    ``after`` is the (ts, id) of the last event of the previous page: the page starts just
    below it (keyset paging, as fast at the millionth event as at the first; an index
    serves every filter). ``count_limit``: count at most that many and one more, so a
    caller can tell "more than count_limit" without counting a million rows."""
    clauses: list[str] = []
    args: list[object] = []
    if centre_ids is not None:
        allowed = sorted(centre_ids)
        clauses.append(f"centre_id IN ({', '.join('?' * len(allowed)) or 'NULL'})")
        args.extend(allowed)
    for clause, value in (
        ("centre_id = ?", centre_id),
        ("ts >= ?", since),
        ("ts < ?", until),
        ("kind = ?", kind),
        ("door = ?", door),
        ("member_id = ?", member_id),
        ("member_id IN (SELECT id FROM members WHERE name LIKE ? ESCAPE '\\')", _like(member_name)),
        ("granted = ?", None if granted is None else int(granted)),
        ("reason = ?", reason),
    ):
        if value is not None:
            clauses.append(clause)
            args.append(value)
    where = " AND ".join(clauses) or "1"
    if count_limit is None:
        total = db.execute(f"SELECT COUNT(*) FROM events WHERE {where}", args).fetchone()[0]
    else:
        total = db.execute(
            f"SELECT COUNT(*) FROM (SELECT 1 FROM events WHERE {where} LIMIT ?)",
            [*args, count_limit + 1],
        ).fetchone()[0]
    keyset, key_args = "", []
    if after is not None:
        keyset = " AND (e.ts, e.id) < (?, ?)"
        key_args = [after[0], after[1]]
    rows = db.query(
        "SELECT e.*, m.name AS member_name FROM events e"
        " LEFT JOIN members m ON m.id = e.member_id"
        f" WHERE {where}{keyset}"
        " ORDER BY e.ts DESC, e.id DESC LIMIT ? OFFSET ?",
        [*args, *key_args, limit, offset],
    )
    return total, [_row(r) for r in rows]


def _like(text: str | None) -> str | None:
    """A LIKE pattern for "contains ``text``" (its own % and _ taken literally)."""
    if not text:
        return None
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def count(db: Database) -> int:
    return db["events"].count


def _row(r: dict) -> dict:
    out = {k: v for k, v in r.items() if v is not None}
    for key in ("clock_synced", "historical", "granted", "time_suspect"):
        if key in out:
            out[key] = bool(out[key])
    return out
