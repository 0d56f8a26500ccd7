"""The server's one storage interface: centres, units, members, badges, events, occupancy.

Writes go through the single writer thread (``server.db.Writer``) and return after the
commit; reads use a connection per calling thread. Every SQL statement of the server lives
here or in ``server.db``, so moving to another engine later touches these two files.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from protocol.messages import BadgeGrant, Event, Status
from server.db import Writer, connect, migrations

WRITE_TIMEOUT_S = 30

log = logging.getLogger(__name__)


class NotFound(LookupError):
    """The named record does not exist."""


class Conflict(ValueError):
    """The write contradicts what is stored (a badge enrolled twice, say)."""


@dataclass(frozen=True)
class IngestResult:
    """What one committed batch of a unit's events changed."""

    device_id: str
    seqs: list[int]
    new: int
    centre_id: str | None


class Store:
    def __init__(self, path: Path | str, *, max_stay_s: float = 14 * 3600) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_stay_s = max_stay_s
        db = connect(self.path)
        migrations.apply(db)
        db.close()
        self._local = threading.local()
        self._writer = Writer(self.path)
        self._writer.start()
        self._changes = threading.Lock()
        self.change_counter = 0  # bumped after each commit that changes what the page shows

    def close(self) -> None:
        self._writer.stop()

    @property
    def db(self) -> Database:
        """This thread's read connection."""
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = connect(self.path)
        return db

    def write(self, fn: Any) -> Any:
        """Run ``fn(db)`` on the writer thread; return its result after the commit."""
        return self._writer.submit(fn).result(timeout=WRITE_TIMEOUT_S)

    def _notify(self) -> None:
        with self._changes:
            self.change_counter += 1

    @property
    def writer_stats(self) -> dict[str, int]:
        return {"batches": self._writer.batches, "items": self._writer.items}

    # -- centres and units ------------------------------------------------------------------

    def create_centre(self, centre_id: str, name: str, commune: str | None = None) -> dict:
        def fn(db: Database) -> None:
            if db["centres"].count_where("id = ?", [centre_id]):
                raise Conflict(f"centre {centre_id!r} already exists")
            db["centres"].insert(
                {"id": centre_id, "name": name, "commune": commune, "created_at": time.time()}
            )

        self.write(fn)
        return self.centre(centre_id)

    def centre(self, centre_id: str) -> dict:
        rows = list(self.db["centres"].rows_where("id = ?", [centre_id]))
        if not rows:
            raise NotFound(f"no centre {centre_id!r}")
        return rows[0]

    def centres(self) -> list[dict]:
        return list(self.db["centres"].rows_where(order_by="name"))

    def assign_device(self, device_id: str, centre_id: str) -> dict:
        self.centre(centre_id)

        def fn(db: Database) -> None:
            db["devices"].upsert({"device_id": device_id, "centre_id": centre_id}, pk="device_id")

        self.write(fn)
        return self.device(device_id)

    def device(self, device_id: str) -> dict:
        rows = list(self.db["devices"].rows_where("device_id = ?", [device_id]))
        if not rows:
            raise NotFound(f"no unit {device_id!r}")
        return _device_row(rows[0])

    def devices(self, centre_id: str | None = None) -> list[dict]:
        where, args = ("centre_id = ?", [centre_id]) if centre_id else (None, [])
        return [
            _device_row(r) for r in self.db["devices"].rows_where(where, args, order_by="device_id")
        ]

    def record_status(self, status: Status, received_at: float) -> Future[None]:
        """Store a unit's birth or last will; rooms it announces appear on the dashboard."""

        def fn(db: Database) -> None:
            row: dict[str, Any] = {
                "device_id": status.device_id,
                "state": status.state,
                "last_seen": received_at,
            }
            existing = list(db["devices"].rows_where("device_id = ?", [status.device_id]))
            if not existing:
                row["first_seen"] = received_at
            if status.state == "online":
                row.update(
                    software_version=status.software_version,
                    config_hash=status.config_hash,
                    access_list_version=status.access_list_version,
                    clock_synced=status.clock_synced,
                    outbox_pending=status.outbox_pending,
                    faults=json.dumps(status.faults or []),
                    doors=json.dumps(status.doors or []),
                )
            db["devices"].upsert(row, pk="device_id")
            centre_id = existing[0]["centre_id"] if existing else None
            if centre_id and status.rooms:
                for room in status.rooms:
                    db.execute(
                        "INSERT INTO rooms (centre_id, room_id, device_id, name)"
                        " VALUES (?, ?, ?, ?)"
                        " ON CONFLICT (centre_id, room_id) DO UPDATE SET"
                        " name = excluded.name, device_id = excluded.device_id",
                        [centre_id, room.id, status.device_id, room.name],
                    )

        future = self._writer.submit(fn)
        future.add_done_callback(lambda _: self._notify())
        return future

    # -- members and badges -----------------------------------------------------------------

    def create_member(self, fields: dict[str, Any]) -> dict:
        row = _member_fields(fields)
        row.setdefault("active", 1)
        row["created_at"] = time.time()
        member_id = self.write(lambda db: db["members"].insert(row).last_pk)
        return self.member(member_id)

    def update_member(self, member_id: int, fields: dict[str, Any]) -> dict:
        self.member(member_id)
        row = _member_fields(fields)
        if row:
            self.write(lambda db: db["members"].update(member_id, row))
        return self.member(member_id)

    def member(self, member_id: int) -> dict:
        rows = list(self.db["members"].rows_where("id = ?", [member_id]))
        if not rows:
            raise NotFound(f"no member {member_id}")
        return _member_row(rows[0], self.badges(member_id))

    def members(self, *, limit: int = 100, offset: int = 0) -> tuple[int, list[dict]]:
        total = self.db["members"].count
        rows = self.db["members"].rows_where(order_by="name", limit=limit, offset=offset)
        return total, [_member_row(r) for r in rows]

    def enrol_badge(self, member_id: int, badge_hash: str, label: str | None = None) -> dict:
        self.member(member_id)

        def fn(db: Database) -> int:
            clash = list(db["badges"].rows_where("badge_hash = ?", [badge_hash]))
            if clash and clash[0]["revoked_at"] is None:
                raise Conflict(f"this card is already enrolled (badge {clash[0]['id']})")
            if clash:  # a revoked card handed out again
                db["badges"].delete(clash[0]["id"])
            db.execute("DELETE FROM unknown_cards WHERE badge_hash = ?", [badge_hash])
            return (
                db["badges"]
                .insert(
                    {
                        "member_id": member_id,
                        "badge_hash": badge_hash,
                        "label": label,
                        "enrolled_at": time.time(),
                        "revoked_at": None,
                    }
                )
                .last_pk
            )

        return self.badge(self.write(fn))

    def revoke_badge(self, badge_id: int) -> dict:
        self.badge(badge_id)
        self.write(
            lambda db: db.execute(
                "UPDATE badges SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                [time.time(), badge_id],
            )
        )
        return self.badge(badge_id)

    def badge(self, badge_id: int) -> dict:
        rows = list(self.db["badges"].rows_where("id = ?", [badge_id]))
        if not rows:
            raise NotFound(f"no badge {badge_id}")
        return rows[0]

    def badges(self, member_id: int) -> list[dict]:
        return list(self.db["badges"].rows_where("member_id = ?", [member_id], order_by="id"))

    def unknown_cards(self, centre_id: str | None = None) -> list[dict]:
        where, args = ("centre_id = ?", [centre_id]) if centre_id else (None, [])
        return list(self.db["unknown_cards"].rows_where(where, args, order_by="last_seen desc"))

    # -- access -----------------------------------------------------------------------------

    def grants_for_centre(self, centre_id: str | None, now: float) -> list[BadgeGrant]:
        """Every badge that may open a door of ``centre_id`` now or later."""
        if centre_id is None:
            return []
        rows = self.db.query(
            "SELECT b.badge_hash, m.id AS member_id, m.valid_from, m.valid_until, m.centres"
            " FROM badges b JOIN members m ON m.id = b.member_id"
            " WHERE b.revoked_at IS NULL AND m.active = 1"
            " AND (m.valid_until IS NULL OR m.valid_until > ?) ORDER BY b.badge_hash",
            [now],
        )
        return [
            BadgeGrant(r["badge_hash"], r["member_id"], r["valid_from"], r["valid_until"])
            for r in rows
            if r["centres"] is None or centre_id in json.loads(r["centres"])
        ]

    def lookup_grant(
        self, badge_hash: str, centre_id: str | None, now: float
    ) -> tuple[BadgeGrant | None, str]:
        """The online answer for a card the unit's list did not know: (grant, reason)."""
        rows = list(
            self.db.query(
                "SELECT b.revoked_at, m.id, m.active, m.valid_from, m.valid_until, m.centres"
                " FROM badges b JOIN members m ON m.id = b.member_id WHERE b.badge_hash = ?",
                [badge_hash],
            )
        )
        if not rows:
            return None, "unknown_card"
        r = rows[0]
        if r["revoked_at"] is not None or not r["active"]:
            return None, "revoked"
        if centre_id is None or (r["centres"] and centre_id not in json.loads(r["centres"])):
            return None, "wrong_centre"
        if r["valid_from"] is not None and now < r["valid_from"]:
            return None, "not_yet_valid"
        if r["valid_until"] is not None and now >= r["valid_until"]:
            return None, "expired"
        return BadgeGrant(badge_hash, r["id"], r["valid_from"], r["valid_until"]), "granted"

    def next_list_version(self, device_id: str, grants: int, now: float) -> int:
        """A version above every one the unit saw, even after the database was rebuilt."""

        def fn(db: Database) -> int:
            rows = list(db["access_lists"].rows_where("device_id = ?", [device_id]))
            version = max(rows[0]["version"] + 1 if rows else 1, int(now * 1000))
            db["access_lists"].upsert(
                {"device_id": device_id, "version": version, "issued_at": now, "grants": grants},
                pk="device_id",
            )
            return version

        return self.write(fn)

    # -- events -----------------------------------------------------------------------------

    def ingest(self, device_id: str, events: list[Event], received_at: float) -> Future[Any]:
        """Insert a unit's events idempotently and fold them into occupancy, in one commit.

        Returns at once; the Future resolves to an IngestResult after the commit (the MQTT
        thread must not wait for the disk).
        """
        future = self._writer.submit(lambda db: _ingest(db, device_id, events, received_at))
        future.add_done_callback(self._notify_if_new)
        return future

    def _notify_if_new(self, future: Future[Any]) -> None:
        if future.exception() is None and future.result().new:
            self._notify()

    def events(
        self,
        *,
        centre_id: str | None = None,
        since: float | None = None,
        until: float | None = None,
        kind: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> tuple[int, list[dict]]:
        clauses, args = [], []
        for clause, value in (
            ("centre_id = ?", centre_id),
            ("ts >= ?", since),
            ("ts < ?", until),
            ("kind = ?", kind),
        ):
            if value is not None:
                clauses.append(clause)
                args.append(value)
        where = " AND ".join(clauses) or "1"
        total = self.db["events"].count_where(where, args)
        rows = self.db.query(
            "SELECT e.*, m.name AS member_name FROM events e"
            " LEFT JOIN members m ON m.id = e.member_id"
            f" WHERE {where} ORDER BY e.ts DESC, e.id DESC LIMIT ? OFFSET ?",
            [*args, limit, offset],
        )
        return total, [_event_row(r) for r in rows]

    def event_count(self) -> int:
        return self.db["events"].count

    # -- occupancy --------------------------------------------------------------------------

    def occupancy(self, now: float) -> list[dict]:
        """People present and room states per centre; rooms of a silent unit are unknown."""
        db = self.db
        people: dict[str, list[dict]] = {}
        for r in db.query(
            "SELECT p.centre_id, p.member_id, p.since, m.name FROM presence p"
            " LEFT JOIN members m ON m.id = p.member_id"
            " WHERE p.inside = 1 AND p.since > ? ORDER BY p.since",
            [now - self.max_stay_s],
        ):
            people.setdefault(r["centre_id"], []).append(
                {"member_id": r["member_id"], "name": r["name"], "since": r["since"]}
            )
        rooms: dict[str, list[dict]] = {}
        for r in db.query(
            "SELECT r.*, d.state AS unit_state FROM rooms r"
            " LEFT JOIN devices d ON d.device_id = r.device_id ORDER BY r.name"
        ):
            state = (r["state"] or "unknown") if r["unit_state"] == "online" else "unknown"
            rooms.setdefault(r["centre_id"], []).append(
                {"room_id": r["room_id"], "name": r["name"], "state": state, "since": r["since"]}
            )
        units: dict[str, list[dict]] = {}
        for r in db.query("SELECT device_id, centre_id, state, last_seen FROM devices"):
            units.setdefault(r["centre_id"], []).append(
                {
                    "device_id": r["device_id"],
                    "state": r["state"] or "unknown",
                    "last_seen": r["last_seen"],
                }
            )
        return [
            {
                "centre_id": c["id"],
                "name": c["name"],
                "present": len(people.get(c["id"], [])),
                "people": people.get(c["id"], []),
                "rooms": rooms.get(c["id"], []),
                "units": units.get(c["id"], []),
            }
            for c in self.centres()
        ]


# -- write functions (writer thread) ----------------------------------------------------------


def _ingest(db: Database, device_id: str, events: list[Event], received_at: float) -> IngestResult:
    rows = list(db["devices"].rows_where("device_id = ?", [device_id]))
    centre_id = rows[0]["centre_id"] if rows else None
    if not rows:
        db["devices"].insert(
            {
                "device_id": device_id,
                "first_seen": received_at,
                "last_seen": received_at,
                "state": "online",
            }
        )
    new = 0
    live = False
    for e in events:
        cur = db.execute(
            "INSERT OR IGNORE INTO events (event_id, device_id, seq, centre_id, kind, ts,"
            " received_at, clock_synced, historical, door, badge_hash, granted, reason,"
            " direction, member_id, room, room_state)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                e.event_id,
                device_id,
                e.seq,
                centre_id,
                e.kind,
                e.ts,
                received_at,
                e.clock_synced,
                e.historical,
                e.door,
                e.badge_hash,
                e.granted,
                e.reason,
                e.direction,
                e.member_id,
                e.room,
                e.room_state,
            ],
        )
        if cur.rowcount != 1:
            continue  # already stored: a resend after a lost ack
        reused = db.execute(
            "SELECT COUNT(*) FROM events WHERE device_id = ? AND seq = ?", [device_id, e.seq]
        ).fetchone()[0]
        if reused > 1:
            log.warning("unit %s reused seq %d: its outbox was reset; event kept", device_id, e.seq)
        new += 1
        live = live or not e.historical
        _apply(db, centre_id, device_id, e)
    if live:
        db.execute("UPDATE devices SET last_seen = ? WHERE device_id = ?", [received_at, device_id])
    return IngestResult(device_id, [e.seq for e in events], new, centre_id)


