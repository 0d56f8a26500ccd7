"""The unit's durable memory: events not yet acknowledged, the access list, who is inside.

An event is written here in the same transaction that allocates its sequence number and
updates local presence, before the door moves; it leaves only when the server application
acknowledges it after its own commit. The file survives power cuts (WAL, synchronous=FULL).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from protocol.messages import AccessList, Event, decode, encode, to_dict

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY,
    payload TEXT NOT NULL,
    created_offline INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    sent_at REAL
);
CREATE TABLE IF NOT EXISTS presence (
    member_id INTEGER PRIMARY KEY,
    since REAL NOT NULL
);
"""


@dataclass(frozen=True)
class Pending:
    """One event waiting for the server's acknowledgement."""

    seq: int
    event: Event
    created_offline: bool
    attempts: int

    @property
    def historical(self) -> bool:
        """Sent late: created while the link was down, or sent before and not acknowledged."""
        return self.created_offline or self.attempts > 0

    def payload(self) -> bytes:
        return encode(replace(self.event, historical=self.historical))


class Outbox:
    """SQLite file shared by the reader, publisher and MQTT threads (one lock)."""

    def __init__(self, path: Path | str) -> None:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()
        row = self._db.execute("SELECT value FROM meta WHERE key='last_seq'").fetchone()
        last = self._db.execute("SELECT MAX(seq) FROM outbox").fetchone()[0]
        self._last_seq = max(int(row[0]) if row else 0, last or 0)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- events ---------------------------------------------------------------------------

    def record(
        self,
        build: Callable[[int], Event],
        *,
        offline: bool,
        presence: tuple[int, bool, float] | None = None,
    ) -> Event:
        """Allocate the next seq, store the event built for it and apply a presence change.

        ``presence`` is (member_id, inside, ts). All of it commits together or not at all.
        """
        with self._lock:
            seq = self._last_seq + 1
            event = build(seq)
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(
                    "INSERT INTO outbox (seq, payload, created_offline) VALUES (?, ?, ?)",
                    (seq, json.dumps(to_dict(event)), int(offline)),
                )
                self._db.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES ('last_seq', ?)", (str(seq),)
                )
                if presence is not None:
                    member_id, inside, ts = presence
                    if inside:
                        self._db.execute(
                            "INSERT OR REPLACE INTO presence (member_id, since) VALUES (?, ?)",
                            (member_id, ts),
                        )
                    else:
                        self._db.execute("DELETE FROM presence WHERE member_id = ?", (member_id,))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._last_seq = seq
            return event

    def due(self, *, now: float, ack_timeout_s: float, limit: int = 500) -> list[Pending]:
        """Events to (re)send, oldest first: never sent, or sent and unacknowledged too long."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, payload, created_offline, attempts FROM outbox"
                " WHERE sent_at IS NULL OR sent_at < ? ORDER BY seq LIMIT ?",
                (now - ack_timeout_s, limit),
            ).fetchall()
        return [
            Pending(seq, decode(Event, payload), bool(off), att) for seq, payload, off, att in rows
        ]

    def mark_sent(self, seqs: list[int], at: float) -> None:
        with self._lock:
            self._db.executemany(
                "UPDATE outbox SET sent_at = ?, attempts = attempts + 1 WHERE seq = ?",
                [(at, s) for s in seqs],
            )

    def resend_all(self) -> None:
        """After a reconnect: whatever was in flight may be lost, send it again in order."""
        with self._lock:
            self._db.execute("UPDATE outbox SET sent_at = NULL WHERE sent_at IS NOT NULL")

    def ack(self, seqs: list[int]) -> int:
        with self._lock:
            cur = self._db.executemany("DELETE FROM outbox WHERE seq = ?", [(s,) for s in seqs])
            return cur.rowcount

    def pending_count(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]

    # -- access list and presence ---------------------------------------------------------

    def save_access_list(self, access_list: AccessList) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('access_list', ?)",
                (encode(access_list).decode(),),
            )

    def load_access_list(self) -> AccessList | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key='access_list'").fetchone()
        return decode(AccessList, row[0]) if row else None

    def inside_since(self, member_id: int) -> float | None:
        with self._lock:
            row = self._db.execute(
                "SELECT since FROM presence WHERE member_id = ?", (member_id,)
            ).fetchone()
        return row[0] if row else None

    def forget_presence_before(self, ts: float) -> None:
        """Members inside since before ``ts`` are taken as gone (nobody badged out)."""
        with self._lock:
            self._db.execute("DELETE FROM presence WHERE since < ?", (ts,))
