"""``telecentre-server plan add|list|give`` and ``badge enrol|revoke|replace``: the plans and
badges API for admins on the server's own command line, on the configured data dir.

Every change is audited with the actor ``cli:<unix user>``. As with ``member``, a running
server sends the units their new lists once restarted (docs/operations.md).
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from protocol.badges import badge_hash, parse_uid
from protocol.errors import TelecentreError
from server.domain import member_import
from server.domain.audit import AuditEvent
from server.domain.privacy import DEFAULT_TIMEZONE, zone
from server.member_commands import RESTART_NOTE, cli_actor
from server.settings import Settings
from server.store import Store

COMMANDS = ("plan", "badge")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    plan = sub.add_parser("plan", help="the plan catalogue and the plans members hold")
    psub = plan.add_subparsers(dest="plan_command", required=True)
    add = psub.add_parser("add", help="add a plan to the catalogue")
    add.add_argument("name")
    add.add_argument("--kind", choices=("subscription", "day_pass", "trial"), required=True)
    add.add_argument("--days", type=int, help="days of a book or a trial")
    add.add_argument("--duration-days", type=int, help="how long a member holds it")
    add.add_argument("--hours", choices=("always", "opening", "window"), default="opening")
    add.add_argument(
        "--window",
        action="append",
        default=[],
        metavar="WEEKDAY,HH:MM,HH:MM",
        help="a weekly window row (Monday = 0); repeat",
    )
    add.add_argument("--centre", action="append", default=[], help="repeat; none: every centre")
    psub.add_parser("list", help="the catalogue")
    give = psub.add_parser("give", help="give a member a plan from the catalogue")
    give.add_argument("member_id", type=int)
    give.add_argument("plan_id", type=int)
    give.add_argument("--valid-from", help="first day, YYYY-MM-DD or DD/MM/YYYY (default: now)")
    give.add_argument("--valid-until", help="last day included")
    give.add_argument("--timezone", default=DEFAULT_TIMEZONE, help="of the dates")
    badge = sub.add_parser("badge", help="members' badges: enrol, revoke, replace a lost one")
    bsub = badge.add_subparsers(dest="badge_command", required=True)
    enrol = bsub.add_parser("enrol", help="enrol a card (its UID as printed) to a member")
    enrol.add_argument("member_id", type=int)
    enrol.add_argument("uid")
    enrol.add_argument("--label")
    revoke = bsub.add_parser("revoke", help="revoke a badge")
    revoke.add_argument("badge_id", type=int)
    replace = bsub.add_parser("replace", help="a lost badge: revoke it, enrol the new card")
    replace.add_argument("badge_id", type=int)
    replace.add_argument("uid")
    replace.add_argument("--label")


def run(args: argparse.Namespace, settings: Settings | None = None) -> int:
    settings = settings or Settings.from_env()
    store = Store(settings.store_location)
    try:
        if args.command == "plan":
            return PLAN_RUNNERS[args.plan_command](store, settings, args)
        return BADGE_RUNNERS[args.badge_command](store, settings, args)
    except (TelecentreError, ValueError, LookupError, OSError) as exc:
        print(f"telecentre-server: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()


def _audit(store: Store, action: str, kind: str, target: int, **values: Any) -> None:
    store.audit(AuditEvent(cli_actor(), action, kind, str(target), time.time(), **values))


def _minute(text: str) -> int:
    hours, _, minutes = text.partition(":")
    value = int(hours) * 60 + int(minutes or 0)
    if not 0 <= value <= 1440:
        raise ValueError(f"{text!r} is not a time of day")
    return value


def _window_row(text: str) -> list[int]:
    try:
        weekday, start, end = text.split(",")
        row = [int(weekday), _minute(start), _minute(end)]
    except ValueError:
        raise ValueError(f"--window {text!r}: expected WEEKDAY,HH:MM,HH:MM (Monday = 0)") from None
    if not 0 <= row[0] <= 6 or row[1] >= row[2]:
        raise ValueError(f"--window {text!r}: weekday 0-6, and start before end")
    return row


def _plan_add(store: Store, settings: Settings, args: argparse.Namespace) -> int:
    if (args.kind == "subscription") != (args.days is None):
        raise ValueError("--days: required for a day_pass or a trial, refused for a subscription")
    window = [_window_row(w) for w in args.window]
    if (args.hours == "window") != bool(window):
        raise ValueError("--window: required with --hours window, and only then")
    known = {c["id"] for c in store.centres()}
    for centre in args.centre:
        if centre not in known:
            raise ValueError(f"--centre: no centre {centre!r}")
    plan = store.create_plan(
        {
            "name": args.name,
            "kind": args.kind,
            "days": args.days,
            "duration_days": args.duration_days,
            "centres": args.centre or None,
            "hours": args.hours,
            "window": window,
        }
    )
    _audit(store, "plan.created", "plan", plan["id"], after=plan)
    print(f"plan {plan['id']} created")
    return 0


def _plan_list(store: Store, settings: Settings, args: argparse.Namespace) -> int:
    for p in store.plans():
        days = p["days"] if p["days"] is not None else "-"
        centres = ",".join(p["centres"]) if p["centres"] else "*"
        print(f"{p['id']:>5} {p['name']:<30} {p['kind']:<13} {days!s:>5} {p['hours']:<8} {centres}")
    return 0


def _plan_give(store: Store, settings: Settings, args: argparse.Namespace) -> int:
    tz = zone(args.timezone)
    valid_from = (
        member_import.day_start(member_import.parse_date(args.valid_from), tz)
        if args.valid_from
        else time.time()
    )
    valid_until = (
        member_import.day_end(member_import.parse_date(args.valid_until), tz)
        if args.valid_until
        else None
    )
    if valid_until is not None and valid_until <= valid_from:
        raise ValueError("--valid-until: before --valid-from")
    store.member(args.member_id)  # NotFound names the member
    store.plan(args.plan_id)
    held = store.give_plan(args.member_id, args.plan_id, valid_from, valid_until)
    _audit(store, "plan.given", "member", args.member_id, after=held)
    print(f"member {args.member_id} holds plan {held['name']!r} (#{held['id']}); {RESTART_NOTE}")
    return 0


def _hash(settings: Settings, uid: str) -> str:
    from server.runtime import read_badge_key

    return badge_hash(read_badge_key(settings), parse_uid(uid))


def _enrol(store: Store, settings: Settings, args: argparse.Namespace) -> int:
    store.member(args.member_id)
    badge = store.enrol_badge(args.member_id, _hash(settings, args.uid), args.label)
    _audit(
        store,
        "badge.enrolled",
        "badge",
        badge["id"],
        after={"member_id": args.member_id, "label": badge["label"]},
    )
    print(f"badge {badge['id']} enrolled to member {args.member_id}; {RESTART_NOTE}")
    return 0


def _revoke(store: Store, settings: Settings, args: argparse.Namespace) -> int:
    before = store.badge(args.badge_id)
    badge = store.revoke_badge(args.badge_id)
    _audit(
        store,
        "badge.revoked",
        "badge",
        args.badge_id,
        before={"revoked_at": before["revoked_at"]},
        after={"revoked_at": badge["revoked_at"], "member_id": badge["member_id"]},
    )
    print(f"badge {args.badge_id} revoked; {RESTART_NOTE}")
    return 0


def _replace(store: Store, settings: Settings, args: argparse.Namespace) -> int:
    lost = store.badge(args.badge_id)
    badge = store.replace_badge(args.badge_id, _hash(settings, args.uid), args.label)
    _audit(
        store,
        "badge.replaced",
        "badge",
        args.badge_id,
        before={"badge": args.badge_id, "revoked_at": lost["revoked_at"]},
        after={"revoked": args.badge_id, "new_badge": badge["id"], "member_id": lost["member_id"]},
    )
    print(f"badge {args.badge_id} revoked, badge {badge['id']} enrolled; {RESTART_NOTE}")
    return 0


PLAN_RUNNERS = {"add": _plan_add, "list": _plan_list, "give": _plan_give}
BADGE_RUNNERS = {"enrol": _enrol, "revoke": _revoke, "replace": _replace}
