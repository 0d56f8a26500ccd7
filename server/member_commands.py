"""``telecentre-server member add|list|import|export|erase`` and ``purge``: the members API
for admins on the server's own command line, on the store of the configured data dir.

Every change is audited with the actor ``cli:<unix user>``. The command line does not
reach a running server's list publisher: after an import with cards or an erasure,
restart the server so that the units' access lists follow (docs/operations.md).
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import time
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from tqdm import tqdm

from protocol.badges import badge_hash
from protocol.errors import TelecentreError
from server.domain import member_import
from server.domain.audit import CLI_ACTOR, AuditEvent
from server.domain.privacy import DEFAULT_TIMEZONE, zone
from server.retention import apply_retention
from server.settings import Settings
from server.store import Store

COMMANDS = ("member", "purge")
PROGRESS_MIN_ROWS = 1000  # a progress bar on stderr for files at least this long
MAX_ERRORS_SHOWN = 50
RESTART_NOTE = (
    "a running server sends the units their new access lists once restarted "
    "(systemctl restart telecentre-server)"
)

T = TypeVar("T")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    member = sub.add_parser("member", help="members: add, list, import, export, erase")
    msub = member.add_subparsers(dest="member_command", required=True)
    add = msub.add_parser("add", help="create a member")
    add.add_argument("name")
    add.add_argument("--email")
    add.add_argument(
        "--centre", action="append", default=[], help="a centre (repeat; none: every centre)"
    )
    add.add_argument("--valid-from", help="first day, YYYY-MM-DD or DD/MM/YYYY")
    add.add_argument("--valid-until", help="last day included")
    add.add_argument("--timezone", default=DEFAULT_TIMEZONE, help="of the dates")
    listing = msub.add_parser("list", help="every member: id, name, e-mail, centres, validity")
    listing.add_argument("--timezone", default=DEFAULT_TIMEZONE, help="of the dates shown")
    load = msub.add_parser(
        "import",
        help="add members from a CSV file (columns name,email,valid_from,valid_until,"
        "centres,badge_uid); a file with any error is refused whole",
    )
    load.add_argument("file", type=Path)
    load.add_argument("--timezone", default=DEFAULT_TIMEZONE, help="of the dates")
    load.add_argument("--check", action="store_true", help="check the file, import nothing")
    export = msub.add_parser("export", help="everything stored about a member, as JSON")
    export.add_argument("member_id", type=int)
    export.add_argument("--output", type=Path, help="write there (mode 0600), not to stdout")
    erase = msub.add_parser("erase", help="erase a member's personal data (cannot be undone)")
    erase.add_argument("member_id", type=int)
    erase.add_argument("--yes", action="store_true", help="confirm the erasure")
    sub.add_parser("purge", help="apply the retention now and print what was removed")


def cli_actor() -> str:
    """``cli:<unix user>``: who made a change on the command line."""
    try:
        return f"{CLI_ACTOR}:{getpass.getuser()}"
    except (OSError, KeyError):
        return CLI_ACTOR


def run(args: argparse.Namespace, settings: Settings | None = None) -> int:
    settings = settings or Settings.from_env()
    store = Store(settings.store_location)
    try:
        if args.command == "purge":
            return _purge(store, settings)
        return COMMAND_RUNNERS[args.member_command](store, settings, args)
    except (TelecentreError, ValueError, LookupError, OSError) as exc:
        print(f"telecentre-server: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()


def _audit(store: Store, action: str, member_id: int | None, **after: Any) -> None:
    store.audit(
        AuditEvent(
            cli_actor(),
            action,
            "member",
            None if member_id is None else str(member_id),
            time.time(),
            after=after or None,
        )
    )


def _known_centres(store: Store) -> set[str]:
    return {c["id"] for c in store.centres()}


def _add(store: Store, settings: Settings, args: argparse.Namespace) -> int:
    tz = zone(args.timezone)
    fields: dict[str, Any] = {"name": args.name.strip()}
    if not fields["name"] or len(fields["name"]) > member_import.MAX_NAME:
        raise ValueError(f"name: 1 to {member_import.MAX_NAME} characters")
    if args.email:
        fields["email"] = member_import.parse_email(args.email)
    if args.centre:
        fields["centres"] = member_import.parse_centres(
            " ".join(args.centre), _known_centres(store)
        )
    if args.valid_from:
        fields["valid_from"] = member_import.day_start(
            member_import.parse_date(args.valid_from), tz
        )
    if args.valid_until:
        fields["valid_until"] = member_import.day_end(
            member_import.parse_date(args.valid_until), tz
        )
    if fields.get("valid_until", float("inf")) <= fields.get("valid_from", float("-inf")):
        raise ValueError("--valid-until: before --valid-from")
    member = store.create_member(fields)
    store.audit(
        AuditEvent(
            cli_actor(),
            "member.created",
            "member",
            str(member["id"]),
            time.time(),
            after={k: v for k, v in member.items() if k != "badges"},
        )
    )
    print(f"member {member['id']} created")
    return 0


def _day(ts: float | None, tz: Any, *, end: bool = False) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts - 1 if end else ts, tz).date().isoformat()


def _list(store: Store, settings: Settings, args: argparse.Namespace) -> int:
    tz = zone(args.timezone)
    offset = 0
    while True:
        total, items = store.members(limit=1000, offset=offset)
        for m in items:
            centres = ",".join(m["centres"]) if m["centres"] is not None else "*"
            validity = f"{_day(m['valid_from'], tz)}..{_day(m['valid_until'], tz, end=True)}"
            state = "active" if m["active"] else "inactive"
            print(
                f"{m['id']:>7} {m['name']:<30} {m['email'] or '-':<32} {centres:<24} "
                f"{validity:<22} {state}"
            )
        offset += len(items)
        if not items or offset >= total:
            return 0


def _import(store: Store, settings: Settings, args: argparse.Namespace) -> int:
    path: Path = args.file
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not UTF-8 text (save it as CSV UTF-8)") from None
    lines = text.count("\n")

    def progress(rows: Iterable[T]) -> Iterable[T]:
        return tqdm(
            rows,
            total=lines,
            unit="row",
            desc=f"checking {path.name}",
            file=sys.stderr,
            disable=lines < PROGRESS_MIN_ROWS,
        )

    rows, errors = member_import.parse(
        text, known_centres=_known_centres(store), tz=zone(args.timezone), progress=progress
    )
    hashes: dict[int, str] = {}
    if not errors and any(r.uid for r in rows):
        from server.runtime import read_badge_key

        key = read_badge_key(settings)
        for r in rows:
            if r.uid is not None:
                hashes[r.row] = badge_hash(key, r.uid)
                if store.badge_record(hashes[r.row]) is not None:
                    errors.append(
                        member_import.RowError(r.row, "badge_uid", "this card is already enrolled")
                    )
    if errors:
        print(f"{path}: {len(errors)} errors, nothing imported:", file=sys.stderr)
        for error in errors[:MAX_ERRORS_SHOWN]:
            print(f"  {error}", file=sys.stderr)
        if len(errors) > MAX_ERRORS_SHOWN:
            print(f"  ... and {len(errors) - MAX_ERRORS_SHOWN} more", file=sys.stderr)
        return 1
    if args.check:
        print(f"{path}: {len(rows)} members, no error (nothing imported: --check)")
        return 0
    count = store.import_members(
        {**r.fields(), **({"badge_hash": hashes[r.row]} if r.row in hashes else {})} for r in rows
    )
    _audit(store, "member.imported", None, count=count, badges=len(hashes), file=path.name)
    print(f"{count} members imported ({len(hashes)} with a card)")
    if hashes:
        print(RESTART_NOTE)
    return 0


def _export(store: Store, settings: Settings, args: argparse.Namespace) -> int:
    data = store.member_export(args.member_id)
    out = {"exported_at": time.time(), **data}
    text = json.dumps(out, ensure_ascii=False, indent=2) + "\n"
    if args.output is not None:
        fd = os.open(args.output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    _audit(
        store,
        "member.exported",
        args.member_id,
        **{key: len(value) for key, value in data.items() if isinstance(value, list)},
    )
    if args.output is not None:
        print(f"member {args.member_id} exported to {args.output} (mode 0600)")
    return 0


def _erase(store: Store, settings: Settings, args: argparse.Namespace) -> int:
    store.member(args.member_id)  # an unknown member is named before --yes is asked
    if not args.yes:
        print(
            f"telecentre-server: erasing member {args.member_id} cannot be undone: "
            "add --yes to confirm",
            file=sys.stderr,
        )
        return 1
    removed = store.erase_member(args.member_id, now=time.time(), forget_lists=True)
    _audit(store, "member.erased", args.member_id, removed=removed)
    print(f"member {args.member_id} erased:")
    for table, count in removed.items():
        print(f"  {table:<16} {count}")
    print(RESTART_NOTE)
    return 0


def _purge(store: Store, settings: Settings) -> int:
    removed = apply_retention(store, settings, actor=cli_actor(), now=time.time())
    print(
        f"retention: events and unknown cards {settings.event_retention_days} days, "
        f"visits and day credits {settings.visit_retention_days} days"
    )
    for table, count in removed.items():
        print(f"  {table:<16} {count}")
    return 0


COMMAND_RUNNERS = {
    "add": _add,
    "list": _list,
    "import": _import,
    "export": _export,
    "erase": _erase,
}
