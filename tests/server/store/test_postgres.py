"""What only the PostgreSQL engine has: its dialect layer, its schema, its durable commits."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from server.store import Store
from server.store.errors import SchemaTooNew
from server.store.postgres.dialect import translate
from tests.conftest import wait_until


def test_sqlite_statements_are_rewritten_outside_their_string_literals() -> None:
    assert translate("SELECT a FROM t WHERE b = ? AND c LIKE 'x%?'") == (
        "SELECT a FROM t WHERE b = %s AND c LIKE 'x%%?'"
    )
    assert translate("INSERT OR IGNORE INTO t (a) VALUES (?)") == (
        "INSERT INTO t (a) VALUES (%s) ON CONFLICT DO NOTHING"
    )
    assert translate("DELETE FROM [t] WHERE rowid IN (SELECT rowid FROM [t] LIMIT ?)") == (
        'DELETE FROM "t" WHERE ctid IN (SELECT ctid FROM "t" LIMIT %s)'
    )
    assert translate("SELECT 1 FROM t WHERE 1 AND door IS ?") == (
        "SELECT 1 FROM t WHERE TRUE AND door IS NOT DISTINCT FROM %s"
    )
    assert translate("PRAGMA secure_delete = ON") is None


def test_the_writer_commits_durably_whatever_the_server_default(postgres_cluster: Any) -> None:
    url = postgres_cluster.database()
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"ALTER DATABASE {url.rsplit('/', 1)[1]} SET synchronous_commit = off")
    store = Store(url)
    try:
        level = store.write(lambda db: db.execute("SHOW synchronous_commit").fetchone()[0])
        assert level == "on"
    finally:
        store.close()


def test_a_database_a_newer_server_migrated_is_refused(postgres_cluster: Any) -> None:
    url = postgres_cluster.database()
    Store(url).close()
    again = Store(url)  # already up to date: opens, changes nothing
    again.create_centre("boitron", "Boitron")
    again.close()
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO telecentre_migrations VALUES ('m999_future', 0)")
    with pytest.raises(SchemaTooNew, match="m999_future"):
        Store(url)
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("SELECT id FROM centres").fetchall() == [("boitron",)]


def test_ingests_of_other_units_and_members_are_written_side_by_side(
    postgres_cluster: Any,
) -> None:
    """Several server workers: a write that declares its keys (ingest) waits only for the
    writes naming one of them, and for the writes that declare none (everything else)."""
    import psycopg

    from server.store.postgres.database import connect

    url = postgres_cluster.database()
    Store(url).close()
    first, second, third = (connect(url) for _ in range(3))
    try:
        second.conn.raw.execute("SET lock_timeout = '10s'")  # never reached when side by side
        third.conn.raw.execute("SET lock_timeout = '200ms'")  # reached: it has to wait
        first.lock_next(frozenset({"device:boitron-01", "member:1"}))
        with first.atomic():  # a worker's ingest, not committed yet
            second.lock_next(frozenset({"device:alencon-01", "member:2"}))
            with second.atomic():
                second.execute("SELECT 1")
            for keys in (frozenset({"device:alencon-01", "member:1"}), None):
                third.lock_next(keys)
                with pytest.raises(psycopg.errors.LockNotAvailable), third.atomic():
                    pass
        third.lock_next(None)
        with third.atomic():  # once the first committed, nobody waits
            third.execute("SELECT 1")
    finally:
        for db in (first, second, third):
            db.close()


def test_a_workers_commits_push_the_other_workers_live_views_and_are_not_told_back(
    postgres_cluster: Any,
) -> None:
    """Two workers on one database: a commit on one calls the other's live listeners (by
    NOTIFY), and the change heard there is not announced again (no notice loops)."""
    from protocol.messages import Status
    from server.store.postgres.leader import Leadership, LiveNotices

    url = postgres_cluster.database()
    stores = [Store(url), Store(url)]
    leaderships = [Leadership(url, retry_s=0.1) for _ in stores]
    notices = [LiveNotices(leadership, every_s=0.0) for leadership in leaderships]
    heard = [threading.Event(), threading.Event()]
    try:
        for store, leadership, notice, event in zip(
            stores, leaderships, notices, heard, strict=True
        ):
            store.share_changes(notice.changed)
            store.on_change(event.set)
            leadership.on_live = store.announce_change
            leadership.elect()  # listening before the first notice
            leadership.start()
            notice.start()
        stores[0].record_status(Status(device_id="boitron-01", state="online"), 1.0).result(10)
        assert heard[1].wait(10), "the other worker's live listeners were not called"
        wait_until(lambda: notices[0].sent == 1, what="the first worker's notice")
        heard[0].clear()
        # Nothing comes back: the second worker told nobody, the first heard nothing more.
        assert not heard[0].wait(1.0)
        assert notices[1].sent == 0
    finally:
        for notice, leadership, store in zip(notices, leaderships, stores, strict=True):
            notice.stop()
            leadership.stop()
            store.close()
