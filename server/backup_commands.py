"""``telecentre-server backup DEST`` and ``restore BACKUP``: the database, never the keys."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from protocol.errors import TelecentreError
from server.settings import Settings

COMMANDS = ("backup", "restore")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    backup = sub.add_parser(
        "backup",
        help="copy the live database (SQLite online backup, while the server runs) to DEST",
    )
    backup.add_argument(
        "dest", type=Path, help="a new file, or a directory to make telecentre-<UTC time>.db in"
    )
    restore = sub.add_parser(
        "restore",
        help="put a backup in place of the database (stop the server first); the replaced "
        "database is kept beside it",
    )
    restore.add_argument("backup", type=Path)


def run(args: argparse.Namespace) -> int:
    from server.store.sqlite import backup as backups

    settings = Settings.from_env()
    if settings.database_url:
        print(
            "backup and restore copy the SQLite file; with TELECENTRE_DATABASE_URL set, use "
            "PostgreSQL's own pg_dump and pg_restore (docs/performance.md, Scale-out)",
            file=sys.stderr,
        )
        return 1
    try:
        if args.command == "backup":
            copy = backups.backup(settings.db_path, args.dest)
            print(f"backup of {settings.db_path} written to {copy.path} ({copy.bytes} bytes, 0600)")
            print(f"  schema {copy.schema}; rows: {_rows(copy.rows)}")
            print(
                "  the badge key and the signing key are not in it: keep their copies apart "
                f"({settings.badge_key_file}, {settings.signing_key_file})"
            )
            return 0
        copy, saved = backups.restore(args.backup, settings.db_path)
        print(f"{args.backup} restored to {copy.path}")
        print(f"  schema {copy.schema}; rows: {_rows(copy.rows)}")
        if saved is not None:
            print(f"  the database it replaced is kept in {saved}")
        print("  start the server: it applies the migrations a backup from an older version needs")
        return 0
    except TelecentreError as exc:
        print(f"telecentre-server: {exc}", file=sys.stderr)
        return 1


def _rows(rows: dict[str, int]) -> str:
    return ", ".join(f"{table} {count}" for table, count in rows.items())
