"""The broker's accounts from the registry: ``device add|revoke|list`` and ``worker
add|remove|list``.

The server's own account takes its password from ``mqtt_password_file`` (made here, 0600,
when it does not exist yet); each unit's from the hash stored by ``device add``; each
further server worker's (a share group, docs/performance.md) from the hash stored by
``worker add``, so that every regeneration of the files keeps every account. Each server
account comes with its events receiver's (``<name>.ingest``, the same password).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from server.broker.files import reload_broker, write_access_files
from server.domain import broker_access
from server.domain.broker_access import Grant
from server.settings import Settings, SettingsError
from server.store import Store

DEFAULT_SERVER_USERNAME = "telecentre-server"


@dataclass(frozen=True)
class NewDevice:
    device_id: str
    centre_id: str
    password: str  # shown once, never stored


def server_password(settings: Settings, *, create: bool = False) -> str:
    """The server's broker password, from ``mqtt_password_file``."""
    path = settings.mqtt_password_file
    if not settings.mqtt_username or path is None:
        raise SettingsError(
            "the server's broker account needs TELECENTRE_MQTT_USERNAME and "
            "TELECENTRE_MQTT_PASSWORD_FILE"
        )
    if create and not path.exists():
        write_secret(path, broker_access.new_password() + "\n")
    try:
        return path.read_text().strip()
    except OSError as exc:
        raise SettingsError(f"mqtt_password_file: cannot read {path} ({exc.strerror})") from None


def write_secret(path: Path, text: str) -> None:
    """A new file only its owner can read (mode 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)


def grants(store: Store, settings: Settings) -> list[Grant]:
    password = server_password(settings, create=True)
    assert settings.mqtt_username is not None
    out = broker_access.server_grants(settings.mqtt_username, broker_access.hash_password(password))
    workers = {row["username"]: row["password_hash"] for row in store.server_accounts()}
    workers.pop(settings.mqtt_username, None)  # the first account's password is its file's
    for name, hashed in workers.items():
        out += broker_access.server_grants(name, hashed)
    for row in store.device_credentials():
        if row["device_id"] == settings.mqtt_username or row["device_id"] in workers:
            continue  # never let a unit named like a server account shadow it
        out.append(
            broker_access.unit_grant(row["device_id"], row["centre_id"], row["password_hash"])
        )
    return out


def regenerate(store: Store, settings: Settings) -> str:
    """Write the password file and the ACL from the registry, reload the broker; returns
    what the reload did."""
    write_access_files(
        grants(store, settings), settings.broker_password_file, settings.broker_acl_file
    )
    return reload_broker(settings.broker_pid_file)


def add_device(store: Store, settings: Settings, device_id: str, centre_id: str) -> NewDevice:
    """Register the unit with a new random password (only its hash is kept)."""
    from protocol.topics import validate_device_id

    validate_device_id(device_id)
    if device_id == settings.mqtt_username or any(
        row["username"] == device_id for row in store.server_accounts()
    ):
        raise SettingsError(f"{device_id!r} is a server's broker account: pick another id")
    password = broker_access.new_password()
    store.register_device(device_id, centre_id, broker_access.hash_password(password))
    return NewDevice(device_id, centre_id, password)


def add_server_worker(store: Store, settings: Settings, username: str, password_file: Path) -> bool:
    """Another server worker's account, with a new random password written to
    ``password_file`` (mode 0600: that worker's ``TELECENTRE_MQTT_PASSWORD_FILE``); only
    its hash is kept. Returns whether the account existed (its old password no longer
    works once the broker reloads)."""
    broker_access.check_username(username)
    if username.endswith(broker_access.INGEST_SUFFIX):
        raise SettingsError(
            f"{username!r}: names ending in {broker_access.INGEST_SUFFIX!r} are the events "
            "receivers' accounts: name the worker without it"
        )
    if username == settings.mqtt_username:
        raise SettingsError(
            f"{username!r} is this server's own account (TELECENTRE_MQTT_USERNAME): "
            "name the other worker"
        )
    if store.device_known(username):
        raise SettingsError(f"{username!r} is a unit's id: pick another worker name")
    existed = any(row["username"] == username for row in store.server_accounts())
    password = broker_access.new_password()
    write_secret(password_file, password + "\n")  # first: a stored hash is never orphaned
    store.add_server_account(username, broker_access.hash_password(password))
    return existed
