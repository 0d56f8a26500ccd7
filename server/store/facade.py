"""The ``Store`` facade: every read and write the server makes, by resource.

It owns the engine's plumbing (one read connection per calling thread, the single writer
thread, a change counter for the live page) and hands each call to the resource module that
holds its SQL (``server.store.sqlite.<resource>``). Routes, the MQTT handlers and the CLI
only ever see these methods, so a PostgreSQL twin has to provide exactly them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from concurrent.futures import Future
from datetime import date
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from sqlite_utils import Database

from protocol.calendar import Calendar
from protocol.messages import (
    CentreHours,
    Command,
    CommandResult,
    Event,
    Health,
    ListEntry,
    Status,
)
from protocol.workers import Worker
from server.data import communes
from server.domain import alarms as alarm_rules
from server.domain import calendar as calendar_rules
from server.domain import privacy as privacy_rules
from server.domain.access import BadgeRecord
from server.domain.audit import AuditEvent
from server.domain.operators import Operator
from server.domain.reports import Period
from server.store import postgres
from server.store.errors import Conflict, NotFound
from server.store.records import CentreListState, IngestResult, StatusResult
from server.store.sqlite import (
    access,
    badges,
    centres,
    commands,
    credentials,
    devices,
    members,
    occupancy,
)
from server.store.sqlite import alarms as alarms_sql
from server.store.sqlite import audit as audit_sql
from server.store.sqlite import centres as centres_sql
from server.store.sqlite import events as events_sql  # `events` is also ingest's argument
from server.store.sqlite import fleet as fleet_sql
from server.store.sqlite import operators as operators_sql
from server.store.sqlite import plans as plans_sql
from server.store.sqlite import privacy as privacy_sql
from server.store.sqlite import reports as reports_sql
from server.store.sqlite import visits as visits_sql
from server.store.sqlite.migrations import migrations
from server.store.sqlite.writer import Chore, Writer, connect

T = TypeVar("T")

WRITE_TIMEOUT_S = 30
# How often ingest's pending recounts are settled under load (reports settle them first):
# the members' first visits and months, then the centres' days. A day's recount reads
# every visit of that day at the centre: at 2,000 events/s from 3,500 units, once a second,
# it held the writer up to 0.2 s of every second.
RECOUNT_EVERY_S = 1.0
DAY_RECOUNT_EVERY_S = 30.0

log = logging.getLogger(__name__)


class Store:
    """The server's one storage interface: centres, units, members, badges, events, occupancy.

    Writes go through the writer thread and return after the commit; reads run on the
    calling thread's own connection.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        max_stay_s: float = 14 * 3600,
        late_event_s: float = 60.0,
        future_margin_s: float = 300.0,
        alarm_thresholds: alarm_rules.Thresholds | None = None,
    ) -> None:
        # A postgresql:// URL chooses PostgreSQL (server.store.postgres); anything else is
        # the SQLite file's path.
        self.engine = "postgresql" if postgres.is_url(path) else "sqlite"
        self.path: Any = path if self.engine == "postgresql" else Path(path)
        self._connect: Any = connect
        if self.engine == "postgresql":
            from server.store.postgres import database as pg_database
            from server.store.postgres import schema as pg_schema

            self._connect = pg_database.connect
            db = self._connect(self.path)
            pg_schema.apply(db)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = connect(self.path)
            migrations.apply(db)
        self.max_stay_s = max_stay_s
        self.late_event_s = late_event_s
        self.future_margin_s = future_margin_s
        self.alarm_thresholds = alarm_thresholds or alarm_rules.Thresholds()
        db.close()
        self._local = threading.local()
        self._readers: list[Database] = []  # every thread's, closed with the store
        self._readers_lock = threading.Lock()
        self._writer = Writer(self.path, opener=self._connect if self.engine != "sqlite" else None)
        # What ingest leaves to recount for the reports (a run that stopped may have left some).
        self._recounts = [
            Chore(name, partial(visits_sql.settle, kinds=kinds), every_s, requested=True)
            for name, kinds, every_s in (
                ("recounts", visits_sql.MEMBER_KINDS, RECOUNT_EVERY_S),
                ("day recounts", visits_sql.DAY_KINDS, DAY_RECOUNT_EVERY_S),
            )
        ]
        self._writer.chores.extend(self._recounts)
        self._writer.start()
        self._changes = threading.Lock()
        self._change_listeners: list[Any] = []
        self._share_change: Any = None  # ``share_changes``: tells the other workers

    def close(self) -> None:
        """Settle the recounts, stop the writer and close every read connection (threads
        outlive the store)."""
        try:
            self.settle()
        except Exception as exc:  # kept in pending_recounts: the next start settles them
            log.warning("recounts not settled at close: %s", exc)
        self._writer.stop()
        with self._readers_lock:
            readers, self._readers = self._readers, []
        for db in readers:
            db.conn.close()

    @property
    def db(self) -> Database:
        """This thread's read connection."""
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = self._connect(self.path)
            with self._readers_lock:
                self._readers.append(db)
        return db

    def write(self, fn: Any) -> Any:
        """Run ``fn(db)`` on the writer thread; return its result after the commit."""
        return self._writer.submit(fn).result(timeout=WRITE_TIMEOUT_S)

    def _notify(self) -> None:
        """A commit here changed what the live views show."""
        self._tell_listeners()
        share = self._share_change
        if share is not None:
            share()

    def _tell_listeners(self) -> None:
        with self._changes:
            listeners = list(self._change_listeners)
        for listener in listeners:
            listener()

    def announce_change(self) -> None:
        """Something the live views show changed outside this store's commits (the broker
        link, another worker's commit): told to this process's listeners only."""
        self._tell_listeners()

    def share_changes(self, fn: Any) -> None:
        """Also call ``fn()`` (hand over, never block) after each commit here that changes
        what the live views show, so that the other workers of a group push their live
        streams too (``server.store.postgres.leader.LiveNotices``); ``announce_change``
        does not call it, so a change heard from another worker is not told back."""
        self._share_change = fn

    def on_change(self, fn: Any) -> None:
        """Call ``fn()`` (on the writer thread: hand over, never block) after each commit
        that changes what the live page shows; the live stream is pushed from it."""
        with self._changes:
            self._change_listeners.append(fn)

    def remove_change_listener(self, fn: Any) -> None:
        with self._changes:
            if fn in self._change_listeners:
                self._change_listeners.remove(fn)

    @property
    def writer_stats(self) -> dict[str, int]:
        return {
            "batches": self._writer.batches,
            "items": self._writer.items,
            "failed_batches": self._writer.failed_batches,
        }

    def observe_commits(self, fn: Any) -> None:
        """Call ``fn(items, seconds)`` after each committed write batch (metrics)."""
        self._writer.on_commit = fn

    @property
    def workers(self) -> list[Worker]:
        """The store's threads, for /healthz."""
        return [self._writer.worker]

    # -- centres and units ------------------------------------------------------------------

    def create_centre(self, centre_id: str, name: str, commune: str | None = None) -> dict:
        now = time.time()
        self.write(lambda db: centres.create(db, centre_id, name, commune, now))
        return self.centre(centre_id)

    def centre(self, centre_id: str) -> dict:
        return centres.get(self.db, centre_id)

    def centres(self) -> list[dict]:
        return centres.list_all(self.db)

    # -- centres' calendars and plans -----------------------------------------------------------

    def centre_calendar(self, centre_id: str, ts: float) -> Calendar:
        """The centre's calendar around ``ts`` (as centres.calendar gives it), built once
        for the same rows and day: an online access request asks it every time."""
        return visits_sql.centre_calendar(self.db, centre_id, date.fromtimestamp(ts), days=400)

    def centre_hours(self, centre_id: str, now: float) -> CentreHours:
        """What the centre's list head carries for its units."""
        return calendar_rules.for_units(
            self.centre_calendar(centre_id, now), date.fromtimestamp(now)
        )

    def update_centre(self, centre_id: str, fields: dict[str, Any]) -> dict:
        self.write(lambda db: centres_sql.update(db, centre_id, fields, time.time()))
        return self.centre(centre_id)

    def closures(self, centre_id: str) -> list[dict]:
        return centres_sql.closures(self.db, centre_id)

    def add_closure(self, centre_id: str, start: str, end: str, reason: str | None) -> dict:
        closure_id = self.write(
            lambda db: centres_sql.add_closure(db, centre_id, start, end, reason)
        )
        return next(c for c in self.closures(centre_id) if c["id"] == closure_id)

    def remove_closure(self, centre_id: str, closure_id: int) -> dict:
        return self.write(lambda db: centres_sql.remove_closure(db, centre_id, closure_id))

    def rooms(self, centre_id: str) -> list[dict]:
        return centres_sql.rooms(self.db, centre_id)

    def put_room(self, centre_id: str, room_id: str, fields: dict[str, Any]) -> dict:
        self.write(lambda db: centres_sql.put_room(db, centre_id, room_id, fields))
        return next(r for r in self.rooms(centre_id) if r["room_id"] == room_id)

    def doors(self, centre_id: str) -> list[dict]:
        return centres_sql.doors(self.db, centre_id)

    def put_door(self, centre_id: str, door_id: str, fields: dict[str, Any]) -> dict:
        self.write(lambda db: centres_sql.put_door(db, centre_id, door_id, fields))
        return next(d for d in self.doors(centre_id) if d["door_id"] == door_id)

    def create_plan(self, fields: dict[str, Any]) -> dict:
        plan_id = self.write(lambda db: plans_sql.create_plan(db, fields, time.time()))
        return self.plan(plan_id)

    def plan(self, plan_id: int) -> dict:
        return plans_sql.plan(self.db, plan_id)

    def plans(self) -> list[dict]:
        return plans_sql.plans(self.db)

    def give_plan(
        self, member_id: int, plan_id: int, valid_from: float | None, valid_until: float | None
    ) -> dict:
        held_id = self.write(
            lambda db: plans_sql.give_plan(
                db, member_id, plan_id, valid_from, valid_until, time.time()
            )
        )
        return next(p for p in self.member_plans(member_id) if p["id"] == held_id)

    def end_member_plan(self, member_id: int, held_id: int) -> dict:
        if not any(p["id"] == held_id for p in self.member_plans(member_id)):
            raise NotFound(f"member {member_id} holds no plan {held_id}")
        self.write(lambda db: plans_sql.end_plan(db, held_id, time.time()))
        return next(p for p in self.member_plans(member_id) if p["id"] == held_id)

    def member_plans(self, member_id: int) -> list[dict]:
        return plans_sql.member_plans(self.db, member_id)

    def assign_device(self, device_id: str, centre_id: str) -> dict:
        self.centre(centre_id)
        now = time.time()

        def assign(db: Database) -> None:
            devices.assign(db, device_id, centre_id)
            alarms_sql.unit_moved(db, device_id, centre_id, now)

        self.write(assign)
        return self.device(device_id)

    def device(self, device_id: str) -> dict:
        return devices.get(self.db, device_id)

    def devices(self, centre_id: str | None = None) -> list[dict]:
        return devices.list_all(self.db, centre_id)

    def device_known(self, device_id: str) -> bool:
        """Whether the unit is in the registry (the devices table)."""
        return devices.centre_of(self.db, device_id)[0]

    def device_centre(self, device_id: str) -> str | None:
        """The unit's centre; None for a unit not in the registry or not in a centre (one
        indexed read: an online access request asks it each time)."""
        return devices.centre_of(self.db, device_id)[1]

    def register_device(self, device_id: str, centre_id: str, password_hash: str) -> dict:
        """Put a unit in the registry with its broker password hash (``device add``)."""
        self.centre(centre_id)
        now = time.time()

        def register(db: Database) -> None:
            devices.assign(db, device_id, centre_id)
            alarms_sql.unit_moved(db, device_id, centre_id, now)
            credentials.set_hash(db, device_id, password_hash, now)

        self.write(register)
        return self.device(device_id)

    def revoke_device_credentials(self, device_id: str) -> bool:
        """Remove the unit's broker account; False when it had none."""
        self.device(device_id)
        return self.write(lambda db: credentials.remove(db, device_id))

    def device_credentials(self) -> list[dict]:
        """Every unit with a broker account (device id, centre, password hash)."""
        return credentials.list_all(self.db)

    def add_server_account(self, username: str, password_hash: str) -> None:
        """A server worker's broker account beyond the first (``worker add``); refused
        for a name a unit has in the registry."""
        if self.device_known(username):
            raise Conflict(f"{username!r} is a unit's id: pick another worker name")
        now = time.time()
        self.write(lambda db: credentials.set_server_hash(db, username, password_hash, now))

    def remove_server_account(self, username: str) -> bool:
        """Remove a server worker's broker account; False when there was none."""
        return self.write(lambda db: credentials.remove_server(db, username))

    def server_accounts(self) -> list[dict]:
        """The server workers' broker accounts beyond the first (user name, hash)."""
        return credentials.list_servers(self.db)

    def record_health(
        self, health: Health, received_at: float, *, retained: bool = False
    ) -> Future[bool]:
        """Keep a unit's heartbeat; a live one closes ``unit_silent``. Returns at once;
        the live page hears of it only when the unit's condition or silence changed."""
        future = self._writer.submit(
            lambda db: devices.record_health(db, health, received_at, retained=retained)
        )
        future.add_done_callback(lambda f: f.exception() is None and f.result() and self._notify())
        return future

    def record_status(
        self, status: Status, received_at: float, *, retained: bool = False
    ) -> Future[StatusResult]:
        """Store a registered unit's birth or last will, the rooms it announces and the
        alarms it opens or closes; a ``retained`` copy (replayed by the broker) does not
        move ``last_seen``.

        Returns at once; the Future tells whether the unit was known and which rooms were
        refused because another unit of its centre holds them.
        """
        future = self._writer.submit(
            lambda db: devices.record_status(
                db, status, received_at, retained=retained, thresholds=self.alarm_thresholds
            )
        )
        future.add_done_callback(lambda _: self._notify())
        return future

    # -- members and badges -----------------------------------------------------------------

    def create_member(self, fields: dict[str, Any]) -> dict:
        row = members.to_row(fields)
        now = time.time()
        member_id = self.write(lambda db: members.insert(db, row, now))
        return self.member(member_id)

    def update_member(self, member_id: int, fields: dict[str, Any]) -> dict:
        self.member(member_id)
        row = members.to_row(fields)
        if row:
            self.write(lambda db: members.update(db, member_id, row))
        return self.member(member_id)

    def member(self, member_id: int) -> dict:
        return members.get(self.db, member_id)

    def members(
        self,
        *,
        limit: int = 100,
        offset: int = 0,
        centre_ids: Iterable[str] | None = None,
        search: str | None = None,
        badge_hash: str | None = None,
    ) -> tuple[int, list[dict]]:
        """(total, one page by name); ``centre_ids``: only members allowed at one of these
        centres or at every centre; ``search``: part of a name, e-mail or badge label, or
        (``badge_hash``) the card the searched text is the UID of."""
        return members.page(
            self.db,
            limit=limit,
            offset=offset,
            centre_ids=centre_ids,
            search=search,
            badge_hash=badge_hash,
        )

    def enrol_badge(self, member_id: int, badge_hash: str, label: str | None = None) -> dict:
        self.member(member_id)
        now = time.time()
        badge_id = self.write(lambda db: badges.enrol(db, member_id, badge_hash, label, now))
        return self.badge(badge_id)

    def revoke_badge(self, badge_id: int) -> dict:
        self.badge(badge_id)
        now = time.time()
        self.write(lambda db: badges.revoke(db, badge_id, now))
        return self.badge(badge_id)

    def replace_badge(self, badge_id: int, badge_hash: str, label: str | None) -> dict:
        """A lost badge revoked (if not already) and its replacement enrolled, one commit."""
        lost = self.badge(badge_id)
        if lost["badge_hash"] == badge_hash:
            raise Conflict("the replacement card is the lost card itself")
        now = time.time()

        def replace(db: Database) -> int:
            if lost["revoked_at"] is None:
                badges.revoke(db, badge_id, now)
            return badges.enrol(db, lost["member_id"], badge_hash, label, now)

        return self.badge(self.write(replace))

    def badge(self, badge_id: int) -> dict:
        return badges.get(self.db, badge_id)

    def badges(self, member_id: int) -> list[dict]:
        return badges.for_member(self.db, member_id)

    def unknown_cards(self, centre_id: str | None = None) -> list[dict]:
        return badges.unknown_cards(self.db, centre_id)

    # -- access -----------------------------------------------------------------------------

    def badge_record(self, badge_hash: str) -> BadgeRecord | None:
        """What the online access rules need about one card; None if never enrolled."""
        return access.badge_record(self.db, badge_hash)

    def asked_card(
        self, device_id: str, badge_hash: str, now: float
    ) -> tuple[str | None, BadgeRecord | None, ListEntry | None]:
        """What an online access answer reads: (the unit's centre, the card's record, its
        entry in that centre's list when the rules admit it), in as few reads as it takes."""
        return access.asked_card(self.db, device_id, badge_hash, now)

    def list_entries(self, centre_id: str, now: float) -> dict[bytes, ListEntry]:
        """The entries ``centre_id``'s access list should hold now, by badge."""
        return access.list_entries(self.db, centre_id, now)

    def member_list_entries(
        self, centre_id: str, member_ids: Iterable[int], now: float
    ) -> tuple[dict[bytes, ListEntry], set[bytes]]:
        """(these members' entries in the centre's list, every badge they hold)."""
        return access.member_entries(self.db, centre_id, member_ids, now)

    def list_state(self, centre_id: str) -> CentreListState | None:
        """The centre's list as last published; None before its first snapshot."""
        return access.list_state(self.db, centre_id)

    def list_state_centres(self) -> list[str]:
        return access.list_state_centres(self.db)

    def save_list_state(self, state: CentreListState, *, snapshot: bool) -> None:
        """Record a centre's new list version (``snapshot``: a new snapshot, not a delta)."""
        now = time.time()
        self.write(lambda db: access.save_list_state(db, state, snapshot=snapshot, now=now))

    def import_members(self, rows: Iterable[dict[str, Any]]) -> int:
        """Bulk-insert members (member fields, plus an optional ``badge_hash`` and ``label``)
        in one transaction; return how many. Lists follow once ``access_changed`` is called."""
        now = time.time()
        items = list(rows)
        return self.write(lambda db: access.import_members(db, items, now))

    def member_by_badge_hash(self, badge_hash: str) -> dict:
        """The member holding this card, with their badges."""
        return self.member(access.member_id_by_badge_hash(self.db, badge_hash))

    # -- events -----------------------------------------------------------------------------

    def ingest(self, device_id: str, events: list[Event], received_at: float) -> Future[Any]:
        """Insert a unit's events idempotently and fold them into occupancy, in one commit.

        Returns at once; the Future resolves to an IngestResult after the commit (the MQTT
        thread must not wait for the disk).
        """
        future = self._writer.submit(
            lambda db: self._ingesting(
                events_sql.ingest(db, device_id, events, received_at, **self._ingest_rules)
            ),
            keys=self._lock_keys([(device_id, events, received_at)]),
        )
        future.add_done_callback(self._notify_if_new)
        return future

    @property
    def _ingest_rules(self) -> dict[str, float]:
        """What ingest decides with: late (historical) and future (suspect) events, stays."""
        return {
            "late_event_s": self.late_event_s,
            "future_margin_s": self.future_margin_s,
            "max_stay_s": self.max_stay_s,
        }

    def ingest_many(self, items: list[tuple[str, list[Event], float]]) -> Future[Any]:
        """``ingest`` for several units' ``(device_id, events, received_at)`` at once, in
        one write (what they share is read once). The Future resolves to one IngestResult,
        or the exception that kept that unit's events out, per item, in order."""
        future = self._writer.submit(
            lambda db: self._ingesting(events_sql.ingest_many(db, items, **self._ingest_rules)),
            keys=self._lock_keys(items),
        )
        future.add_done_callback(self._notify_if_any_new)
        return future

    def _lock_keys(self, items: list[tuple[str, list[Event], float]]) -> frozenset[str] | None:
        """What an ingest locks where several processes write (PostgreSQL); SQLite's one
        writer locks nothing, so nothing is worked out for it."""
        return None if self.engine == "sqlite" else events_sql.lock_keys(items)

    def _ingesting(self, result: T) -> T:
        """Writer thread, within an ingest's transaction: what it leaves to recount is asked
        for before its caller hears of the commit (a report read next settles it)."""
        for chore in self._recounts:
            chore.request()
        return result

    def _notify_if_new(self, future: Future[IngestResult]) -> None:
        if future.exception() is None and future.result().new:
            self._notify()

    def _notify_if_any_new(self, future: Future[list[Any]]) -> None:
        if future.exception() is None and any(
            isinstance(r, IngestResult) and r.new for r in future.result()
        ):
            self._notify()

    def settle(self) -> int:
        """Do now the recounts ingest left pending (``visits_sql.settle``), as every
        report, export and erasure does first; how many were done."""
        # Read from the database, not this process's requests: another worker's ingest
        # (PostgreSQL) leaves recounts too, and a chore's run not committed yet is not done.
        if not visits_sql.pending(self.db):
            return 0
        return self.write(visits_sql.settle)

    def events(
        self,
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
        """(total matching, one page of events newest first); ``centre_ids``: only events
        of these centres; ``after``: the (ts, id) the page starts below (keyset paging);
        ``count_limit``: count no further than one past it; the other filters: see
        ``events_sql.page``."""
        return events_sql.page(
            self.db,
            centre_ids=centre_ids,
            centre_id=centre_id,
            since=since,
            until=until,
            kind=kind,
            limit=limit,
            offset=offset,
            door=door,
            member_id=member_id,
            member_name=member_name,
            granted=granted,
            reason=reason,
            after=after,
            count_limit=count_limit,
        )

    def event_count(self) -> int:
        return events_sql.count(self.db)

    # -- commands ---------------------------------------------------------------------------

    def create_command(self, command: Command) -> dict:
        """Store a command before it is sent, so that its answer always has a row."""
        self.write(lambda db: commands.insert(db, command))
        return self.command(command.command_id)

    def record_command_result(
        self, device_id: str, result: CommandResult, answered_at: float
    ) -> Future[bool]:
        """Store a unit's answer; the Future is False when no such command was sent to it."""
        return self._writer.submit(
            lambda db: commands.record_result(db, device_id, result, answered_at)
        )

    def command(self, command_id: str) -> dict:
        return commands.get(self.db, command_id)

    # -- occupancy --------------------------------------------------------------------------

    def occupancy(self, now: float) -> list[dict]:
        """People present and room states per centre; rooms of a silent unit are unknown."""
        return occupancy.current(self.db, now, self.max_stay_s)

    # -- operators, sessions, API tokens ----------------------------------------------------

    def create_operator(
        self,
        *,
        login: str,
        name: str,
        role: str,
        centres: list[str] | None,
        password_hash: str,
        now: float,
    ) -> Operator:
        operator_id = self.write(
            lambda db: operators_sql.insert(
                db,
                login=login,
                name=name,
                role=role,
                centres=centres,
                password_hash=password_hash,
                now=now,
            )
        )
        return self.operator(operator_id)

    def operator(self, operator_id: int) -> Operator:
        return operators_sql.to_operator(operators_sql.by_id(self.db, operator_id))

    def operator_by_login(self, login: str) -> Operator:
        return operators_sql.to_operator(operators_sql.by_login(self.db, login))

    def operator_password_hash(self, login: str) -> tuple[Operator, str]:
        """(the operator, their Argon2 hash): for checking a password, nothing else."""
        row = operators_sql.by_login(self.db, login)
        return operators_sql.to_operator(row), row["password_hash"]

    def operators(self) -> list[Operator]:
        return [operators_sql.to_operator(r) for r in operators_sql.list_all(self.db)]

    def update_operator(self, operator_id: int, fields: dict[str, Any], now: float) -> Operator:
        """Change an operator's fields (``password_hash``, ``disabled``, …)."""
        self.operator(operator_id)
        self.write(lambda db: operators_sql.update(db, operator_id, fields, now))
        return self.operator(operator_id)

    def create_session(
        self, token_hash: str, operator_id: int, csrf_hash: str, address: str | None, now: float
    ) -> None:
        self.write(
            lambda db: operators_sql.insert_session(
                db, token_hash, operator_id, csrf_hash, address, now
            )
        )

    def session(self, token_hash: str) -> dict | None:
        return operators_sql.session(self.db, token_hash)

    def touch_session(self, token_hash: str, now: float) -> None:
        self.write(lambda db: operators_sql.touch_session(db, token_hash, now))

    def end_session(self, token_hash: str) -> None:
        self.write(lambda db: operators_sql.delete_session(db, token_hash))

    def end_sessions(self, operator_id: int, keep: str | None = None) -> None:
        """End every session of an operator but ``keep`` (a session's token hash)."""
        self.write(lambda db: operators_sql.delete_sessions(db, operator_id, keep))

    def end_expired_sessions(self, idle_before: float, created_before: float) -> None:
        self.write(
            lambda db: operators_sql.delete_expired_sessions(db, idle_before, created_before)
        )

    def create_token(
        self, operator_id: int, name: str, token_hash: str, expires_at: float, now: float
    ) -> dict:
        token_id = self.write(
            lambda db: operators_sql.insert_token(
                db, operator_id, name, token_hash, expires_at, now
            )
        )
        return self.token(token_id)

    def token(self, token_id: int) -> dict:
        """An API token's record (never its hash)."""
        return operators_sql.token(self.db, token_id)

    def token_by_hash(self, token_hash: str) -> dict | None:
        return operators_sql.token_by_hash(self.db, token_hash)

    def tokens(self, operator_id: int) -> list[dict]:
        return operators_sql.tokens_of(self.db, operator_id)

    def revoke_token(self, token_id: int, now: float) -> dict:
        self.token(token_id)
        self.write(lambda db: operators_sql.revoke_token(db, token_id, now))
        return self.token(token_id)

    # -- audit ------------------------------------------------------------------------------

    def audit(self, event: AuditEvent) -> int:
        """Append an entry to the audit log; the log is never updated nor pruned."""
        return self.write(lambda db: audit_sql.append(db, event))

    def audit_entries(
        self,
        *,
        actor: str | None = None,
        action: str | None = None,
        centre_id: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> tuple[int, list[dict]]:
        """(total matching, one page of entries newest first)."""
        return audit_sql.page(
            self.db,
            actor=actor,
            action=action,
            centre_id=centre_id,
            since=since,
            until=until,
            limit=limit,
            offset=offset,
        )

    def audit_times(
        self,
        action: str,
        *,
        target_id: str | None = None,
        address: str | None = None,
        since: float,
    ) -> list[float]:
        """When ``action`` was logged since ``since`` for one account or one address."""
        return audit_sql.times(self.db, action, target_id=target_id, address=address, since=since)

    # -- fleet and alarms -------------------------------------------------------------------

    def fleet(
        self,
        *,
        centre_id: str | None = None,
        centre_ids: Iterable[str] | None = None,
        device_id: str | None = None,
    ) -> list[tuple[dict, int | None, list[str]]]:
        """Every unit (``centre_ids``: of these centres only) with its centre's published
        list version and its open alarm kinds."""
        return fleet_sql.units(
            self.db, centre_id=centre_id, centre_ids=centre_ids, device_id=device_id
        )

    def units_by_state(self) -> dict[str, int]:
        return fleet_sql.count_by_state(self.db)

    def alarms(
        self,
        *,
        view: str = "active",
        centre_id: str | None = None,
        centre_ids: Iterable[str] | None = None,
        kind: str | None = None,
        device_id: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> tuple[int, list[dict]]:
        """(total matching, one page of alarms newest first); ``view`` is one of
        ``server.domain.alarms.VIEWS``."""
        return alarms_sql.page(
            self.db,
            view=view,
            centre_id=centre_id,
            centre_ids=centre_ids,
            kind=kind,
            device_id=device_id,
            limit=limit,
            offset=offset,
        )

    def alarm(self, alarm_id: int) -> dict:
        return alarms_sql.get(self.db, alarm_id)

    def acknowledge_alarm(self, alarm_id: int, by: str, now: float) -> dict:
        """Conflict when it was acknowledged already."""
        self.write(lambda db: alarms_sql.acknowledge(db, alarm_id, by, now))
        return self.alarm(alarm_id)

    def open_offline_alarms(self, now: float, *, silent: bool = True) -> int:
        """Open ``unit_offline`` for units offline past the threshold, and (``silent``)
        ``unit_silent`` for online units whose heartbeat stopped; how many opened."""
        t = self.alarm_thresholds
        opened = self.write(
            lambda db: (
                alarms_sql.open_offline(db, t, now)
                + (alarms_sql.open_silent(db, t, now) if silent else 0)
            )
        )
        if opened:
            self._notify()
        return opened

    def open_alarm_counts(self) -> dict[str, int]:
        return alarms_sql.open_counts(self.db)

    # -- privacy: retention, a member's export and erasure ----------------------------------

    def purge(
        self,
        *,
        event_days: int,
        visit_days: int,
        now: float,
        batch: int = privacy_sql.PURGE_BATCH,
    ) -> dict[str, int]:
        """Apply the retention, oldest first, ``batch`` rows per write: events dated before
        the last ``event_days`` whole local days of their centre are added to the daily
        counts, then deleted; other tables of ``privacy_sql.MEMBER_TABLES`` lose their rows
        past their retention. Returns the rows removed per table (tables the database has)
        and ``days_counted``, the days newly added to the daily counts."""
        self.settle()
        zones = privacy_sql.centre_zones(self.db)
        default = privacy_rules.zone(None)
        removed = {"events": 0, "days_counted": 0}
        for centre_id in [*sorted(zones), None]:
            tz = zones.get(centre_id, default) if centre_id else default
            before = privacy_rules.boundary(now, event_days, tz)
            while True:
                gone, days = self.write(
                    partial(
                        privacy_sql.fold_events,
                        centre_id=centre_id,
                        tz=tz,
                        before=before,
                        limit=batch,
                        now=now,
                    )
                )
                removed["events"] += gone
                removed["days_counted"] += days
                if gone < batch:
                    break
        for table in privacy_sql.MEMBER_TABLES:
            if table.retention is None or table.table == "events":
                continue
            if not privacy_sql.table_exists(self.db, table.table):
                continue
            days = event_days if table.retention == "events" else visit_days
            before = privacy_rules.boundary(now, days, default)
            removed[table.table] = 0
            while True:
                gone = self.write(
                    partial(privacy_sql.purge_rows, table=table, before=before, limit=batch)
                )
                removed[table.table] += gone
                if gone < batch:
                    break
        if removed["events"]:
            self._notify()
        return removed

    def daily_counts(
        self,
        *,
        centre_ids: Iterable[str] | None = None,
        since: str | None = None,
        until: str | None = None,
    ) -> list[dict]:
        """Entries granted, refused and unique members per centre and local day, for the
        days whose raw events the retention removed."""
        return privacy_sql.daily_counts(self.db, centre_ids=centre_ids, since=since, until=until)

    def member_export(self, member_id: int) -> dict[str, Any]:
        """Everything stored about a member (profile, badges, plans, credit days, presence,
        events, unknown cards, visits when stored, audit entries about them)."""
        self.settle()
        return privacy_sql.export(self.db, member_id)

    def erase_member(self, member_id: int, *, now: float, forget_lists: bool) -> dict[str, int]:
        """Erase a member (``privacy_sql.erase``); returns the rows removed or anonymised
        per table. ``forget_lists``: drop the stored lists that name their cards (when no
        running list publisher sends new snapshots)."""
        self.settle()
        member = self.member(member_id)
        event_ids, scanned_to = privacy_sql.member_event_ids(self.db, member_id)
        zones = privacy_sql.centre_zones(self.db)
        removed = self.write(
            lambda db: privacy_sql.erase(
                db,
                member_id,
                event_ids=event_ids,
                scanned_to=scanned_to,
                zones=zones,
                now=now,
                list_centres=member["centres"],
                forget_lists=forget_lists,
            )
        )
        if self.engine == "sqlite":
            privacy_sql.checkpoint(self.path)  # the write-ahead log forgets them too
        self._notify()
        return removed

    # -- visits and reports -----------------------------------------------------------------

    def visits(
        self,
        *,
        now: float,
        centre_id: str | None = None,
        member_id: int | None = None,
        since: float | None = None,
        until: float | None = None,
        open_only: bool = False,
        limit: int = 100,
        offset: int = 0,
        centre_ids: Iterable[str] | None = None,
    ) -> tuple[int, list[dict]]:
        """(total matching, one page of visits newest first) as read at ``now``: an open
        visit past its limit is shown closed there (nothing is written)."""
        return visits_sql.page(
            self.db,
            centre_ids=centre_ids,
            centre_id=centre_id,
            member_id=member_id,
            since=since,
            until=until,
            open_only=open_only,
            limit=limit,
            offset=offset,
            now=now,
        )

    def rebuild_visits(self) -> int:
        """Build every visit again from the stored events; return how many. One long
        transaction on the writer (minutes for millions of events): waited for without
        the usual write timeout."""
        job = self._writer.submit(lambda db: visits_sql.rebuild_all(db, max_stay_s=self.max_stay_s))
        return job.result()

    def invoicing_report(
        self, period: Period, *, now: float, centre_ids: Iterable[str] | None = None
    ) -> dict:
        self.settle()
        return reports_sql.invoicing(self.db, period, now=now, centre_ids=centre_ids)

    def departement_report(
        self, period: Period, *, now: float, centre_ids: Iterable[str] | None = None
    ) -> dict:
        self.settle()
        names = {code: c.name for code, c in communes().items()}
        return reports_sql.departement(
            self.db, period, now=now, centre_ids=centre_ids, commune_names=names
        )

    def impact_report(
        self, period: Period, *, kg_per_km: float, centre_ids: Iterable[str] | None = None
    ) -> dict:
        self.settle()
        return reports_sql.impact(
            self.db, period, centre_ids=centre_ids, communes=communes(), kg_per_km=kg_per_km
        )
