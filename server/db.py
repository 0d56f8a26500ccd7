"""The SQLite file behind the server: schema migrations and the single writer thread.

One thread writes, batching whatever is queued into one transaction (each item in its own
savepoint, so a bad item fails alone); any thread reads through its own connection.
Nothing outside ``server/store*.py`` and this module writes SQL.
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
from sqlite_utils.migrations import Migrations

log = logging.getLogger(__name__)

T = TypeVar("T")
WriteFn = Callable[[Database], Any]

MAX_BATCH = 2000

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


def connect(path: Path) -> Database:
    conn = sqlite3.connect(str(path), check_same_thread=False, timeout=30)
    db = Database(conn)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA foreign_keys=ON")
    return db


class WriterClosed(RuntimeError):
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
