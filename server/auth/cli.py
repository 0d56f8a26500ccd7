"""``telecentre-server operator …`` and ``token create``: accounts made on the server's
own command line, where the first admin comes from (there is no default password)."""

from __future__ import annotations

import argparse
import getpass
import sys
import time
from pathlib import Path

from protocol.errors import TelecentreError
from server.auth import service
from server.domain.audit import CLI_ACTOR
from server.domain.operators import ROLES
from server.settings import Settings
from server.store import Store

COMMANDS = ("operator", "token")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    operator = sub.add_parser("operator", help="operators: add, list, disable, reset-password")
    ops = operator.add_subparsers(dest="operator_command", required=True)
    add = ops.add_parser("add", help="create an operator (asks the password twice)")
    add.add_argument("login")
    add.add_argument("--name", help="full name (default: the login)")
    add.add_argument("--role", choices=ROLES, required=True)
    add.add_argument(
        "--centre", action="append", default=[], help="a manager's centre (repeat for several)"
    )
    add.add_argument("--password-file", type=Path, help="read the password from this file")
    ops.add_parser("list", help="every operator with role, centres and state")
    disable = ops.add_parser("disable", help="disable an account: sessions and tokens stop")
    disable.add_argument("login")
    reset = ops.add_parser("reset-password", help="set a new password; sessions end")
    reset.add_argument("login")
    reset.add_argument("--password-file", type=Path)
    token = sub.add_parser("token", help="personal API tokens")
    tokens = token.add_subparsers(dest="token_command", required=True)
    create = tokens.add_parser("create", help="make an API token and print it once")
    create.add_argument("--operator", required=True, help="the operator's login")
    create.add_argument("--days", type=int, default=90)
    create.add_argument("--name", default="cli", help="what the token is for")


def read_password(path: Path | None) -> str:
    """From ``--password-file`` (its first line), else typed twice on a terminal."""
    if path is not None:
        lines = path.read_text().splitlines()
        if not lines or not lines[0]:
            raise ValueError(f"{path}: empty password file")
        return lines[0]
    if not sys.stdin.isatty():
        raise ValueError("no terminal to type the password on: pass --password-file")
    first = getpass.getpass("Mot de passe / password: ")
    if getpass.getpass("Encore une fois / again: ") != first:
        raise ValueError("the two passwords differ")
    return first


def run(args: argparse.Namespace, settings: Settings | None = None) -> int:
    settings = settings or Settings.from_env()
    store = Store(settings.store_location)
    try:
        return _run(store, settings, args)
    except (TelecentreError, ValueError, LookupError, OSError) as exc:
        print(f"telecentre-server: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()


def _run(store: Store, settings: Settings, args: argparse.Namespace) -> int:
    now = time.time()
    if args.command == "token":
        operator = store.operator_by_login(args.operator)
        token, record = service.create_token(
            store,
            settings,
            operator,
            name=args.name,
            days=args.days,
            actor=CLI_ACTOR,
            address=None,
            now=now,
        )
        print(f"token {record['id']} for {operator.login}, valid {args.days} days (shown once):")
        print(token)
        return 0
    command = args.operator_command
    if command == "add":
        operator = service.create_operator(
            store,
            login=args.login,
            name=args.name or args.login,
            role=args.role,
            centres=args.centre or None,
            password=read_password(args.password_file),
            actor=CLI_ACTOR,
            address=None,
            now=now,
        )
        print(f"operator {operator.login} ({operator.role}) created")
    elif command == "list":
        for op in store.operators():
            centres = ",".join(op.centres) if op.centres else "*"
            state = "disabled" if op.disabled else "active"
            print(f"{op.login:<24} {op.role:<8} {centres:<30} {state}")
    elif command == "disable":
        service.disable_operator(store, args.login, actor=CLI_ACTOR, address=None, now=now)
        print(f"operator {args.login} disabled; their sessions ended")
    elif command == "reset-password":
        operator = store.operator_by_login(args.login)
        service.set_password(
            store,
            operator,
            read_password(args.password_file),
            actor=CLI_ACTOR,
            address=None,
            now=now,
        )
        print(f"password of {args.login} replaced; their sessions ended")
    return 0