def _apply(db: Database, centre_id: str | None, device_id: str, e: Event) -> None:
    """Fold one new event into live state; an older (replayed) event never overwrites newer."""
    if e.kind == "access" and not e.granted and e.reason == "unknown_card":
        db.execute(
            "INSERT INTO unknown_cards (badge_hash, first_seen, last_seen, count, device_id,"
            " door, centre_id) VALUES (?, ?, ?, 1, ?, ?, ?)"
            " ON CONFLICT (badge_hash) DO UPDATE SET count = count + 1,"
            " first_seen = min(first_seen, excluded.first_seen),"
            # Where it was last seen follows the newest tap, not the last one to arrive.
            " device_id = iif(excluded.last_seen >= last_seen, excluded.device_id, device_id),"
            " door = iif(excluded.last_seen >= last_seen, excluded.door, door),"
            " centre_id = iif(excluded.last_seen >= last_seen, excluded.centre_id, centre_id),"
            " last_seen = max(last_seen, excluded.last_seen)",
            [e.badge_hash, e.ts, e.ts, device_id, e.door, centre_id],
        )
    if centre_id is None:
        return
    if e.kind == "access" and e.granted and e.member_id is not None:
        db.execute(
            "INSERT INTO presence (centre_id, member_id, inside, since, last_ts)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (centre_id, member_id) DO UPDATE SET"
            " inside = excluded.inside, since = excluded.since, last_ts = excluded.last_ts"
            " WHERE excluded.last_ts >= presence.last_ts",
            [centre_id, e.member_id, e.direction == "in", e.ts, e.ts],
        )
    elif e.kind == "room" and e.room is not None:
        db.execute(
            "INSERT INTO rooms (centre_id, room_id, device_id, name, state, since, last_ts)"
            " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (centre_id, room_id) DO UPDATE SET"
            " state = excluded.state, since = excluded.since, last_ts = excluded.last_ts,"
            " device_id = excluded.device_id"
            " WHERE rooms.last_ts IS NULL OR excluded.last_ts >= rooms.last_ts",
            [centre_id, e.room, device_id, e.room, e.room_state, e.ts, e.ts],
        )


