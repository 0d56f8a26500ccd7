"""The SQLite file's connections and its single writer thread.

One thread writes, batching whatever is queued into one transaction (each item in its own
savepoint, so a bad item fails alone); any thread reads through its own connection.
SQLite allows one writer at a time, so one thread with a queue beats many that wait on locks.

The writer is a ``protocol.workers.Worker``: a batch that fails to commit fails its
callers' futures and the thread goes on (with a fresh connection); a database it cannot
open fails the waiting futures at once, then is retried with the worker's back-off. Its
connection uses ``synchronous=FULL``: an ack lets a unit delete its copy of an event, so
a commit must survive a power cut (WAL with ``NORMAL`` may roll the last commits back).
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Literal, TypeVar

from sqlite_utils import Database

from protocol.errors import TelecentreError
from protocol.workers import Worker, WorkerHealth

log = logging.getLogger(__name__)

T = TypeVar("T")
WriteFn = Callable[[Database], Any]
# A write, its caller's future, and the lock keys it declares (``Writer.submit``).
Item = tuple[WriteFn, "Future[Any]", "frozenset[str] | None"]

MAX_BATCH = 2000
WAIT_S = 0.5  # how long one step waits for work before looking at ``stopping`` again
# The writer copies the write-ahead log back into the database file (a checkpoint) once
# the log holds this many pages (about 40 MiB), in the commit that passes it. SQLite's
# default, 1,000, is less than one large batch writes when thousands of units each add an
# event: every commit then paid a checkpoint, and a server behind got slower.
CHECKPOINT_PAGES = 10_000

# The writer's page cache, in KiB (SQLite's default is 2 MiB). A batch from thousands of
# units changes pages all over the events' and visits' indexes; past 2 MiB, SQLite wrote
# pages to the log in the middle of the transaction and again at its commit, and read back
# pages it had let go: at 5,000 events/s from 3,500 units, 17-19 writes a stored event
# against 13-14 with this cache (docs/performance.md, National scale).
CACHE_KIB = 65_536


def connect(path: Path, *, synchronous: Literal["NORMAL", "FULL"] = "NORMAL") -> Database:
    """Open the file in WAL mode, so readers never wait for the writer.

    Read connections may stay at ``NORMAL``; the writer's connection uses ``FULL``.
    """
    conn = sqlite3.connect(str(path), check_same_thread=False, timeout=30)
    db = Database(conn)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={synchronous}")
    db.execute("PRAGMA foreign_keys=ON")
    return db


def _open_for_writing(path: Path) -> Database:
    db = connect(path, synchronous="FULL")
    db.execute(f"PRAGMA wal_autocheckpoint={CHECKPOINT_PAGES}")
    db.execute(f"PRAGMA cache_size=-{CACHE_KIB}")  # negative: KiB, not pages
    return db


class Chore:
    """Work the writer does by itself, at most every ``every_s`` and only once asked
    (``request``): on the writer's thread, in a transaction of its own, between batches.
    Asked from the writer's own writes (so never while it runs); a failed run stays asked
    and is tried again ``every_s`` later."""

    def __init__(self, name: str, fn: WriteFn, every_s: float, *, requested: bool) -> None:
        self.name = name
        self.fn = fn
        self.every_s = every_s
        self.requested = requested
        self.last = 0.0  # time.monotonic() of the last run
        self.runs = 0

    def request(self) -> None:
        self.requested = True

    def due(self, now: float) -> bool:
        return self.requested and now - self.last >= self.every_s


class WriterClosed(TelecentreError, RuntimeError):
    """A write was submitted after the store stopped."""


class Writer:
    """The one thread that writes; callers get a Future resolved after the commit."""

    def __init__(self, path: Path, *, opener: Callable[[Path], Database] | None = None) -> None:
        self.path = path
        self._open = opener or _open_for_writing
        self._queue: queue.SimpleQueue[Item | None] = queue.SimpleQueue()
        self._closed = False
        self._db: Database | None = None
        self.batches = 0
        self.items = 0
        self.failed_batches = 0
        # Told (items, seconds) after each committed batch: metrics, never the disk.
        self.on_commit: Callable[[int, float], None] | None = None
        self.chores: list[Chore] = []
        self.worker = Worker("store-writer", self._step)

    def start(self) -> None:
        self.worker.start()

    def health(self) -> WorkerHealth:
        return self.worker.health()

    def is_alive(self) -> bool:
        return self.worker.is_alive()

    def submit(
        self, fn: Callable[[Database], T], *, keys: frozenset[str] | None = None
    ) -> Future[T]:
        """Queue ``fn(db)``; its future resolves after the commit. ``keys``: everything the
        write reads and changes that another server process may change at the same time (a
        unit, a member…), for a database that several processes write (PostgreSQL): a batch
        whose every write declares its keys locks only those, else it locks every write."""
        future: Future[T] = Future()
        if self._closed:
            future.set_exception(WriterClosed("the store is closed"))
            return future
        self._queue.put((fn, future, keys))
        return future

    def stop(self) -> None:
        self._closed = True
        self._queue.put(None)
        if self._db is None:  # not open (failing start): nothing to finish
            self.worker.stopping.set()
        if self.worker.is_alive():
            self.worker.join(timeout=10)
        self.worker.stopping.set()
        self._fail_queued(WriterClosed("the store is closed"))
        if self._db is not None and not self.worker.is_alive():
            self._db.close()
            self._db = None

    # -- the worker's step ---------------------------------------------------------------------

    def _step(self) -> None:
        if self._db is None:
            try:
                self._db = self._open(self.path)
            except Exception as exc:
                # Nobody waits forever on a database that cannot be opened: what is queued
                # fails now (a unit resends, an API call answers 500); the worker retries.
                self._fail_queued(exc)
                raise
        try:
            first = self._queue.get(timeout=WAIT_S)
        except queue.Empty:
            self._run_chores(self._db)
            return
        if first is None:
            self._finish()
            return
        batch = [first]
        stop_after = False
        while len(batch) < MAX_BATCH:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                stop_after = True  # finish this batch, then stop
                break
            batch.append(item)
        self._run_batch(self._db, batch)
        if stop_after:
            self._finish()
        elif self._db is not None:
            self._run_chores(self._db)

    def _run_chores(self, db: Database) -> None:
        now = time.monotonic()
        for chore in self.chores:
            if not chore.due(now):
                continue
            chore.requested = False
            chore.last = now
            job: Future[Any] = Future()
            self._run_batch(db, [(chore.fn, job, None)], counted=False)
            chore.runs += 1
            if job.exception() is not None:  # asked again: tried again later
                log.error("store chore %s failed: %s", chore.name, job.exception())
                chore.requested = True

    def _finish(self) -> None:
        self.worker.stopping.set()
        if self._db is not None:
            self._db.close()
            self._db = None

    def _fail_queued(self, exc: BaseException) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item is None:
                self._queue.put(None)  # keep the stop request for the next step
                return
            if not item[1].done():
                item[1].set_exception(exc)

    def _run_batch(self, db: Database, batch: list[Item], *, counted: bool = True) -> None:
        """One transaction for the batch; ``counted``: a batch of submitted writes (in
        ``batches``, ``items`` and ``on_commit``), not a chore."""
        results: list[tuple[Future[Any], Any, BaseException | None]] = []
        started = time.perf_counter()
        declare = getattr(db, "lock_next", None)  # a database several processes write
        if declare is not None:
            keyed = all(keys is not None for _, _, keys in batch)
            declare(frozenset().union(*(k for _, _, k in batch if k)) if keyed else None)
        try:
            with db.atomic():
                for fn, future, _ in batch:
                    try:
                        with db.atomic():
                            results.append((future, fn(db), None))
                    except Exception as exc:  # this item fails alone
                        results.append((future, None, exc))
        except Exception as exc:  # the commit itself failed: nothing was written
            self.failed_batches += 1
            for _, future, _ in batch:
                if not future.done():
                    future.set_exception(exc)
            # A fresh connection for the next batch; the worker counts and logs this.
            db.close()
            self._db = None
            raise
        if counted:
            self.batches += 1
            self.items += len(batch)
        if counted and self.on_commit is not None:
            try:
                self.on_commit(len(batch), time.perf_counter() - started)
            except Exception:  # a metric must never fail a write
                log.exception("on_commit failed")
        for future, value, error in results:
            if error is None:
                future.set_result(value)
            else:
                future.set_exception(error)
