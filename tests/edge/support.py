"""Helpers for the edge tests that need neither the server nor a broker.

``tests/conftest.py`` builds the unit TOML of the integration tests; these helpers add what
a v2 unit needs (the server's public key) and build an agent on MockFactory pins whose
message handler the tests call directly with payloads signed by a test server key.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from protocol import topics

RELAY_PIN = 17
CONTACT_PIN = 27
MOTION_PIN = 22
DEVICE = "boitron-01"
CENTRE = "boitron"
NOW = 1_760_000_000.0  # October 2025


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "") -> Any:
    """Poll ``predicate`` until it is truthy; fail the test after ``timeout`` seconds."""
    pause = threading.Event()
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        pause.wait(0.01)


def with_server_keys(toml: str, *keys: str, ttl: int | None = None) -> str:
    """Add ``server_public_keys`` (and ``max_command_ttl_s``) to a unit TOML's top level."""
    if "server_public_keys" in toml:
        return toml
    lines = [f"server_public_keys = [{', '.join(repr(k).replace(chr(39), chr(34)) for k in keys)}]"]
    if ttl is not None:
        lines.append(f"max_command_ttl_s = {ttl}")
    head, sep, rest = toml.partition("\n[")
    return head.rstrip("\n") + "\n" + "\n".join(lines) + "\n" + sep + rest


def door_and_room(reader: str = "fake") -> str:
    """The door and the room every test unit has, as TOML (its last tables)."""
    return f"""[[doors]]
id = "entree"
relay_pin = {RELAY_PIN}
contact_pin = {CONTACT_PIN}
unlock_seconds = 0.5
direction = "toggle"
[doors.reader]
kind = "{reader}"
poll_interval_ms = 10
repeat_ms = 200

[[rooms]]
id = "visio"
name = "Salle visio"
motion_pin = {MOTION_PIN}
hold_seconds = 1
"""


def unit_toml(
    *,
    key_file: Path,
    data_dir: Path,
    server_keys: tuple[str, ...],
    port: int = 1883,
    ttl: int | None = None,
    online_deadline_ms: int = 800,
    device_id: str = DEVICE,
    anti_passback_s: float = 0,
    outbox_max_events: int = 100_000,
) -> str:
    toml = f"""
schema = 1
device_id = "{device_id}"
centre = "{CENTRE}"
badge_key_file = "{key_file}"
data_dir = "{data_dir}"
pin_factory = "mock"
online_deadline_ms = {online_deadline_ms}
ack_timeout_s = 2
anti_passback_s = {anti_passback_s}
outbox_max_events = {outbox_max_events}

[mqtt]
host = "127.0.0.1"
port = {port}
keepalive_s = 5

{door_and_room()}"""
    return with_server_keys(toml, *server_keys, ttl=ttl)


class FakeTime:
    """Wall clock, synchronisation flag and monotonic clock a test moves by hand."""

    def __init__(self, wall: float = NOW, synced: bool = True) -> None:
        self.wall = wall
        self.is_synced = synced
        self.mono = 1000.0

    def time(self) -> float:
        return self.wall

    def synced(self) -> bool:
        return self.is_synced

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.wall += seconds
        self.mono += seconds


class Published:
    """Records what the agent publishes (the link is never connected in these tests)."""

    def __init__(self) -> None:
        self.messages: list[tuple[topics.TopicSpec, bytes]] = []

    def __call__(self, spec: topics.TopicSpec, payload: bytes) -> bool:
        self.messages.append((spec, payload))
        return True

    def of(self, spec: topics.TopicSpec) -> list[bytes]:
        return [p for s, p in self.messages if s is spec]


def parsed(spec: topics.TopicSpec, owner: str = "", index: int | None = None) -> Any:
    if not owner:
        owner = CENTRE if spec.scope is topics.Scope.CENTRE else DEVICE
    if spec.scope is topics.Scope.SERVER:
        owner = ""
    return topics.parse(topics.topic(spec, owner, index))


def new_id() -> str:
    return str(uuid.uuid4())
