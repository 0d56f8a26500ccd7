"""The unit's durable memory: events not yet acknowledged, the signed list, who is inside.

An event is written here in the same transaction that allocates its sequence number and
updates local presence, before the door moves; it leaves only when the server application
acknowledges it after its own commit, or is moved aside when the server rejects it. The
file survives power cuts (WAL, synchronous=FULL).

The outbox has an ``epoch`` (32 random hex, made with the file): a new file starts seqs at
1 again, and the server tells the two apart by the epoch. It also keeps the ids of the
commands already executed (until they expire) and the raw signed payloads of the installed
access list, verified again at boot.
"""

from __future__ import annotations

import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import msgspec

from protocol.messages import Event, decode, encode

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY,
    payload TEXT NOT NULL,
    created_offline INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL
);
CREATE TABLE IF NOT EXISTS outbox_rejected (
    seq INTEGER PRIMARY KEY,
    payload TEXT NOT NULL,
    reason TEXT NOT NULL,
    rejected_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS presence (
    member_id INTEGER PRIMARY KEY,
    since REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS commands_seen (
    command_id TEXT PRIMARY KEY,
    expires_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS credit_days (
    member_id INTEGER NOT NULL,
    day INTEGER NOT NULL,
    PRIMARY KEY (member_id, day)
);
"""

# The access list lives in a file of its own: saving a 13 MB snapshot must not hold the
# outbox's write lock while a badge at the door waits to record its event.
LIST_SCHEMA = """
CREATE TABLE IF NOT EXISTS access_list (
    kind TEXT NOT NULL,
    idx INTEGER NOT NULL,
    payload BLOB NOT NULL,
    PRIMARY KEY (kind, idx)
);
"""

# The longest wait between two sends of one unacknowledged event.
MAX_BACKOFF_S = 300.0


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
        return encode(replace_event(self.event, historical=self.historical))


def replace_event(event: Event, **changes: object) -> Event:
    return msgspec.structs.replace(event, **changes)


def backoff_s(ack_timeout_s: float, attempts: int) -> float:
    """How long to wait for an ack after the ``attempts``-th send (1 = first send)."""
    return min(ack_timeout_s * 2 ** min(max(attempts - 1, 0), 30), MAX_BACKOFF_S)


class Outbox:
    """SQLite file shared by the reader, publisher and MQTT threads (one lock)."""

    def __init__(self, path: Path | str) -> None:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(outbox)")}
        if "next_attempt_at" not in columns:  # a v1 file
            self._db.execute("ALTER TABLE outbox ADD COLUMN next_attempt_at REAL")
        self._lock = threading.Lock()
        self._lists = ListCache(
            ":memory:" if str(path) == ":memory:" else Path(path).with_name("lists.db")
        )
        self.epoch = self._meta("epoch")
        if self.epoch is None:
            self.epoch = secrets.token_hex(16)
            self._db.execute("INSERT INTO meta (key, value) VALUES ('epoch', ?)", (self.epoch,))
        row = self._meta("last_seq")
        last = self._db.execute("SELECT MAX(seq) FROM outbox").fetchone()[0]
        self._last_seq = max(int(row) if row else 0, last or 0)
        # Monotonic times do not survive a reboot: whatever is pending is due at start.
        self._db.execute("UPDATE outbox SET next_attempt_at = NULL")
        # Events waiting, kept up to date by record, ack and reject (the bound's check must
        # not count a big outbox on the badge path).
        self.pending = self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]

    def _meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def close(self) -> None:
        with self._lock:
            self._db.close()
        self._lists.close()

    # -- events ---------------------------------------------------------------------------

    def record(
        self,
        build: Callable[[int], Event],
        *,
        offline: bool,
        presence: tuple[int, bool, float] | None = None,
        credit_day: tuple[int, int] | None = None,
        command: tuple[str, float] | None = None,
        setting: tuple[str, str] | None = None,
    ) -> Event:
        """Allocate the next seq, store the event built for it and apply a presence change.

        ``presence`` is (member_id, inside, ts); ``command`` is (command_id, expires_at) of
        the command this event executes, remembered so it is never executed twice;
        ``setting`` is (key, value) of a state of the unit this event changes (lockdown).
        All of it commits together or not at all.
        """
        with self._lock:
            seq = self._last_seq + 1
            event = build(seq)
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(
                    "INSERT INTO outbox (seq, payload, created_offline) VALUES (?, ?, ?)",
                    (seq, encode(event).decode(), int(offline)),
                )
                self._db.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES ('last_seq', ?)", (str(seq),)
                )
                if credit_day is not None:  # (member_id, local day): a day credit used here
                    self._db.execute(
                        "INSERT OR IGNORE INTO credit_days (member_id, day) VALUES (?, ?)",
                        credit_day,
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
                if command is not None:
                    self._db.execute(
                        "INSERT INTO commands_seen (command_id, expires_at) VALUES (?, ?)", command
                    )
                if setting is not None:
                    self._db.execute(
                        "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                        (f"setting.{setting[0]}", setting[1]),
                    )
                self._db.execute("COMMIT")
                self.pending += 1
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._last_seq = seq
            return event

    def due(self, *, now: float, limit: int = 500) -> list[Pending]:
        """Events to (re)send, oldest first: never sent, or whose back-off has passed."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, payload, created_offline, attempts FROM outbox"
                " WHERE next_attempt_at IS NULL OR next_attempt_at <= ? ORDER BY seq LIMIT ?",
                (now, limit),
            ).fetchall()
        return [
            Pending(seq, decode(Event, payload), bool(off), att) for seq, payload, off, att in rows
        ]

    def mark_sent(self, seqs: list[int], *, now: float, ack_timeout_s: float) -> None:
        """Each event waits ack_timeout_s * 2**(attempts-1) (at most 300 s) before a resend."""
        if not seqs:
            return
        with self._lock:
            rows = self._db.execute(
                f"SELECT seq, attempts FROM outbox WHERE seq IN ({','.join('?' * len(seqs))})",
                seqs,
            ).fetchall()
            self._db.executemany(
                "UPDATE outbox SET attempts = ?, next_attempt_at = ? WHERE seq = ?",
                [(att + 1, now + backoff_s(ack_timeout_s, att + 1), seq) for seq, att in rows],
            )

    def next_attempt_at(self, seq: int) -> float | None:
        with self._lock:
            row = self._db.execute(
                "SELECT next_attempt_at FROM outbox WHERE seq = ?", (seq,)
            ).fetchone()
        return row[0] if row else None

    def resend_all(self) -> None:
        """After a reconnect or a new server: everything pending is due again, once."""
        with self._lock:
            self._db.execute("UPDATE outbox SET next_attempt_at = NULL")

    def ack(self, seqs: Iterable[int]) -> int:
        with self._lock:
            cur = self._db.executemany("DELETE FROM outbox WHERE seq = ?", [(s,) for s in seqs])
            self.pending -= cur.rowcount
            return cur.rowcount

    def reject(self, rejected: Iterable[tuple[int, str]], *, at: float | None = None) -> int:
        """Move events the server will never take to ``outbox_rejected`` (kept, not resent)."""
        at = time.time() if at is None else at
        moved = 0
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for seq, reason in rejected:
                    cur = self._db.execute(
                        "INSERT OR REPLACE INTO outbox_rejected (seq, payload, reason, rejected_at)"
                        " SELECT seq, payload, ?, ? FROM outbox WHERE seq = ?",
                        (reason, at, seq),
                    )
                    if cur.rowcount:
                        self._db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))
                        moved += 1
                self._db.execute("COMMIT")
                self.pending -= moved
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return moved

    def rejected(self) -> list[tuple[int, str]]:
        with self._lock:
            return self._db.execute(
                "SELECT seq, reason FROM outbox_rejected ORDER BY seq"
            ).fetchall()

    def pending_count(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]

    def oldest_pending_ts(self) -> float | None:
        """The ``ts`` of the oldest event still waiting for its ack; None when none is."""
        with self._lock:
            row = self._db.execute("SELECT payload FROM outbox ORDER BY seq LIMIT 1").fetchone()
        return None if row is None else decode(Event, row[0]).ts

    def rejected_count(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM outbox_rejected").fetchone()[0]

    # -- commands ---------------------------------------------------------------------------

    def command_seen(self, command_id: str) -> bool:
        with self._lock:
            row = self._db.execute(
                "SELECT 1 FROM commands_seen WHERE command_id = ?", (command_id,)
            ).fetchone()
        return row is not None

    def remember_command(self, command_id: str, expires_at: float) -> bool:
        """Record a command id as seen; False when it already was."""
        with self._lock:
            cur = self._db.execute(
                "INSERT OR IGNORE INTO commands_seen (command_id, expires_at) VALUES (?, ?)",
                (command_id, expires_at),
            )
            return cur.rowcount == 1

    def setting(self, key: str) -> str | None:
        """A state of the unit recorded with an event (``record(setting=...)``)."""
        with self._lock:
            return self._meta(f"setting.{key}")

    def forget_commands_before(self, ts: float) -> None:
        """Ids of commands that expired before ``ts`` cannot be replayed usefully any more."""
        with self._lock:
            self._db.execute("DELETE FROM commands_seen WHERE expires_at < ?", (ts,))

    # -- access list and presence ---------------------------------------------------------

    def save_snapshot(self, segments: list[bytes] | None, head: bytes | None = None) -> None:
        """The raw signed segments (and head) of a newly installed snapshot (the old delta
        goes); None: the segments staged since ``clear_staged``, in one transaction."""
        self._lists.save_snapshot(segments, head)

    def stage_segment(self, index: int, payload: bytes) -> None:
        """Keep a segment of the snapshot being fetched on disk, not in memory, until
        ``save_snapshot(None)`` makes it part of the saved list (boot ignores it before)."""
        self._lists.stage(index, payload)

    def clear_staged(self) -> None:
        self._lists.clear_staged()

    def save_delta(self, payload: bytes) -> None:
        self._lists.save_delta(payload)

    def load_list(self) -> tuple[list[bytes], bytes | None]:
        """(raw segments in order, raw delta or None) as saved."""
        return self._lists.load()

    def load_head(self) -> bytes | None:
        return self._lists.load_head()

    def credit_days(self, member_id: int, since_day: int) -> set[int]:
        """The local days (``date.toordinal``) this unit used a day credit of the member."""
        with self._lock:
            rows = self._db.execute(
                "SELECT day FROM credit_days WHERE member_id = ? AND day >= ?",
                (member_id, since_day),
            ).fetchall()
        return {r[0] for r in rows}

    def forget_credit_days_before(self, day: int) -> None:
        with self._lock:
            self._db.execute("DELETE FROM credit_days WHERE day < ?", (day,))

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


class ListCache:
    """The raw signed payloads of the installed access list, verified again at boot."""

    def __init__(self, path: Path | str) -> None:
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(LIST_SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def save_snapshot(self, segments: list[bytes] | None, head: bytes | None = None) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute("DELETE FROM access_list WHERE kind != 'staged'")
                if segments is None:
                    self._db.execute(
                        "UPDATE access_list SET kind = 'segment' WHERE kind = 'staged'"
                    )
                else:
                    self._db.execute("DELETE FROM access_list WHERE kind = 'staged'")
                    self._db.executemany(
                        "INSERT INTO access_list (kind, idx, payload) VALUES ('segment', ?, ?)",
                        list(enumerate(segments)),
                    )
                if head is not None:
                    self._db.execute(
                        "INSERT INTO access_list (kind, idx, payload) VALUES ('head', 0, ?)",
                        (head,),
                    )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def stage(self, index: int, payload: bytes) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO access_list (kind, idx, payload) VALUES ('staged', ?, ?)",
                (index, payload),
            )

    def clear_staged(self) -> None:
        with self._lock:
            self._db.execute("DELETE FROM access_list WHERE kind = 'staged'")

    def save_delta(self, payload: bytes) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO access_list (kind, idx, payload) VALUES ('delta', 0, ?)",
                (payload,),
            )

    def load(self) -> tuple[list[bytes], bytes | None]:
        with self._lock:
            rows = self._db.execute(
                "SELECT kind, payload FROM access_list ORDER BY kind, idx"
            ).fetchall()
        segments = [bytes(p) for kind, p in rows if kind == "segment"]
        delta = next((bytes(p) for kind, p in rows if kind == "delta"), None)
        return segments, delta

    def load_head(self) -> bytes | None:
        with self._lock:
            row = self._db.execute("SELECT payload FROM access_list WHERE kind = 'head'").fetchone()
        return bytes(row[0]) if row else None
