"""The SQLite schema, as numbered migrations applied once each when a store opens.

A new table or column is a new ``mNNN_`` function below; an applied one is never edited,
since existing databases have already run it.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

from server.store.errors import SchemaTooNew
from server.store.sqlite.privacy import move_personal_audit_values


class CheckedMigrations(Migrations):
    """Refuses a database that a newer version of the server has migrated: code that does
    not know its schema would read and write it wrong (see docs/deploy.md, "Upgrades")."""

    @property
    def known(self) -> set[str]:
        return {m.name for m in self._migrations}

    def unknown(self, db: Database) -> list[str]:
        """Applied migrations this code does not have, oldest first."""
        return [m.name for m in self.applied(db) if m.name not in self.known]

    def check(self, db: Database, what: object = "the database") -> None:
        """Raise ``SchemaTooNew`` when a newer server has migrated ``db``."""
        newer = self.unknown(db)
        if newer:
            raise SchemaTooNew(
                f"{what}: its schema is newer than this version of the server (migrations "
                f"{', '.join(newer)}): install that version again, or restore a backup made "
                "before the upgrade"
            )

    def apply(self, db: Database, *, stop_before: str | Iterable[str] | None = None) -> None:
        self.check(db, db.conn.execute("PRAGMA database_list").fetchone()[2] or "the database")
        super().apply(db, stop_before=stop_before)


migrations = CheckedMigrations("telecentre")


@migrations()
def m001_initial(db: Database) -> None:
    db["centres"].create(
        {"id": str, "name": str, "commune": str, "created_at": float}, pk="id", not_null={"name"}
    )
    db["devices"].create(
        {
            "device_id": str,
            "centre_id": str,
            "state": str,
            "first_seen": float,
            "last_seen": float,
            "software_version": str,
            "config_hash": str,
            "access_list_version": int,
            "clock_synced": int,
            "outbox_pending": int,
            "faults": str,
            "doors": str,
        },
        pk="device_id",
        foreign_keys=[("centre_id", "centres", "id")],
    )
    db["members"].create(
        {
            "id": int,
            "name": str,
            "email": str,
            "active": int,
            "valid_from": float,
            "valid_until": float,
            "centres": str,
            "created_at": float,
        },
        pk="id",
        not_null={"name", "active"},
    )
    db["badges"].create(
        {
            "id": int,
            "member_id": int,
            "badge_hash": str,
            "label": str,
            "enrolled_at": float,
            "revoked_at": float,
        },
        pk="id",
        foreign_keys=[("member_id", "members", "id")],
        not_null={"member_id", "badge_hash"},
    )
    db["badges"].create_index(["badge_hash"], unique=True)
    db["badges"].create_index(["member_id"])
    db["events"].create(
        {
            "id": int,
            "event_id": str,
            "device_id": str,
            "seq": int,
            "centre_id": str,
            "kind": str,
            "ts": float,
            "received_at": float,
            "clock_synced": int,
            "historical": int,
            "door": str,
            "badge_hash": str,
            "granted": int,
            "reason": str,
            "direction": str,
            "member_id": int,
            "room": str,
            "room_state": str,
        },
        pk="id",
        not_null={"event_id", "device_id", "seq", "kind", "ts"},
    )
    db["events"].create_index(["event_id"], unique=True)
    # Idempotence is on event_id (a unit resends the very same event). (device_id, seq) is
    # not unique: a unit whose outbox file was replaced starts again at seq 1, and its new
    # events must still be kept.
    db["events"].create_index(["device_id", "seq"])
    db["events"].create_index(["centre_id", "ts"])
    db["events"].create_index(["ts"])
    db["unknown_cards"].create(
        {
            "badge_hash": str,
            "first_seen": float,
            "last_seen": float,
            "count": int,
            "device_id": str,
            "door": str,
            "centre_id": str,
        },
        pk="badge_hash",
    )
    db["presence"].create(
        {"centre_id": str, "member_id": int, "inside": int, "since": float, "last_ts": float},
        pk=("centre_id", "member_id"),
    )
    db["rooms"].create(
        {
            "centre_id": str,
            "room_id": str,
            "device_id": str,
            "name": str,
            "state": str,
            "since": float,
            "last_ts": float,
        },
        pk=("centre_id", "room_id"),
    )
    db["access_lists"].create(
        {"device_id": str, "version": int, "issued_at": float, "grants": int},
        pk="device_id",
    )


@migrations()
def m010_event_time_suspect(db: Database) -> None:
    # 1: the event's time cannot be trusted (clock not synchronised, or dated too far
    # ahead of its arrival): shown in the events, never moves presence or room state.
    db["events"].add_column("time_suspect", int, not_null_default=0)


@migrations()
def m011_commands(db: Database) -> None:
    db["commands"].create(
        {
            "command_id": str,
            "device_id": str,
            "door": str,
            "action": str,
            "issued_at": float,
            "expires_at": float,
            "requested_by": str,
            "reason": str,
            "result": str,  # executed / refused; NULL while no answer came
            "result_reason": str,
            "answered_at": float,
        },
        pk="command_id",
        not_null={"device_id", "door", "action", "issued_at", "expires_at"},
    )
    db["commands"].create_index(["device_id", "issued_at"])


@migrations()
def m020_centre_lists(db: Database) -> None:
    # Access lists v2: one list per centre. What was published, so a restart republishes
    # the same versions and versions never go back: the snapshot's entries (MessagePack of
    # ListEntry arrays, in badge order) and the cumulative delta over it.
    db["list_state"].create(
        {
            "centre_id": str,
            "snapshot_version": int,
            "snapshot_issued_at": float,
            "segments": int,
            "entries": int,
            "snapshot": bytes,
            "version": int,
            "issued_at": float,
            "delta": bytes,
            "updated_at": float,
        },
        pk="centre_id",
        not_null={"snapshot_version", "snapshot_issued_at", "snapshot", "version", "issued_at"},
    )
    # v1 kept one list version per unit; lists are per centre now.
    db["access_lists"].drop(ignore=True)


@migrations()
def m030_operators(db: Database) -> None:
    # People who log in. Passwords as Argon2 hashes; a manager's centres as a JSON list.
    db["operators"].create(
        {
            "id": int,
            "login": str,
            "name": str,
            "role": str,
            "centres": str,
            "disabled": int,
            "password_hash": str,
            "created_at": float,
            "updated_at": float,
        },
        pk="id",
        not_null={"login", "name", "role", "disabled", "password_hash"},
    )
    db["operators"].create_index(["login"], unique=True)
    # Sessions and API tokens are stored as SHA-256 of the random secret only: a copy of
    # the database does not let anyone in.
    db["sessions"].create(
        {
            "token_hash": str,
            "operator_id": int,
            "csrf_hash": str,
            "created_at": float,
            "last_seen": float,
            "address": str,
        },
        pk="token_hash",
        foreign_keys=[("operator_id", "operators", "id")],
        not_null={"operator_id", "csrf_hash", "created_at", "last_seen"},
    )
    db["sessions"].create_index(["operator_id"])
    db["api_tokens"].create(
        {
            "id": int,
            "operator_id": int,
            "name": str,
            "token_hash": str,
            "created_at": float,
            "expires_at": float,
            "revoked_at": float,
        },
        pk="id",
        foreign_keys=[("operator_id", "operators", "id")],
        not_null={"operator_id", "token_hash", "created_at", "expires_at"},
    )
    db["api_tokens"].create_index(["token_hash"], unique=True)


@migrations()
def m031_audit(db: Database) -> None:
    db["audit"].create(
        {
            "id": int,
            "at": float,
            "actor": str,
            "action": str,
            "target_kind": str,
            "target_id": str,
            "centre_id": str,
            "address": str,
            "before": str,
            "after": str,
        },
        pk="id",
        not_null={"at", "actor", "action", "target_kind"},
    )
    db["audit"].create_index(["at"])
    db["audit"].create_index(["action", "target_id", "at"])  # login throttling by account
    db["audit"].create_index(["action", "address", "at"])  # and by address
    # Append-only, enforced by the database itself and not only by the code above it.
    for verb in ("UPDATE", "DELETE"):
        db.execute(
            f"CREATE TRIGGER audit_no_{verb.lower()} BEFORE {verb} ON audit"
            " BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END"
        )


@migrations()
def m040_device_credentials(db: Database) -> None:
    # Each unit's broker account: only the hash mosquitto's password file needs (PBKDF2,
    # mosquitto_passwd's $7$ format); the password itself is shown once by `device add`.
    db["device_credentials"].create(
        {"device_id": str, "password_hash": str, "created_at": float},
        pk="device_id",
        not_null={"password_hash", "created_at"},
    )


@migrations()
def m050_centres_and_plans(db: Database) -> None:
    # Centres as the network runs them: where (INSEE commune code, address, coordinates),
    # how many people, in which time zone, and when open. ``hours``: JSON list of 7 lists
    # (Monday first) of [start_minute, end_minute] pairs in local time.
    for column, kind in (
        ("insee", str),
        ("address", str),
        ("lat", float),
        ("lon", float),
        ("capacity", int),
        ("hours", str),
        ("updated_at", float),
    ):
        db["centres"].add_column(column, kind)
    db["centres"].add_column("timezone", str, not_null_default="Europe/Paris")
    # Days a centre is closed on top of its weekly hours and the public holidays
    # (ISO dates, inclusive).
    db["closures"].create(
        {"id": int, "centre_id": str, "start_date": str, "end_date": str, "reason": str},
        pk="id",
        foreign_keys=[("centre_id", "centres", "id")],
        not_null={"centre_id", "start_date", "end_date"},
    )
    db["closures"].create_index(["centre_id", "start_date"])
    # Rooms as the registry knows them (the ``rooms`` table holds their live state).
    db["rooms"].add_column("capacity", int)
    db["rooms"].add_column("bookable", int, not_null_default=0)
    db["doors"].create(
        {"centre_id": str, "door_id": str, "device_id": str, "name": str},
        pk=("centre_id", "door_id"),
        foreign_keys=[("centre_id", "centres", "id")],
    )
    # The plan catalogue. kind: subscription | day_pass | trial. hours: always | opening |
    # window (``window``: JSON list of [weekday 0-6, start_minute, end_minute]). centres:
    # JSON list, NULL for every centre. days: the book's (or trial's) days.
    db["plans"].create(
        {
            "id": int,
            "name": str,
            "kind": str,
            "days": int,
            "duration_days": int,
            "centres": str,
            "hours": str,
            "window": str,
            "price_cents": int,
            "active": int,
            "created_at": float,
        },
        pk="id",
        not_null={"name", "kind", "hours", "active"},
    )
    db["plans"].create_index(["name"], unique=True)
    # The plans a member holds, each a copy of the plan's rules at the time it was given
    # (a later change to the catalogue does not change what was sold).
    db["member_plans"].create(
        {
            "id": int,
            "member_id": int,
            "plan_id": int,
            "kind": str,
            "valid_from": float,
            "valid_until": float,
            "centres": str,
            "hours": str,
            "window": str,
            "days": int,
            "created_at": float,
            "ended_at": float,
        },
        pk="id",
        foreign_keys=[("member_id", "members", "id"), ("plan_id", "plans", "id")],
        not_null={"member_id", "plan_id", "kind", "hours", "created_at"},
    )
    db["member_plans"].create_index(["member_id"])
    # Day credits used: one row per member and local calendar day, whichever centre and
    # however many entries (the primary key makes a second centre the same day free).
    db["credit_days"].create(
        {
            "member_id": int,
            "day": str,
            "member_plan_id": int,
            "centre_id": str,
            "event_id": str,
            "ts": float,
        },
        pk=("member_id", "day"),
    )
    db["credit_days"].create_index(["member_plan_id"])
    # Suspension (with its reason) and the commune a member would otherwise commute to
    # (INSEE code, declared by the member, for the impact report).
    db["members"].add_column("suspended_reason", str)
    db["members"].add_column("suspended_at", float)
    db["members"].add_column("commute_insee", str)


@migrations()
def m051_list_calendar(db: Database) -> None:
    # The centre's calendar sent in the snapshot's head (MessagePack of CentreHours).
    db["list_state"].add_column("calendar", bytes)


@migrations()
def m070_alarms(db: Database) -> None:
    # Alarms open and close by themselves and stay listed until acknowledged. door: the
    # door of a door or reader alarm, NULL for a unit-wide one.
    db["alarms"].create(
        {
            "id": int,
            "kind": str,
            "device_id": str,
            "centre_id": str,
            "door": str,
            "detail": str,
            "opened_at": float,  # server time
            "event_ts": float,  # the unit's time of the event that opened it (door alarms)
            "closed_at": float,  # NULL while open
            "acknowledged_at": float,
            "acknowledged_by": str,
        },
        pk="id",
        not_null={"kind", "device_id", "opened_at"},
    )
    # One open alarm per (unit, kind, door), enforced by the database.
    db.execute(
        "CREATE UNIQUE INDEX alarms_one_open ON alarms (device_id, kind, ifnull(door, ''))"
        " WHERE closed_at IS NULL"
    )
    db["alarms"].create_index(["opened_at"])


@migrations()
def m071_device_health(db: Database) -> None:
    # state_since: when the unit last went online or offline (server time); reported_centre:
    # the centre its config names (Status.centre); outbox_oldest_at: when its oldest
    # unacknowledged event was made, on the server's clock.
    db["devices"].add_column("state_since", float)
    db["devices"].add_column("reported_centre", str)
    db["devices"].add_column("outbox_oldest_at", float)
    db.execute("UPDATE devices SET state_since = last_seen WHERE state IS NOT NULL")


# The keys m080 treats as personal, frozen here: the migration must do the same forever.
M080_PERSONAL_KEYS = frozenset(
    {"name", "email", "label", "badge_hash", "uid", "commute_insee", "suspended_reason"}
)


@migrations()
def m080_privacy(db: Database) -> None:
    # Daily anonymous counts per centre and local day, folded from the raw events before
    # the retention purge deletes them: counts only, never a member.
    db["daily_counts"].create(
        {
            "centre_id": str,
            "day": str,  # local date, ISO
            "granted": int,  # entries granted
            "denied": int,  # access refused
            "unique_members": int,
            "updated_at": float,
        },
        pk=("centre_id", "day"),
        not_null={"centre_id", "day", "granted", "denied", "unique_members"},
    )
    # 1 on the first entry of a day of a member since erased (member_id cleared): that
    # member still counts once in the day's unique members.
    db["events"].add_column("unique_erased", int, not_null_default=0)
    # The purge finds events of untrusted time by arrival; those are few.
    db.execute(
        "CREATE INDEX idx_events_suspect_received ON events (received_at) WHERE time_suspect = 1"
    )
    db["credit_days"].create_index(["ts"])
    # Ids of erased members, and nothing else: a member id is never given again (the audit
    # log names members by id), and an event of an erased member still in a unit's outbox
    # is stored without member or card.
    db["erased_members"].create({"id": int, "erased_at": float}, pk="id", not_null={"erased_at"})
    # Personal values of audit entries about a member (name, e-mail, card label, ...), kept
    # apart so that erasing the member can delete them: the audit row holds "[personal]" in
    # their place and stays append-only. These rows are inserted and deleted, never changed.
    db["audit_personal"].create(
        {"audit_id": int, "member_id": int, "before": str, "after": str},
        pk="audit_id",
        foreign_keys=[("audit_id", "audit", "id")],
        not_null={"member_id"},
    )
    db["audit_personal"].create_index(["member_id"])
    db.execute(
        "CREATE TRIGGER audit_personal_no_update BEFORE UPDATE ON audit_personal"
        " BEGIN SELECT RAISE(ABORT, 'personal audit values are deleted, never changed'); END"
    )
    # Entries written before this migration hold personal values inline: they move out. The
    # one time audit rows are rewritten, with the trigger lifted for this step only.
    db.execute("DROP TRIGGER audit_no_update")
    move_personal_audit_values(db, keys=M080_PERSONAL_KEYS)
    db.execute(
        "CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit"
        " BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END"
    )


@migrations()
def m060_visits(db: Database) -> None:
    # Each member's stays at a centre, built as events arrive (server.domain.visits).
    # end_at: check_out, or limit_at while open; day: local date of the check-in.
    db["visits"].create(
        {
            "id": int,
            "member_id": int,
            "centre_id": str,
            "day": str,
            "check_in": float,
            "check_out": float,
            "stop_reason": str,  # badge_out, closing_time, max_stay; NULL while open
            "limit_at": float,
            "limit_reason": str,
            "end_at": float,
            "in_event_id": str,
            "out_event_id": str,
            "historical": int,
        },
        pk="id",
        not_null={
            "member_id",
            "centre_id",
            "day",
            "check_in",
            "limit_at",
            "limit_reason",
            "end_at",
            "in_event_id",
            "historical",
        },
    )
    db["visits"].create_index(["member_id", "centre_id", "check_in", "in_event_id"], unique=True)
    # Reports read these two covering indexes, never the events.
    db["visits"].create_index(["day", "centre_id", "member_id", "check_in", "end_at"])
    db["visits"].create_index(["centre_id", "day", "member_id", "check_in", "end_at"])
    db.execute("CREATE INDEX idx_visits_open ON visits (limit_at) WHERE check_out IS NULL")
    # A member's passages at a centre, for rebuilding their visits after a late event.
    db.execute(
        "CREATE INDEX idx_events_passages ON events (member_id, centre_id, ts, event_id)"
        " WHERE member_id IS NOT NULL"
    )
    # Each member's first visit at each centre (new members in a period).
    db["first_visits"].create(
        {"member_id": int, "centre_id": str, "day": str},
        pk=("member_id", "centre_id"),
        not_null={"day"},
    )
    db["first_visits"].create_index(["day"])
    # People present per centre and local day: the most at once and a count every 5 minutes
    # from local midnight (288 unsigned 16-bit little-endian counts), from the visits.
    db["occupancy_days"].create(
        {"centre_id": str, "day": str, "peak": int, "samples": bytes},
        pk=("centre_id", "day"),
        not_null={"peak", "samples"},
    )
    # Each member's month at each centre, for the monthly reports: visits, days with a visit
    # there, days whose first visit was there (a day belongs to one centre), seconds present
    # (open visits up to their limit: a report takes off what is still ahead of it).
    db["visit_months"].create(
        {
            "month": str,
            "centre_id": str,
            "member_id": int,
            "visits": int,
            "days": int,
            "first_days": int,
            "seconds": float,
        },
        pk=("month", "centre_id", "member_id"),
        not_null={"visits", "days", "first_days", "seconds"},
    )
    db["visit_months"].create_index(["member_id", "month"])
    from server.store.sqlite import visits

    visits.rebuild_all(db, max_stay_s=visits.DEFAULT_MAX_STAY_S)


@migrations()
def m090_lockdown(db: Database) -> None:
    # Lockdown: members whose badges still open a locked-down unit (ListEntry.exempt), the
    # lockdown a unit reports in its status, and commands for a whole unit (no door).
    db["members"].add_column("lockdown_exempt", int, not_null_default=0)
    db["devices"].add_column("lockdown", int)
    db["commands"].transform(not_null={"door": False})


@migrations()
def m091_unit_health(db: Database) -> None:
    # The unit's last heartbeat (JSON), when it was heard live, and ok / degraded.
    db["devices"].add_column("health", str)
    db["devices"].add_column("health_at", float)
    db["devices"].add_column("condition", str)


@migrations()
def m130_event_paging(db: Database) -> None:
    # /api/events pages newest first by (ts, id) under each filter: the kind alone, the
    # centre and the kind (the centre alone and no filter use (centre_id, ts) and (ts); in
    # SQLite every index ends with the rowid, here ``id``).
    db["events"].create_index(["kind", "ts"], if_not_exists=True)
    db["events"].create_index(["centre_id", "kind", "ts"], if_not_exists=True)


@migrations()
def m131_event_decision_filters(db: Database) -> None:
    # /api/events filtered by a card's decision (refused cards) or by the rule behind it
    # (revoked, unknown_card…): both rare, so without an index a page walks every event.
    # The member (idx_events_passages) and the door (few values: the time index) need none.
    db["events"].create_index(["granted", "ts"], if_not_exists=True)
    db["events"].create_index(["reason", "ts"], if_not_exists=True)


@migrations()
def m140_pending_recounts(db: Database) -> None:
    # What ingest leaves to recount from the visits (a member's first visit at a centre,
    # a member's month, a centre's day), settled together at most every second and before
    # any report reads them: a busy centre's day is recounted once a second, not once per
    # write. ``a`` and ``b``: (member id, centre), (member id, month), (centre, day).
    db["pending_recounts"].create(
        {"kind": str, "a": str, "b": str}, pk=("kind", "a", "b"), not_null={"kind", "a", "b"}
    )


@migrations()
def m150_event_door_filter(db: Database) -> None:
    # /api/events of one centre's door: the centre's events are scattered among every
    # centre's, so walking (centre_id, ts) and reading each row for its door read a table
    # page per event; with the door in the index, the capped count reads no row at all.
    # A door across every centre still walks the time index (most events name a door).
    db["events"].create_index(["centre_id", "door", "ts"], if_not_exists=True)


@migrations()
def m160_server_accounts(db: Database) -> None:
    # The broker accounts of the server workers beyond the first (a share group: each
    # worker its own account, ``telecentre-server worker add``), kept like the units' so
    # that every regeneration of the broker's files keeps them: only the mosquitto-format
    # hash; the password is written once, to the worker's password file.
    db["server_accounts"].create(
        {"username": str, "password_hash": str, "created_at": float},
        pk="username",
        not_null={"password_hash", "created_at"},
    )


@migrations()
def m170_visits_by_member_day(db: Database) -> None:
    # A member's visits of one day, at any centre: ingest counts a new visit into the
    # member's month from the visits of its day (which centre began the day).
    db["visits"].create_index(["member_id", "day", "centre_id"], if_not_exists=True)
