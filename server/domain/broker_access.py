"""Who may do what on the broker: mosquitto's password file and ACL, from the registry.

Pure: the caller gives the registry's units (device id, centre, password hash) and the
server's account, and writes the text these functions return. Every topic filter comes
from ``protocol.topics``, so the ACL follows the contract: a unit writes only its edge ->
server leaves and reads only its server -> edge leaves, its centre's list and the server's
status; the server reads every unit's edge -> server leaves and writes the rest. ``read``
and ``write`` are separate lines, never ``readwrite``; a user not listed gets nothing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from protocol import topics
from protocol.errors import TelecentreError

# mosquitto_passwd's format: $7$ = PBKDF2-SHA512, 12-byte salt, 64-byte hash, base64.
PBKDF2_PREFIX = "$7$"
PBKDF2_ITERATIONS = 101  # mosquitto 2.0's own default; the passwords are 192 random bits
SALT_BYTES = 12
HASH_BYTES = 64


class BrokerAccessError(TelecentreError, ValueError):
    """A user name or password hash that cannot go into mosquitto's files."""


@dataclass(frozen=True)
class Grant:
    """One broker account: its password hash and the topic filters it may read and write."""

    username: str
    password_hash: str
    read: tuple[str, ...]
    write: tuple[str, ...]


def new_password() -> str:
    """A random password for a unit or the server (192 bits, URL-safe)."""
    return secrets.token_urlsafe(24)


def hash_password(
    password: str, *, salt: bytes | None = None, iterations: int = PBKDF2_ITERATIONS
) -> str:
    """The hash ``mosquitto_passwd`` would write for ``password``."""
    if not password or "\n" in password:
        raise BrokerAccessError("a broker password must be one non-empty line")
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, HASH_BYTES)
    return (
        f"{PBKDF2_PREFIX}{iterations}${base64.b64encode(salt).decode()}"
        f"${base64.b64encode(digest).decode()}"
    )


def verify_password(password_hash: str, password: str) -> bool:
    try:
        _, _, iterations, salt, digest = password_hash.split("$")
        expected = base64.b64decode(digest)
        got = hashlib.pbkdf2_hmac(
            "sha512", password.encode(), base64.b64decode(salt), int(iterations), len(expected)
        )
    except ValueError:
        return False
    return hmac.compare_digest(got, expected)


def _leaves(direction: topics.Direction, scope: topics.Scope) -> list[topics.TopicSpec]:
    return [s for s in topics.ALL_TOPICS if s.direction is direction and s.scope is scope]


def unit_grant(device_id: str, centre_id: str, password_hash: str) -> Grant:
    """A unit: writes its own edge -> server leaves; reads its own server -> edge leaves,
    its centre's access list and the server's status."""
    to_server = _leaves(topics.Direction.EDGE_TO_SERVER, topics.Scope.DEVICE)
    to_unit = _leaves(topics.Direction.SERVER_TO_EDGE, topics.Scope.DEVICE)
    centre = _leaves(topics.Direction.SERVER_TO_EDGE, topics.Scope.CENTRE)
    server = _leaves(topics.Direction.SERVER_TO_EDGE, topics.Scope.SERVER)
    return Grant(
        username=topics.validate_device_id(device_id),
        password_hash=password_hash,
        read=(
            *(topics.acl_filter(s, device_id) for s in to_unit),
            *(topics.acl_filter(s, centre_id) for s in centre),
            *(topics.acl_filter(s) for s in server),
        ),
        write=tuple(topics.acl_filter(s, device_id) for s in to_server),
    )


def server_grant(username: str, password_hash: str) -> Grant:
    """The server: reads every unit's edge -> server leaves (and its own status, which its
    ``telecentre/+/status`` subscription also matches); writes every server -> edge leaf."""
    reads = [s for s in topics.ALL_TOPICS if s.direction is topics.Direction.EDGE_TO_SERVER]
    writes = [s for s in topics.ALL_TOPICS if s.direction is topics.Direction.SERVER_TO_EDGE]
    return Grant(
        username=username,
        password_hash=password_hash,
        read=(
            *(topics.acl_filter(s) for s in reads),
            topics.acl_filter(topics.SERVER_STATUS),
        ),
        write=tuple(topics.acl_filter(s) for s in writes),
    )


INGEST_SUFFIX = ".ingest"  # never in a unit's id (a-z, 0-9 and '-')


def ingest_username(server_username: str) -> str:
    """The account of a server's events receiver (``server.mqtt.receiver``)."""
    return server_username + INGEST_SUFFIX


def ingest_grant(username: str, password_hash: str) -> Grant:
    """A server's events receiver: reads the units' events and writes their acks, nothing
    else (``server.mqtt.receiver``)."""
    return Grant(
        username=username,
        password_hash=password_hash,
        read=(topics.acl_filter(topics.EVENT),),
        write=(topics.acl_filter(topics.ACK),),
    )


def server_grants(username: str, password_hash: str) -> list[Grant]:
    """A server (or a worker of a share group) and its events receiver, which connects with
    the same password under its own name: the broker takes the user name as the client id,
    so two connections of one account would throw each other off."""
    return [
        server_grant(username, password_hash),
        ingest_grant(ingest_username(username), password_hash),
    ]


def check_username(username: str) -> None:
    if not username or any(c in username for c in ":\n\r \t#+"):
        raise BrokerAccessError(f"broker user name {username!r} is empty or has : # + or spaces")


def password_file(grants: Iterable[Grant]) -> str:
    """mosquitto's ``password_file``: one ``user:hash`` line per account."""
    lines = []
    seen: set[str] = set()
    for grant in grants:
        check_username(grant.username)
        if grant.username in seen:
            raise BrokerAccessError(f"broker user {grant.username!r} is listed twice")
        seen.add(grant.username)
        if not grant.password_hash.startswith(PBKDF2_PREFIX) or "\n" in grant.password_hash:
            raise BrokerAccessError(f"{grant.username}: not a mosquitto PBKDF2 ($7$) hash")
        lines.append(f"{grant.username}:{grant.password_hash}")
    return "".join(f"{line}\n" for line in lines)


def acl_file(grants: Iterable[Grant]) -> str:
    """mosquitto's ``acl_file``: per user, its read lines then its write lines."""
    out = ["# Generated by telecentre-server from the device registry: do not edit.", ""]
    for grant in grants:
        check_username(grant.username)
        out.append(f"user {grant.username}")
        out += [f"topic read {f}" for f in grant.read]
        out += [f"topic write {f}" for f in grant.write]
        out.append("")
    return "\n".join(out)
