"""The unit's durable memory: events not yet acknowledged, the signed list, who is inside.

An event is written here in the same transaction that allocates its sequence number and
updates local presence, before the door moves; it leaves only when the server application
acknowledges it after its own commit, or is moved aside when the server rejects it.

The file is in WAL mode with ``synchronous=NORMAL``: a commit is written to the WAL (the
kernel holds it, so a killed process loses nothing) and flushed to the disk by an explicit
``fsync`` of the WAL, at once for most events (``record``), right after the relay for a
badge (``record(flush=False)``, then ``flush``), and always before an event is handed to
the publisher (``due``): an event leaves the unit only once a power cut cannot take it
back. Acks, resend times and rejections need no flush of their own: lost to a power cut,
they only cost a resend the server acknowledges again.

The outbox has an ``epoch`` (32 random hex, made with the file): a new file starts seqs at
1 again, and the server tells the two apart by the epoch. It also keeps the ids of the
commands already executed (until they expire) and the raw signed payloads of the installed
access list, verified again at boot.

A file SQLite cannot open or that fails its ``quick_check`` at boot (a card pulled during a
write, a worn SD card) is renamed ``<name>.damaged-<UTC time>`` beside its WAL and a new
one is started: the unit keeps deciding, and ``damaged`` says what was set aside and why
(the status reports it). A write that fails (the disk is full, an I/O error) is rolled
back and raised as ``OutboxWriteError``; ``write_failure`` says so until a write succeeds.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import msgspec

from protocol.errors import TelecentreError
from protocol.messages import Event, decode, encode

log = logging.getLogger(__name__)


class OutboxWriteError(TelecentreError, OSError):
    """The outbox could not store an event (disk full, I/O error): nothing was recorded."""


def open_checked(
    path: Path | str, schema: str, *, synchronous: str = "FULL"
) -> tuple[sqlite3.Connection, str | None]:
    """A connection to ``path`` with ``schema`` applied, and what was set aside, if anything.

    A file that is not a database or fails ``PRAGMA quick_check`` is moved aside (with its
    ``-wal`` and ``-shm``) and a new one is made in its place.
    """
    reason = None
    if str(path) != ":memory:" and Path(path).exists():
        try:
            db = _connect(path, schema, synchronous)
            result = db.execute("PRAGMA quick_check").fetchone()[0]
            if result == "ok":
                return db, None
            db.close()
            found = "; ".join(line for line in result.splitlines() if not line.startswith("***"))
            reason = f"integrity check failed: {found[:200]}"  # one line, for the status
        except sqlite3.DatabaseError as exc:
            reason = str(exc)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        aside = Path(f"{path}.damaged-{stamp}")
        for suffix in ("", "-wal", "-shm"):
            source = Path(f"{path}{suffix}")
            if source.exists():
                os.replace(source, Path(f"{aside}{suffix}"))
        log.error("%s: damaged (%s): set aside as %s, a new file started", path, reason, aside)
        reason = f"damaged file set aside as {aside.name} ({reason}); a new one started"
    return _connect(path, schema, synchronous), reason


def _connect(path: Path | str, schema: str, synchronous: str) -> sqlite3.Connection:
    db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={synchronous}")
        db.executescript(schema)
    except BaseException:
        db.close()
        raise
    return db


SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY,
    payload TEXT NOT NULL,
    created_offline INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL,
    sent_at REAL
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


class AckTimer:
    """How long to wait for an ack before sending an event again: the config's
    ``ack_timeout_s`` while acks come back sooner, longer while they come back later (a
    server far behind, whose acks a resend would only delay more).

    TCP's retransmission timer (RFC 6298): a smoothed wait and its mean deviation, the
    timeout being the wait plus four deviations, never below ``floor_s`` nor above
    ``ceiling_s``. Only events acknowledged after their first send are measured (Karn's
    rule: the ack of a resent event does not say which send it answers); each ack gives one
    sample, the longest wait among the events it names."""

    ALPHA = 1 / 8
    BETA = 1 / 4
    K = 4
    TRACKED = 10_000  # first sends remembered at most (the oldest are forgotten: unmeasured)

    def __init__(self, floor_s: float, ceiling_s: float = MAX_BACKOFF_S) -> None:
        self.floor_s = floor_s
        self.ceiling_s = ceiling_s
        self.smoothed_s: float | None = None
        self.deviation_s = 0.0
        self._first_sent: dict[int, float] = {}  # seq -> when it was sent the first time
        self._lock = threading.Lock()

    @property
    def timeout_s(self) -> float:
        with self._lock:
            if self.smoothed_s is None:
                return self.floor_s
            measured = self.smoothed_s + self.K * self.deviation_s
        return min(self.ceiling_s, max(self.floor_s, measured))

    def sent(self, first: Iterable[int], again: Iterable[int], now: float) -> None:
        """Events sent now: ``first`` for the first time, ``again`` resent (unmeasured)."""
        with self._lock:
            for seq in again:
                self._first_sent.pop(seq, None)
            for seq in first:
                self._first_sent[seq] = now
            while len(self._first_sent) > self.TRACKED:
                del self._first_sent[next(iter(self._first_sent))]

    def acked(self, seqs: Iterable[int], now: float) -> None:
        """An ack (or rejection) came for ``seqs``: one sample if any was sent only once."""
        with self._lock:
            waits = [now - t for s in seqs if (t := self._first_sent.pop(s, None)) is not None]
            if not waits:
                return
            sample = max(waits)
            if self.smoothed_s is None:
                self.smoothed_s, self.deviation_s = sample, sample / 2
                return
            self.deviation_s += self.BETA * (abs(self.smoothed_s - sample) - self.deviation_s)
            self.smoothed_s += self.ALPHA * (sample - self.smoothed_s)


class Outbox:
    """SQLite file shared by the reader, publisher and MQTT threads (one lock)."""

    def __init__(self, path: Path | str) -> None:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db, outbox_damaged = open_checked(path, SCHEMA, synchronous="NORMAL")
        # Commits written but not yet flushed to the disk (see the module's docstring), and
        # why the last flush failed, until one works (nothing is sent meanwhile).
        self._unflushed = False
        self.flush_failure: str | None = None
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(outbox)")}
        if "next_attempt_at" not in columns:  # a v1 file
            self._db.execute("ALTER TABLE outbox ADD COLUMN next_attempt_at REAL")
        if "sent_at" not in columns:  # a file from before acks moved the resends
            self._db.execute("ALTER TABLE outbox ADD COLUMN sent_at REAL")
        self._db.execute("CREATE INDEX IF NOT EXISTS outbox_sent_at ON outbox (sent_at)")
        self._lock = threading.Lock()
        self._lists = ListCache(
            ":memory:" if str(path) == ":memory:" else Path(path).with_name("lists.db")
        )
        # What was set aside at boot, for the status (None: both files were sound).
        self.damaged = [
            f"{name}: {why}"
            for name, why in (("outbox", outbox_damaged), ("access list", self._lists.damaged))
            if why is not None
        ]
        # Why the last write failed, until one succeeds; events that could not be stored.
        self.write_failure: str | None = None
        self.unwritten = 0
        # Called (outside the lock) when a write fails and when one works again after a
        # failure: the agent publishes its status.
        self.on_write_state: Callable[[], None] = lambda: None
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
        # Who is inside since when, as the presence table holds it: read at every card
        # (direction, anti-passback) before the door moves, so kept in memory beside the
        # table and changed only once a commit has written the table.
        self._inside: dict[int, float] = dict(
            self._db.execute("SELECT member_id, since FROM presence").fetchall()
        )
        # What a killed process left written but not flushed is flushed now.
        self._unflushed = True
        self.flush()

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
        flush: bool = True,
    ) -> Event:
        """Allocate the next seq, store the event built for it and apply a presence change.

        ``presence`` is (member_id, inside, ts); ``command`` is (command_id, expires_at) of
        the command this event executes, remembered so it is never executed twice;
        ``setting`` is (key, value) of a state of the unit this event changes (lockdown).
        All of it commits together or not at all. With ``flush=False`` the commit is
        written (a killed process keeps it) but flushed to the disk only by the next
        ``flush`` or ``due``: the door opens without waiting for the disk.
        """
        failure = recovered = flush_changed = False
        with self._lock:
            seq = self._last_seq + 1
            event = build(seq)
            try:
                self._db.execute("BEGIN IMMEDIATE")
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
                self._unflushed = True
                if presence is not None:
                    member_id, inside, ts = presence
                    if inside:
                        self._inside[member_id] = ts
                    else:
                        self._inside.pop(member_id, None)
            except sqlite3.IntegrityError:  # a command id already seen: the caller's business
                self._db.execute("ROLLBACK")
                raise
            except sqlite3.Error as exc:  # disk full, I/O error: the file could not take it
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
                self.unwritten += 1
                self.write_failure = f"cannot store events in {self.path}: {exc}"
                failed = OutboxWriteError(self.write_failure)
                failed.__cause__ = exc
                failure = True
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            else:
                recovered, self.write_failure = self.write_failure is not None, None
                self._last_seq = seq
                if flush:
                    flush_changed = self._flush_locked()
        if flush_changed:
            self.on_write_state()
        if failure:
            log.error("%s: nothing recorded", failed)
            self.on_write_state()  # the status says why at once
            raise failed
        if not recovered:
            return event
        log.warning("%s: events are stored again", self.path)
        self.on_write_state()  # the status no longer reports the failure
        return event

    def flush(self) -> None:
        """Make every event committed so far survive a power cut (an ``fsync`` of the WAL,
        when something was written since the last one). A flush the disk refuses is kept
        in ``flush_failure`` (the status says why) and tried again at the next one."""
        with self._lock:
            changed = self._flush_locked()
        if changed:
            self.on_write_state()

    def _flush_locked(self) -> bool:
        """Flush; whether ``flush_failure`` changed (for the status, outside the lock)."""
        if not self._unflushed or str(self.path) == ":memory:":
            return False
        try:
            fd = os.open(f"{self.path}-wal", os.O_RDONLY | os.O_CLOEXEC)
            try:
                os.fsync(fd)  # flushes the file's pages whatever descriptor wrote them
            finally:
                os.close(fd)
        except FileNotFoundError:  # nothing written since the last checkpoint closed it
            pass
        except OSError as exc:  # an I/O error: reported, and tried again at the next flush
            failure = f"cannot flush {self.path} to the disk: {exc}"
            first = self.flush_failure is None
            self.flush_failure = failure
            if first:
                log.error("%s: events are kept, not sent, until a flush works", failure)
            return first
        self._unflushed = False
        if self.flush_failure is None:
            return False
        log.warning("%s: flushed to the disk again", self.path)
        self.flush_failure = None
        return True

    def due(self, *, now: float, limit: int = 500) -> list[Pending]:
        """Events to (re)send, oldest first: never sent, or whose back-off has passed.
        Flushed first: an event is never sent that a power cut could take back (none is,
        while the disk refuses the flush)."""
        with self._lock:
            changed = self._flush_locked()
            rows = [] if self._unflushed else self._due_rows(now, limit)
        if changed:
            self.on_write_state()
        return [
            Pending(seq, decode(Event, payload), bool(off), att) for seq, payload, off, att in rows
        ]

    def _due_rows(self, now: float, limit: int) -> list[tuple[int, str, int, int]]:
        return self._db.execute(
            "SELECT seq, payload, created_offline, attempts FROM outbox"
            " WHERE next_attempt_at IS NULL OR next_attempt_at <= ? ORDER BY seq LIMIT ?",
            (now, limit),
        ).fetchall()

    def mark_sent(self, seqs: list[int], *, now: float, ack_timeout_s: float) -> None:
        """Each event waits ack_timeout_s * 2**(attempts-1) (at most 300 s) before a resend
        (``ack_timeout_s``: the ``AckTimer``'s timeout at the time of the send)."""
        if not seqs:
            return
        with self._lock:
            rows = self._db.execute(
                f"SELECT seq, attempts FROM outbox WHERE seq IN ({','.join('?' * len(seqs))})",
                seqs,
            ).fetchall()
            self._db.executemany(
                "UPDATE outbox SET attempts = ?, next_attempt_at = ?, sent_at = ? WHERE seq = ?",
                [(att + 1, now + backoff_s(ack_timeout_s, att + 1), now, seq) for seq, att in rows],
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

    def ack(
        self, seqs: Iterable[int], *, now: float | None = None, wait_s: float | None = None
    ) -> int:
        """Forget the acknowledged events; how many there were.

        With ``now`` and ``wait_s``, the ack also says where the server is in this unit's
        events (the last send of those it names that were sent once: a resent one's ack
        does not say which send it answers). Events sent after that are still on their way,
        queued behind: none is resent before ``now + wait_s``. Events sent before it and
        still not acknowledged were passed (the broker dropped them, or the server lost
        them): each is resent at ``now + wait_s`` at the latest."""
        wanted = [(s,) for s in seqs]
        with self._lock:
            reached = None
            if now is not None and wait_s is not None:
                for chunk in (wanted[i : i + 500] for i in range(0, len(wanted), 500)):
                    last = self._db.execute(
                        "SELECT MAX(sent_at) FROM outbox WHERE attempts = 1"
                        f" AND seq IN ({','.join('?' * len(chunk))})",
                        [s for (s,) in chunk],
                    ).fetchone()[0]
                    if last is not None and (reached is None or last > reached):
                        reached = last
            self._db.execute("BEGIN IMMEDIATE")  # one commit for the ack
            try:
                cur = self._db.executemany("DELETE FROM outbox WHERE seq = ?", wanted)
                if reached is not None:
                    until = now + wait_s  # type: ignore[operator]
                    self._db.execute(
                        "UPDATE outbox SET next_attempt_at = MAX(next_attempt_at, ?)"
                        " WHERE sent_at > ? AND next_attempt_at IS NOT NULL",
                        (until, reached),
                    )
                    self._db.execute(
                        "UPDATE outbox SET next_attempt_at = MIN(next_attempt_at, ?)"
                        " WHERE sent_at < ? AND next_attempt_at IS NOT NULL",
                        (until, reached),
                    )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
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
            return self._inside.get(member_id)

    def forget_presence_before(self, ts: float) -> None:
        """Members inside since before ``ts`` are taken as gone (nobody badged out)."""
        with self._lock:
            self._db.execute("DELETE FROM presence WHERE since < ?", (ts,))
            self._inside = {m: since for m, since in self._inside.items() if since >= ts}


class ListCache:
    """The raw signed payloads of the installed access list, verified again at boot."""

    def __init__(self, path: Path | str) -> None:
        self._db, self.damaged = open_checked(path, LIST_SCHEMA)
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
