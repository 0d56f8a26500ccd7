"""Backups of the live database, their restore, and upgrades of the schema."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import uuid
from contextlib import closing
from pathlib import Path

import pytest
from sqlite_utils import Database

from protocol.messages import Event
from server import cli
from server.store import Store
from server.store.errors import SchemaTooNew
from server.store.sqlite.backup import BackupError, backup, restore
from server.store.sqlite.migrations import migrations
from server.store.sqlite.writer import connect

DEVICE = "boitron-01"


def door_event(seq: int) -> Event:
    return Event(
        event_id=str(uuid.uuid4()),
        device_id=DEVICE,
        epoch="e" * 32,
        seq=seq,
        kind="door_forced",
        ts=1_750_000_000.0 + seq,
        clock_synced=True,
        door="entree",
    )


def event_ids(path: Path) -> set[str]:
    with closing(sqlite3.connect(path)) as conn:
        return {row[0] for row in conn.execute("SELECT event_id FROM events")}


def integrity(path: Path) -> list[str]:
    with closing(sqlite3.connect(path)) as conn:
        return [row[0] for row in conn.execute("PRAGMA integrity_check")]


class Ingest(threading.Thread):
    """A unit's events arriving while the backup runs; ``acked`` are those whose commit
    the store confirmed (what the server acknowledges to a unit)."""

    def __init__(self, store: Store) -> None:
        super().__init__(daemon=True)
        self.store = store
        self.acked: list[str] = []
        self.more = threading.Condition()
        self.stop = threading.Event()

    def run(self) -> None:
        seq = 0
        while not self.stop.is_set() and seq < 200_000:
            batch = [door_event(seq + i) for i in range(1, 21)]
            seq += 20
            self.store.ingest(DEVICE, batch, received_at=1_750_000_000.0).result(timeout=30)
            with self.more:
                self.acked.extend(e.event_id for e in batch)
                self.more.notify_all()

    def wait_for(self, count: int) -> list[str]:
        with self.more:
            assert self.more.wait_for(lambda: len(self.acked) >= count, timeout=60)
            return list(self.acked)


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "data"
    monkeypatch.setenv("TELECENTRE_DATA_DIR", str(directory))
    return directory


def test_backup_while_ingesting_then_restore_holds_every_acknowledged_event(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(data_dir / "telecentre.db")
    store.create_centre("boitron", "Boitron")
    store.assign_device(DEVICE, "boitron")
    ingest = Ingest(store)
    ingest.start()
    try:
        acked = ingest.wait_for(200)
        dest = tmp_path / "backups"
        dest.mkdir()
        assert cli.main(["backup", str(dest)]) == 0
        ingest.wait_for(len(ingest.acked) + 200)  # it went on during and after the copy
    finally:
        ingest.stop.set()
        ingest.join(timeout=60)
        store.close()
    (copy,) = dest.glob("telecentre-*.db")
    assert copy.stat().st_mode & 0o777 == 0o600
    assert not Path(f"{copy}-wal").exists()  # one self-contained file
    assert integrity(copy) == ["ok"]
    in_copy = event_ids(copy)
    assert set(acked) <= in_copy
    assert in_copy <= event_ids(data_dir / "telecentre.db")  # one moment of the live file

    monkeypatch.setenv("TELECENTRE_DATA_DIR", str(tmp_path / "restored"))
    assert cli.main(["restore", str(copy)]) == 0
    restored = tmp_path / "restored" / "telecentre.db"
    assert integrity(restored) == ["ok"]
    assert event_ids(restored) == in_copy
    reopened = Store(restored)  # the server starts on it
    try:
        assert reopened.event_count() == len(in_copy)
        assert reopened.centre("boitron")["name"] == "Boitron"
    finally:
        reopened.close()


def test_a_restore_keeps_the_database_it_replaces(data_dir: Path, tmp_path: Path) -> None:
    store = Store(data_dir / "telecentre.db")
    store.create_centre("boitron", "Boitron")
    store.close()
    first = backup(data_dir / "telecentre.db", tmp_path / "first.db")
    store = Store(data_dir / "telecentre.db")
    store.create_centre("belleme", "Bellême")
    store.close()

    copy, saved = restore(first.path, data_dir / "telecentre.db", now=1_750_000_000)
    assert saved == data_dir / "telecentre.db.before-restore-20250615-150640"
    store = Store(data_dir / "telecentre.db")
    try:
        assert [c["id"] for c in store.centres()] == ["boitron"]
    finally:
        store.close()
    with closing(sqlite3.connect(saved)) as conn:
        assert {r[0] for r in conn.execute("SELECT id FROM centres")} == {"belleme", "boitron"}
    assert saved.stat().st_mode & 0o777 == 0o600
    assert copy.rows["centres"] == 1


def test_a_backup_never_overwrites_one_and_refuses_what_is_not_a_database(
    data_dir: Path, tmp_path: Path
) -> None:
    Store(data_dir / "telecentre.db").close()
    made = backup(data_dir / "telecentre.db", tmp_path / "b.db")
    with pytest.raises(BackupError, match="never overwrites"):
        backup(data_dir / "telecentre.db", made.path)
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(BackupError, match="not a readable SQLite database"):
        restore(junk, data_dir / "telecentre.db")
    with pytest.raises(BackupError, match="no such database file"):
        backup(tmp_path / "missing.db", tmp_path / "c.db")


def mark_newer(path: Path) -> None:
    db = connect(path)
    db["_sqlite_migrations"].insert(
        {"migration_set": migrations.name, "name": "m999_from_the_future", "applied_at": "now"}
    )
    db.close()


def test_a_database_of_a_newer_server_is_refused_everywhere(
    data_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = data_dir / "telecentre.db"
    Store(path).close()
    newer_copy = backup(path, tmp_path / "newer.db")
    mark_newer(path)
    mark_newer(newer_copy.path)
    with pytest.raises(SchemaTooNew, match="m999_from_the_future"):
        Store(path)
    with pytest.raises(SchemaTooNew, match="newer"):
        restore(newer_copy.path, tmp_path / "elsewhere" / "telecentre.db")
    # `serve` says so before it starts anything.
    key = tmp_path / "badge.key"
    key.write_text("0" * 64)
    monkeypatch.setenv("TELECENTRE_BADGE_KEY_FILE", str(key))
    assert cli.main(["init-signing-key", str(tmp_path / "signing.key")]) == 0
    monkeypatch.setenv("TELECENTRE_SIGNING_KEY_FILE", str(tmp_path / "signing.key"))
    assert cli.main(["serve", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "schema is newer than this version of the server" in err
    assert "m999_from_the_future" in err


def test_a_database_of_the_previous_version_is_migrated_at_start_and_keeps_its_data(
    tmp_path: Path,
) -> None:
    path = tmp_path / "telecentre.db"
    latest = migrations._migrations[-1].name
    db = Database(path)
    migrations.apply(db, stop_before=latest)  # the schema the previous release left
    db["centres"].insert({"id": "boitron", "name": "Boitron", "created_at": 1.0})
    db.close()

    store = Store(path)  # what `serve` does at start
    try:
        assert store.centre("boitron")["name"] == "Boitron"
    finally:
        store.close()
    with closing(sqlite3.connect(path)) as conn:
        applied = [r[0] for r in conn.execute("SELECT name FROM _sqlite_migrations")]
    assert applied[-1] == latest and len(applied) == len(migrations._migrations)


def test_the_commands_read_the_settings_file(tmp_path: Path) -> None:
    data = tmp_path / "data"
    Store(data / "telecentre.db").close()
    env_file = tmp_path / "server.env"
    env_file.write_text(f"# the server's settings\nTELECENTRE_DATA_DIR='{data}'\n")
    dest = tmp_path / "copy.db"
    done = subprocess.run(
        [sys.executable, "-m", "server.cli", "--env-file", str(env_file), "backup", str(dest)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    assert f"backup of {data / 'telecentre.db'} written to {dest}" in done.stdout
    assert "the badge key and the signing key are not in it" in done.stdout
    assert integrity(dest) == ["ok"]
