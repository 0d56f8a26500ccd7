"""The SQLite schema, as numbered migrations applied once each when a store opens.

A new table or column is a new ``mNNN_`` function below; an applied one is never edited,
since existing databases have already run it.
"""

from __future__ import annotations

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

migrations = Migrations("telecentre")


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
def m090_lockdown(db: Database) -> None:
    # Lockdown: members whose badges still open a locked-down unit (ListEntry.exempt), the
    # lockdown a unit reports in its status, and commands for a whole unit (no door).
    db["members"].add_column("lockdown_exempt", int, not_null_default=0)
    db["devices"].add_column("lockdown", int)
    db["commands"].transform(not_null={"door": False})
