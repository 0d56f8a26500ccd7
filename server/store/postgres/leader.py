"""Which of several server workers on one PostgreSQL database is the leader.

The leader is the one worker that publishes the access lists and the server's status, and
reads the units' status messages (their order matters: a birth and a last will must not be
committed in the wrong order by two workers). It is the worker holding a session-level
advisory lock: PostgreSQL releases the lock when that worker's connection ends (a crash, a
lost network), and another worker takes it within ``retry_s``.

Workers tell the leader what changed through NOTIFY on one channel (a member's badges
changed through another worker's API, a day credit spent in an event that another worker
stored); the leader LISTENs and acts on each notice as if the change were its own.

Every worker also tells every other, on a second channel, that a commit of its own changed
what the live views show (``LiveNotices``): each worker serves its own live streams, which
are pushed after a change, so without it an event another worker stored would reach them
only at their next heartbeat.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from protocol.workers import Worker

if TYPE_CHECKING:  # psycopg is the optional ``postgres`` extra: imported when used
    import psycopg

log = logging.getLogger(__name__)

LEADER_LOCK_KEY = 0x7E1EC0E0
CHANNEL = "telecentre_changes"
LIVE_CHANNEL = "telecentre_live"  # payload: the instance of the worker that committed
NOTIFY_LIMIT = 7000  # PostgreSQL refuses payloads of 8,000 bytes and more
LIVE_EVERY_S = 0.1  # at most one live notice this often: a burst of commits is one


class Leadership(Worker):
    """Holds or waits for the leader's lock; hands the leader every worker's notices."""

    def __init__(
        self,
        url: str,
        *,
        on_change: Callable[[bool], None] = lambda leader: None,
        on_notice: Callable[[dict[str, Any]], None] = lambda notice: None,
        on_live: Callable[[], None] = lambda: None,
        retry_s: float = 1.0,
    ) -> None:
        super().__init__("leadership", self._step)
        self.url = url
        self.on_change = on_change
        self.on_notice = on_notice
        self.on_live = on_live  # another worker's commit changed the live views
        self.instance = uuid.uuid4().hex  # tells this worker's live notices from others'
        self.retry_s = retry_s
        self.is_leader = threading.Event()
        self._conn: psycopg.Connection | None = None
        self._send: psycopg.Connection | None = None
        self._send_lock = threading.Lock()

    def elect(self) -> bool:
        """Try once, now (a worker starting knows whether it leads before it connects)."""
        import psycopg

        if self._conn is None:
            self._conn = psycopg.connect(self.url, autocommit=True)
            self._conn.execute(f"LISTEN {CHANNEL}")
            self._conn.execute(f"LISTEN {LIVE_CHANNEL}")
        if not self.is_leader.is_set():
            got = self._conn.execute("SELECT pg_try_advisory_lock(%s)", [LEADER_LOCK_KEY])
            if got.fetchone()[0]:
                self.is_leader.set()
                log.info("this server worker is the leader")
                self.on_change(True)
        return self.is_leader.is_set()

    def notify(self, notice: dict[str, Any]) -> None:
        """Tell the leader (whichever worker it is) about a change."""
        payload = json.dumps(notice)
        if len(payload) > NOTIFY_LIMIT and notice.get("members") is not None:
            payload = json.dumps({**notice, "members": None})  # whole centres instead
        self._send_notice(CHANNEL, payload)

    def notify_live(self) -> None:
        """Tell every other worker that a commit here changed the live views."""
        self._send_notice(LIVE_CHANNEL, self.instance)

    def _send_notice(self, channel: str, payload: str) -> None:
        import psycopg

        with self._send_lock:
            if self._send is None or self._send.closed:
                self._send = psycopg.connect(self.url, autocommit=True)
            self._send.execute("SELECT pg_notify(%s, %s)", [channel, payload])

    def stop(self, timeout: float = 5.0) -> None:
        super().stop(timeout)
        self._lose()
        with self._send_lock:
            if self._send is not None:
                self._send.close()
                self._send = None

    def _lose(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()  # releases the lock, if we held it
        if self.is_leader.is_set():
            self.is_leader.clear()
            log.warning("this server worker is no longer the leader")
            self.on_change(False)

    def _step(self) -> None:
        import psycopg

        try:
            self.elect()
            assert self._conn is not None
            for notice in self._conn.notifies(timeout=self.retry_s):
                if notice.channel == LIVE_CHANNEL:
                    if notice.payload != self.instance:
                        self.on_live()
                elif self.is_leader.is_set():
                    self.on_notice(json.loads(notice.payload))
                if self.stopping.is_set():
                    break
        except psycopg.Error:
            self._lose()  # the worker's back-off, then a new connection and election
            raise


class LiveNotices(Worker):
    """Tells the other workers of a group, through ``Leadership.notify_live``, that a
    commit here changed what the live views show, so that they push their own live streams
    (``Store.share_changes`` calls ``changed``). A burst of commits is one notice: at most
    one every ``every_s``, and never a round trip to PostgreSQL on the writer's thread."""

    def __init__(self, leadership: Leadership, *, every_s: float = LIVE_EVERY_S) -> None:
        super().__init__("live-notices", self._step)
        self.leadership = leadership
        self.every_s = every_s
        self.sent = 0
        self._changed = threading.Event()

    def changed(self) -> None:
        """A commit here changed the live views (the writer's thread: returns at once)."""
        self._changed.set()

    def stop(self, timeout: float = 5.0) -> None:
        self.stopping.set()
        self._changed.set()  # wakes the step, which sees the stop and sends nothing
        super().stop(timeout)

    def _step(self) -> None:
        self._changed.wait()
        if self.stopping.is_set():
            return
        self._changed.clear()
        try:
            self.leadership.notify_live()
        except Exception:
            self._changed.set()  # told after the worker's back-off
            raise
        self.sent += 1
        self.stopping.wait(self.every_s)
