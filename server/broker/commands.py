"""``telecentre-server device add|revoke|list``, ``worker add|remove|list``, ``tls init``
and ``broker config``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from protocol.errors import TelecentreError
from server.settings import Settings

COMMANDS = ("device", "worker", "tls", "broker")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    device = sub.add_parser("device", help="units and their broker accounts")
    dsub = device.add_subparsers(dest="device_command", required=True)
    add = dsub.add_parser(
        "add",
        help="register a unit with a new broker password (shown once), regenerate the "
        "broker's password file and ACL, reload the broker",
    )
    add.add_argument("device_id")
    add.add_argument("--centre", required=True, help="the centre id (it must exist)")
    add.add_argument(
        "--credentials-file",
        type=Path,
        help="write the credentials there (mode 0600, for provisioning) instead of printing",
    )
    revoke = dsub.add_parser(
        "revoke", help="remove a unit's broker account, regenerate the files, reload"
    )
    revoke.add_argument("device_id")
    dsub.add_parser("list", help="units, their centre and whether they have a broker account")
    worker = sub.add_parser(
        "worker", help="broker accounts of further server workers (a share group)"
    )
    wsub = worker.add_subparsers(dest="worker_command", required=True)
    wadd = wsub.add_parser(
        "add",
        help="a server worker's broker account with a new password written to a file, "
        "regenerate the broker's password file and ACL, reload the broker",
    )
    wadd.add_argument("username", help="the worker's broker user name (also its client id)")
    wadd.add_argument(
        "--password-file",
        type=Path,
        required=True,
        help="where to write the password (mode 0600): that worker's TELECENTRE_MQTT_PASSWORD_FILE",
    )
    wremove = wsub.add_parser(
        "remove", help="remove a server worker's broker account, regenerate the files, reload"
    )
    wremove.add_argument("username")
    wsub.add_parser("list", help="the server's broker accounts")
    tls = sub.add_parser("tls", help="TLS material for the broker")
    tsub = tls.add_subparsers(dest="tls_command", required=True)
    init = tsub.add_parser("init", help="make a private CA and the broker's certificate")
    init.add_argument("--dir", type=Path, required=True, dest="directory")
    init.add_argument(
        "--host",
        action="append",
        required=True,
        help="name or address clients connect to (repeat for several)",
    )
    broker = sub.add_parser("broker", help="the broker's configuration")
    bsub = broker.add_subparsers(dest="broker_command", required=True)
    conf = bsub.add_parser("config", help="print mosquitto.conf rendered with this site's paths")
    conf.add_argument("--tls-dir", type=Path, required=True, help="where `tls init` wrote")
    conf.add_argument("--port", type=int, default=8883)
    conf.add_argument("--persistence-dir", type=Path, default=Path("/var/lib/mosquitto"))
    bsub.add_parser(
        "sync",
        help="regenerate the broker's password file and ACL from the registry and reload the "
        "broker (after an upgrade that adds accounts, such as the events receiver's)",
    )


def run(args: argparse.Namespace) -> int:
    try:
        if args.command == "device":
            return _device(args)
        if args.command == "worker":
            return _worker(args)
        if args.command == "tls":
            return _tls(args)
        if args.broker_command == "sync":
            return _broker_sync()
        return _broker_config(args)
    except TelecentreError as exc:
        print(f"telecentre-server: {exc}", file=sys.stderr)
        return 1


def _device(args: argparse.Namespace) -> int:
    from server.broker import registry
    from server.store import Store
    from server.store.errors import NotFound

    settings = Settings.from_env()
    store = Store(settings.store_location)
    try:
        if args.device_command == "list":
            accounts = {row["device_id"] for row in store.device_credentials()}
            for unit in store.devices():
                account = "broker account" if unit["device_id"] in accounts else "no account"
                print(f"{unit['device_id']:<24} {unit['centre_id'] or '-':<20} {account}")
            return 0
        if args.device_command == "add":
            registry.server_password(settings, create=True)  # fail before registering
            try:
                store.centre(args.centre)
            except NotFound:
                known = ", ".join(c["id"] for c in store.centres()) or "none yet"
                print(
                    f"telecentre-server: no centre {args.centre!r} (known: {known})",
                    file=sys.stderr,
                )
                return 1
            new = registry.add_device(store, settings, args.device_id, args.centre)
            outcome = registry.regenerate(store, settings)
            creds = {
                "device_id": new.device_id,
                "centre": new.centre_id,
                "mqtt_username": new.device_id,
                "mqtt_password": new.password,
            }
            if args.credentials_file:
                registry.write_secret(args.credentials_file, json.dumps(creds, indent=2) + "\n")
                print(
                    f"unit {new.device_id} added to {new.centre_id}; credentials in "
                    f"{args.credentials_file} (mode 0600)"
                )
            else:
                print(f"unit {new.device_id} added to {new.centre_id}")
                print(f"  mqtt username: {new.device_id}")
                print(f"  mqtt password: {new.password}")
                print("  (shown once: put it in the unit's mqtt.password_file)")
            print(outcome)
            return 0
        try:
            removed = store.revoke_device_credentials(args.device_id)
        except NotFound:
            print(f"telecentre-server: no unit {args.device_id!r}", file=sys.stderr)
            return 1
        outcome = registry.regenerate(store, settings)
        print(
            f"unit {args.device_id}: broker account removed"
            if removed
            else f"unit {args.device_id} had no broker account"
        )
        print(outcome)
        return 0
    finally:
        store.close()


def _worker(args: argparse.Namespace) -> int:
    from server.broker import registry
    from server.store import Store

    settings = Settings.from_env()
    registry.server_password(settings, create=True)  # this server's own account first
    store = Store(settings.store_location)
    try:
        if args.worker_command == "list":
            print(f"{settings.mqtt_username:<32} this server (TELECENTRE_MQTT_USERNAME)")
            for row in store.server_accounts():
                print(f"{row['username']:<32} another worker")
            return 0
        if args.worker_command == "add":
            existed = registry.add_server_worker(store, settings, args.username, args.password_file)
            outcome = registry.regenerate(store, settings)
            print(
                f"server worker {args.username}: new password, the old one no longer works"
                if existed
                else f"server worker {args.username}: broker account added"
            )
            print(f"  password in {args.password_file} (mode 0600); on that worker set")
            print(f"  TELECENTRE_MQTT_USERNAME={args.username}")
            print(f"  TELECENTRE_MQTT_CLIENT_ID={args.username}")
            print(f"  TELECENTRE_MQTT_PASSWORD_FILE={args.password_file}")
            print("  TELECENTRE_MQTT_SHARE_GROUP and TELECENTRE_DATABASE_URL as on the others")
            print(outcome)
            return 0
        if not store.remove_server_account(args.username):
            known = ", ".join(r["username"] for r in store.server_accounts()) or "none"
            print(
                f"telecentre-server: no server worker account {args.username!r} (known: {known})",
                file=sys.stderr,
            )
            return 1
        outcome = registry.regenerate(store, settings)
        print(f"server worker {args.username}: broker account removed")
        print(outcome)
        return 0
    finally:
        store.close()


def _broker_sync() -> int:
    from server.broker import registry
    from server.store import Store

    settings = Settings.from_env()
    store = Store(settings.store_location)
    try:
        units = {row["device_id"] for row in store.device_credentials()}
        servers = [g.username for g in registry.grants(store, settings) if g.username not in units]
        outcome = registry.regenerate(store, settings)
    finally:
        store.close()
    print(f"broker files written: {len(units)} units, server accounts {', '.join(servers)}")
    print(outcome)
    return 0


def _tls(args: argparse.Namespace) -> int:
    from server.broker.tls import make_tls

    files = make_tls(args.directory, args.host)
    print(f"CA certificate   {files.ca_cert}  (copy to every unit's mqtt.ca_file)")
    print(f"CA key           {files.ca_key}  (keep offline; it signs new certificates)")
    print(f"broker cert/key  {files.cert}, {files.key}  (readable by the mosquitto user)")
    return 0


def _broker_config(args: argparse.Namespace) -> int:
    from server.broker.files import BrokerPaths, render_config
    from server.broker.tls import TlsFiles

    settings = Settings.from_env()
    tls = TlsFiles.in_dir(args.tls_dir.resolve())
    paths = BrokerPaths(
        password_file=settings.broker_password_file.resolve(),
        acl_file=settings.broker_acl_file.resolve(),
        ca_file=tls.ca_cert,
        cert_file=tls.cert,
        key_file=tls.key,
        pid_file=settings.broker_pid_file or Path("/run/mosquitto/mosquitto.pid"),
        persistence_dir=args.persistence_dir,
        port=args.port,
    )
    sys.stdout.write(render_config(paths))
    return 0
