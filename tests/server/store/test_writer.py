"""The store's writer thread: a Worker that survives a failing batch and a failing start."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
from sqlite_utils import Database

from server.store import Store
from server.store.sqlite.writer import Chore, Writer, WriterClosed, connect
from tests.conftest import wait_until


def test_the_writer_connection_is_synchronous_full(tmp_path: Path) -> None:
    store = Store(tmp_path / "t.db")
    try:
        level = store._writer.submit(lambda db: db.execute("PRAGMA synchronous").fetchone()[0])
        assert level.result(timeout=10) == 2  # FULL: a commit an ack relies on survives power loss
        assert store.db.execute("PRAGMA synchronous").fetchone()[0] == 1  # readers: NORMAL
    finally:
        store.close()


def test_a_batch_that_fails_to_commit_fails_its_callers_and_the_writer_goes_on(
    tmp_path: Path,
) -> None:
    store = Store(tmp_path / "t.db")
    try:
        writer = store._writer

        def break_the_commit(db: Database) -> None:
            # A deferred foreign key check only fails at COMMIT: the whole batch is lost.
            db.execute("PRAGMA defer_foreign_keys=ON")
            db.execute("INSERT INTO devices (device_id, centre_id) VALUES ('x-01', 'nowhere')")

        failed = writer.submit(break_the_commit)
        with pytest.raises(sqlite3.IntegrityError):
            failed.result(timeout=10)
        assert store.create_centre("boitron", "Boitron")["name"] == "Boitron"  # goes on
        assert writer.worker.is_alive()
        assert writer.worker.errors == 1 and "IntegrityError" in (writer.worker.last_error or "")
        assert store.writer_stats["failed_batches"] == 1
        assert store.devices() == []  # nothing of the failed batch was written
    finally:
        store.close()


def test_a_database_that_cannot_be_opened_fails_callers_then_is_retried(tmp_path: Path) -> None:
    path = tmp_path / "not-yet" / "t.db"  # its directory does not exist: open fails
    opened = threading.Event()

    def opener(p: Path) -> Database:
        db = connect(p, synchronous="FULL")
        opened.set()
        return db

    writer = Writer(path, opener=opener)
    writer.start()
    try:
        first = writer.submit(lambda db: 1)
        with pytest.raises(sqlite3.OperationalError):
            first.result(timeout=10)  # the caller gets the error instead of hanging
        wait_until(lambda: writer.worker.errors >= 1, what="the failure to be counted")
        assert writer.worker.is_alive()

        path.parent.mkdir()  # the disk is back
        wait_until(opened.is_set, what="the writer to open the file on a retry")
        assert writer.submit(lambda db: db.execute("SELECT 42").fetchone()[0]).result(10) == 42
        assert writer.worker.is_alive()
    finally:
        writer.stop()
    with pytest.raises(WriterClosed):
        writer.submit(lambda db: 1).result(timeout=1)


def test_a_chore_runs_once_asked_and_a_failing_one_fails_no_write(tmp_path: Path) -> None:
    connect(tmp_path / "t.db").close()
    writer = Writer(tmp_path / "t.db")
    calls: list[str] = []

    def fails(db: Database) -> None:
        calls.append("failing")
        raise RuntimeError("broken chore")

    def counts(db: Database) -> int:
        calls.append("counting")
        return db.execute("SELECT 1").fetchone()[0]

    failing = Chore("failing", fails, 0.0, requested=False)
    counting = Chore("counting", counts, 0.0, requested=False)
    writer.chores.extend([failing, counting])
    writer.start()
    try:
        assert writer.submit(lambda db: "written").result(timeout=10) == "written"
        assert calls == []  # nobody asked
        failing.request()
        counting.request()
        wait_until(lambda: counting.runs == 1 and failing.runs >= 1)
        assert failing.requested  # asked again: tried again later
        assert writer.submit(lambda db: "still written").result(timeout=10) == "still written"
        assert writer.batches == 2  # chores are not counted as writes
    finally:
        writer.stop()
