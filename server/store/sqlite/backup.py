"""Backups of the live database and their restore (``telecentre-server backup|restore``).

A backup is SQLite's online backup (``sqlite3.Connection.backup``) in one step: one read
transaction, so the copy is the database as of one commit, while the server goes on
writing (WAL: readers never block the writer). The copy is checked (``PRAGMA
integrity_check``), made a single self-contained file (rollback journal, not WAL), given
mode 0600 (it holds personal data) and only then renamed to its name: a backup that exists
is whole. It holds the database only: the badge key and the signing key are never in it,
and are kept apart (docs/deploy.md).

A restore checks the copy the same way and refuses one made by a newer version of the
server; it writes through SQLite's backup API too, so a database left in WAL mode by a
stopped server is replaced whole. The database it replaces is first saved beside it.
Migrations of an older backup run when the server starts.
"""

from __future__ import annotations

import os
import sqlite3
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from sqlite_utils import Database

from protocol.errors import TelecentreError
from server.store.sqlite.migrations import migrations

COUNTED = ("events", "members", "badges", "devices", "centres")


class BackupError(TelecentreError, RuntimeError):
    """A backup or a restore that cannot be made; the message says why."""


@dataclass(frozen=True)
class Copy:
    path: Path
    bytes: int
    rows: dict[str, int]  # rows of the main tables, for the operator to compare
    schema: str  # the newest migration it holds


def _open(path: Path) -> sqlite3.Connection:
    if not path.is_file():
        raise BackupError(f"{path}: no such database file")
    return sqlite3.connect(str(path), timeout=30)


def _check(conn: sqlite3.Connection, what: Path) -> tuple[dict[str, int], str]:
    """integrity_check and the schema; (rows by table, newest migration)."""
    try:
        result = [row[0] for row in conn.execute("PRAGMA integrity_check")]
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"{what}: not a readable SQLite database ({exc})") from None
    if result != ["ok"]:
        raise BackupError(f"{what}: integrity check failed: {'; '.join(result[:5])}")
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    db = Database(conn)
    applied = [m.name for m in migrations.applied(db)]
    if not applied:
        raise BackupError(f"{what}: not a Telecentre database (no migrations applied)")
    migrations.check(db, what)
    counted = [t for t in COUNTED if t in tables]
    rows = {t: conn.execute(f"SELECT count(*) FROM [{t}]").fetchone()[0] for t in counted}
    return rows, applied[-1]


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def backup(db_path: Path, dest: Path, *, now: float | None = None) -> Copy:
    """Copy the live database to ``dest`` (a new file, or a directory to put one in)."""
    if dest.is_dir():
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(time.time() if now is None else now))
        dest = dest / f"telecentre-{stamp}.db"
    if dest.exists():
        raise BackupError(f"{dest} exists: a backup never overwrites another")
    if not dest.parent.is_dir():
        raise BackupError(f"{dest.parent}: no such directory")
    partial = dest.with_name(f".{dest.name}.partial")
    partial.unlink(missing_ok=True)  # left by an interrupted run
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)
    try:
        with closing(_open(db_path)) as src, closing(sqlite3.connect(str(partial))) as dst:
            src.backup(dst)  # one step: the database as of one commit
            dst.execute("PRAGMA journal_mode=DELETE")  # one file, no -wal beside it
            rows, schema = _check(dst, db_path)
        os.chmod(partial, 0o600)
        _fsync(partial)
        os.replace(partial, dest)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return Copy(dest, dest.stat().st_size, rows, schema)


def restore(src_path: Path, db_path: Path, *, now: float | None = None) -> tuple[Copy, Path | None]:
    """Put the backup ``src_path`` in place of ``db_path``; the database it replaces is
    first saved beside it, whose path is returned. Run it with the server stopped."""
    with closing(_open(src_path)) as src:
        _check(src, src_path)
        saved = None
        if db_path.exists():
            stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(time.time() if now is None else now))
            saved = db_path.with_name(f"{db_path.name}.before-restore-{stamp}")
            if saved.exists():
                raise BackupError(f"{saved} exists: wait a second and run the restore again")
            with closing(_open(db_path)) as current, closing(sqlite3.connect(saved)) as aside:
                current.backup(aside)
                aside.execute("PRAGMA journal_mode=DELETE")
            os.chmod(saved, 0o600)
        db_path.parent.mkdir(parents=True, exist_ok=True)
        fresh = not db_path.exists()
        with closing(sqlite3.connect(str(db_path), timeout=30)) as dst:
            src.backup(dst)
            dst.execute("PRAGMA journal_mode=WAL")
            rows, schema = _check(dst, db_path)
    if fresh:
        os.chmod(db_path, 0o600)
    _give_to_data_dir_owner(db_path, saved)
    return Copy(db_path, db_path.stat().st_size, rows, schema), saved


def _give_to_data_dir_owner(*paths: Path | None) -> None:
    """Run as root, a restore leaves its files to the owner of the data directory (the
    server's user), or the server could not open them."""
    if os.geteuid() != 0:
        return
    for path in paths:
        if path is None:
            continue
        owner = path.parent.stat()
        for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            if p.exists():
                os.chown(p, owner.st_uid, owner.st_gid)
