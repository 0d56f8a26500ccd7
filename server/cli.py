"""``telecentre-server``: serve the API and bridge, run the demo, or make a badge key."""

from __future__ import annotations

import argparse
import logging
import secrets
import sys
from pathlib import Path

from protocol.badges import key_fingerprint
from protocol.workers import freeze_startup_objects
from server import backup_commands, envfile, member_commands, plan_commands
from server import reports_cli as report_commands
from server.auth import cli as auth_commands
from server.broker import commands as broker_commands
from server.settings import Settings, SettingsError
from server.store.errors import SchemaTooNew


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="telecentre-server", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true")
    parser.add_argument(
        "--env-file",
        type=Path,
        help="read TELECENTRE_* settings from this file first, e.g. /etc/telecentre/server.env "
        "(variables already set win)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the server (settings from TELECENTRE_* variables)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--ssl-certfile", type=Path, help="serve HTTPS itself: certificate (PEM)")
    serve.add_argument("--ssl-keyfile", type=Path, help="serve HTTPS itself: private key (PEM)")
    demo = sub.add_parser("demo", help="broker + server + three simulated centres")
    demo.add_argument("--port", type=int, default=8000)
    demo.add_argument(
        "--day-seconds",
        type=float,
        default=240.0,
        help="real seconds for one simulated opening day",
    )
    key = sub.add_parser("init-key", help="write a new badge HMAC key file (refuses to overwrite)")
    key.add_argument("path", type=Path)
    fingerprint = sub.add_parser(
        "badge-key-fingerprint",
        help="print the badge key's fingerprint (a unit's badge_key_fingerprint)",
    )
    fingerprint.add_argument(
        "path", type=Path, nargs="?", help="the key file (default: the badge_key_file setting)"
    )
    signing = sub.add_parser(
        "init-signing-key",
        help="write the server's Ed25519 signing key (refuses to overwrite); print its public key",
    )
    signing.add_argument("path", type=Path)
    sub.add_parser("settings", help="list every setting with its default and meaning")
    auth_commands.add_parsers(sub)
    broker_commands.add_parsers(sub)
    member_commands.add_parsers(sub)
    plan_commands.add_parsers(sub)
    report_commands.add_parsers(sub)
    backup_commands.add_parsers(sub)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    try:
        if args.env_file is not None:
            envfile.load(args.env_file)
        if args.command == "serve":
            return serve_command(args)
        if args.command == "demo":
            from server import demo as demo_module

            return demo_module.run(http_port=args.port, day_seconds=args.day_seconds)
        if args.command == "init-key":
            return init_key(args.path)
        if args.command == "badge-key-fingerprint":
            return print_fingerprint(args.path)
        if args.command == "init-signing-key":
            return init_signing_key(args.path)
        if args.command in auth_commands.COMMANDS:
            return auth_commands.run(args)
        if args.command in broker_commands.COMMANDS:
            return broker_commands.run(args)
        if args.command in plan_commands.COMMANDS:
            return plan_commands.run(args)
        if args.command in member_commands.COMMANDS:
            return member_commands.run(args)
        if args.command in report_commands.COMMANDS:
            return report_commands.run(args)
        if args.command in backup_commands.COMMANDS:
            return backup_commands.run(args)
        for name, default, help_text in Settings.documentation():
            print(f"TELECENTRE_{name.upper():<22} default {str(default):<20} {help_text}")
        return 0
    except (SettingsError, SchemaTooNew) as exc:
        print(f"telecentre-server: {exc}", file=sys.stderr)
        return 2


def serve_command(args: argparse.Namespace) -> int:
    import uvicorn

    from server.app import create_app
    from server.runtime import read_badge_key, read_signing_key

    settings = Settings.from_env()
    read_badge_key(settings)  # fail here, with the reason, not inside the lifespan
    read_signing_key(settings)
    check_schema(settings)
    if (args.ssl_certfile is None) != (args.ssl_keyfile is None):
        raise SettingsError("serve: --ssl-certfile and --ssl-keyfile go together")
    tls = {}
    if args.ssl_certfile is not None:
        for path in (args.ssl_certfile, args.ssl_keyfile):
            if not path.is_file():
                raise SettingsError(f"serve: {path}: no such file")
        tls = {"ssl_certfile": str(args.ssl_certfile), "ssl_keyfile": str(args.ssl_keyfile)}
    app = create_app(settings)
    freeze_startup_objects()
    uvicorn.run(app, host=args.host, port=args.port, **tls)
    return 0


def check_schema(settings: Settings) -> None:
    """Refuse to start on a database a newer server migrated (before uvicorn starts)."""
    if settings.database_url or not settings.db_path.exists():
        return  # PostgreSQL: the store checks its schema when it opens
    from server.store.sqlite.migrations import migrations
    from server.store.sqlite.writer import connect

    db = connect(settings.db_path)
    try:
        migrations.check(db, settings.db_path)
    finally:
        db.close()


def init_key(path: Path) -> int:
    if path.exists():
        print(f"{path} exists: a new key would lock out every enrolled badge", file=sys.stderr)
        return 1
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    key = secrets.token_hex(32)
    path.write_text(key + "\n")
    print(
        f"wrote {path}: copy it to every unit's badge_key_file, keep it out of backups of "
        f"the database; its fingerprint (a unit's badge_key_fingerprint) is "
        f"{key_fingerprint(bytes.fromhex(key))}"
    )
    return 0


def print_fingerprint(path: Path | None) -> int:
    from server.runtime import read_badge_key

    settings = Settings() if path is None else Settings(badge_key_file=path)
    print(key_fingerprint(read_badge_key(settings)))
    return 0


def init_signing_key(path: Path) -> int:
    from protocol.signing import Signer

    if path.exists():
        print(
            f"{path} exists: a new key would make every unit refuse the server until its "
            "config lists the new public key",
            file=sys.stderr,
        )
        return 1
    signer = Signer.generate()
    signer.write(path)
    print(f"wrote {path} (keep it out of backups of the database)")
    print("public key, for server_public_keys in every unit's config:")
    print(signer.public_hex)
    return 0


if __name__ == "__main__":
    sys.exit(main())