# -- row shaping --------------------------------------------------------------------------------

_MEMBER_FIELDS = ("name", "email", "active", "valid_from", "valid_until", "centres")


def _member_fields(fields: dict[str, Any]) -> dict[str, Any]:
    row = {k: v for k, v in fields.items() if k in _MEMBER_FIELDS}
    if "centres" in row and row["centres"] is not None:
        row["centres"] = json.dumps(sorted(row["centres"]))
    if "active" in row:
        row["active"] = int(bool(row["active"]))
    return row


def _member_row(r: dict, badges: Iterable[dict] | None = None) -> dict:
    out = dict(r)
    out["active"] = bool(r["active"])
    out["centres"] = json.loads(r["centres"]) if r["centres"] else None
    if badges is not None:
        out["badges"] = list(badges)
    return out


def _device_row(r: dict) -> dict:
    out = dict(r)
    for key in ("faults", "doors"):
        out[key] = json.loads(r[key]) if r.get(key) else []
    if out.get("clock_synced") is not None:
        out["clock_synced"] = bool(out["clock_synced"])
    return out


def _event_row(r: dict) -> dict:
    out = {k: v for k, v in r.items() if v is not None}
    for key in ("clock_synced", "historical", "granted"):
        if key in out:
            out[key] = bool(out[key])
    return out
