"""The SQLite file's connections and its single writer thread.

One thread writes, batching whatever is queued into one transaction (each item in its own
savepoint, so a bad item fails alone); any thread reads through its own connection.
SQLite allows one writer at a time, so one thread with a queue beats many that wait on locks.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

from sqlite_utils import Database

from protocol.errors import TelecentreError

log = logging.getLogger(__name__)

T = TypeVar("T")
WriteFn = Callable[[Database], Any]

MAX_BATCH = 2000


def connect(path: Path) -> Database:
    """Open the file in WAL mode, so readers never wait for the writer."""
    conn = sqlite3.connect(str(path), check_same_thread=False, timeout=30)
    db = Database(conn)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA foreign_keys=ON")
    return db


class WriterClosed(TelecentreError, RuntimeError):
    """A write was submitted after the store stopped."""


class Writer(threading.Thread):
    """The one thread that writes; callers get a Future resolved after the commit."""

    def __init__(self, path: Path) -> None:
        super().__init__(name="store-writer", daemon=True)
        self.path = path
        self._queue: queue.Queue[tuple[WriteFn, Future[Any]] | None] = queue.Queue()
        self._closed = False
        self.batches = 0
        self.items = 0

    def submit(self, fn: Callable[[Database], T]) -> Future[T]:
        future: Future[T] = Future()
        if self._closed:
            future.set_exception(WriterClosed("the store is closed"))
            return future
        self._queue.put((fn, future))
        return future

    def stop(self) -> None:
        self._closed = True
        self._queue.put(None)
        self.join(timeout=10)

    def run(self) -> None:
        db = connect(self.path)
        try:
            while True:
                first = self._queue.get()
                if first is None:
                    return
                batch = [first]
                while len(batch) < MAX_BATCH:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is None:
                        self._queue.put(None)  # finish this batch, then stop
                        break
                    batch.append(item)
                self._run_batch(db, batch)
        finally:
            db.close()

    def _run_batch(self, db: Database, batch: list[tuple[WriteFn, Future[Any]]]) -> None:
        results: list[tuple[Future[Any], Any, BaseException | None]] = []
        try:
            with db.atomic():
                for fn, future in batch:
                    try:
                        with db.atomic():
                            results.append((future, fn(db), None))
                    except Exception as exc:  # this item fails alone
                        results.append((future, None, exc))
        except Exception as exc:  # the commit itself failed: nothing was written
            log.exception("store batch of %d failed to commit", len(batch))
            for _, future in batch:
                future.set_exception(exc)
            return
        self.batches += 1
        self.items += len(batch)
        for future, value, error in results:
            if error is None:
                future.set_result(value)
            else:
                future.set_exception(error)
