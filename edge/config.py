"""A unit's configuration: one TOML file a technician edits, checked at start.

A bad file stops the agent before it touches any pin, with a message naming the key
(``doors[0].relay_pin: expected an integer, got 'x'``).
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from protocol.errors import TelecentreError
from protocol.signing import SigningKeyError, parse_public_key
from protocol.topics import TopicError, validate_device_id

CONFIG_SCHEMA = 1
MAX_SERVER_KEYS = 2  # the current key, and the next one during a rotation


class ConfigError(TelecentreError, ValueError):
    """The unit's configuration file is wrong; the message names the key."""


@dataclass(frozen=True)
class MqttConfig:
    host: str = "127.0.0.1"
    port: int = 1883
    username: str | None = None
    password_file: Path | None = None
    keepalive_s: int = 15
    tls: bool = False
    ca_file: Path | None = None


@dataclass(frozen=True)
class ReaderConfig:
    kind: Literal["mfrc522", "fake"] = "mfrc522"
    spi_bus: int = 0
    spi_device: int = 0
    reset_pin: int = 25
    poll_interval_ms: int = 50
    repeat_ms: int = 2000


@dataclass(frozen=True)
class FeedbackConfig:
    """The lights and buzzer at a door's reader (``[doors.feedback]``); every pin optional."""

    green_pin: int | None = None
    red_pin: int | None = None
    buzzer_pin: int | None = None
    buzzer: Literal["active", "tonal"] = "active"  # tonal: a passive buzzer (PWM)

    @property
    def pins(self) -> dict[str, int]:
        """Output name -> pin, for the outputs fitted."""
        named = {"green": self.green_pin, "red": self.red_pin, "buzzer": self.buzzer_pin}
        return {name: pin for name, pin in named.items() if pin is not None}


@dataclass(frozen=True)
class DoorConfig:
    id: str
    relay_pin: int
    reader: ReaderConfig
    relay_active_high: bool = False
    unlock_seconds: float = 5.0
    contact_pin: int | None = None
    held_open_seconds: float = 60.0
    direction: Literal["in", "out", "toggle"] = "toggle"
    exit_button_pin: int | None = None  # request-to-exit: opens without a badge
    tamper_pin: int | None = None  # the reader's tamper switch (closed when intact)
    exit_reader: ReaderConfig | None = None  # a second reader inside: its cards go out
    feedback: FeedbackConfig = FeedbackConfig()

    @property
    def readers(self) -> dict[str, ReaderConfig]:
        """``entry`` (and ``exit`` when fitted) -> the reader's config."""
        found = {"entry": self.reader}
        if self.exit_reader is not None:
            found["exit"] = self.exit_reader
        return found


@dataclass(frozen=True)
class RoomConfig:
    id: str
    name: str
    motion_pin: int
    hold_seconds: float = 300.0


@dataclass(frozen=True)
class EdgeConfig:
    device_id: str
    centre: str
    badge_key_file: Path
    data_dir: Path
    mqtt: MqttConfig
    doors: tuple[DoorConfig, ...]
    # Ed25519 public keys (64 hex) of the server: only messages signed by one are obeyed.
    server_public_keys: tuple[str, ...] = ()
    max_command_ttl_s: int = 30
    rooms: tuple[RoomConfig, ...] = ()
    pin_factory: Literal["default", "lgpio", "rpigpio", "mock"] = "default"
    online_deadline_ms: int = 800
    ack_timeout_s: float = 10.0
    tamper_pin: int | None = None  # the unit's enclosure tamper switch (closed when intact)
    anti_passback_s: float = 0.0  # a re-entry this soon without an exit is reported (0: off)
    outbox_max_events: int = 100_000  # past this, room changes are shed (counted, reported)
    health_interval_s: float = 10.0  # the heartbeat's period
    badge_key_fingerprint: str | None = None  # what selftest compares the badge key with
    config_hash: str = field(default="", compare=False)

    @property
    def outbox_path(self) -> Path:
        return self.data_dir / "outbox.db"


def load(path: str | Path, *, server_public_keys: list[str] | None = None) -> EdgeConfig:
    """Read and check a unit's TOML file.

    ``server_public_keys`` (from the command line, e.g. ``simulate --server-key``) replaces
    the file's value; the file may then leave the key out.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    try:
        if server_public_keys:
            data["server_public_keys"] = list(server_public_keys)
        return parse(data, base_dir=path.parent, config_hash=hashlib.sha256(raw).hexdigest()[:16])
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def _fingerprint(value: str | None) -> str | None:
    if value is not None and not re.fullmatch("[0-9a-f]{16}", value):
        raise ConfigError(
            f"badge_key_fingerprint: expected 16 lowercase hexadecimal characters, got {value!r}"
            " (telecentre-server badge-key-fingerprint prints it)"
        )
    return value


def parse(data: dict[str, Any], *, base_dir: Path, config_hash: str = "") -> EdgeConfig:
    r = _Reader(data, "")
    schema = r.int("schema", CONFIG_SCHEMA)
    if schema != CONFIG_SCHEMA:
        raise ConfigError(f"schema: version {schema} is not supported (expected {CONFIG_SCHEMA})")
    device_id = r.str("device_id")
    try:
        validate_device_id(device_id)
    except TopicError as exc:
        raise ConfigError(f"device_id: {exc}") from None
    mq = r.table("mqtt")
    mqtt = MqttConfig(
        host=mq.str("host", "127.0.0.1"),
        port=mq.int("port", 1883, low=1, high=65535),
        username=mq.opt_str("username"),
        password_file=mq.opt_path("password_file", base_dir),
        keepalive_s=mq.int("keepalive_s", 15, low=5, high=3600),
        tls=mq.bool("tls", False),
        ca_file=mq.opt_path("ca_file", base_dir),
    )
    mq.done()
    doors = []
    seen: set[str] = set()
    for d in r.tables("doors"):
        reader = _reader(d.table("reader"))
        exit_reader = _reader(d.table("exit_reader")) if "exit_reader" in d.data else None
        fb = d.table("feedback")
        feedback = FeedbackConfig(
            green_pin=fb.opt_int("green_pin", low=0, high=53),
            red_pin=fb.opt_int("red_pin", low=0, high=53),
            buzzer_pin=fb.opt_int("buzzer_pin", low=0, high=53),
            buzzer=fb.choice("buzzer", ("active", "tonal"), "active"),
        )
        fb.done()
        # With an exit reader the door's own reader reads the way in.
        direction = d.choice(
            "direction", ("in", "out", "toggle"), "in" if exit_reader else "toggle"
        )
        if exit_reader is not None and direction == "out":
            raise ConfigError(
                f'{d.prefix}direction: "out" with an exit_reader: the exit reader reads the '
                'way out, the door\'s reader must be "in" (or "toggle")'
            )
        door = DoorConfig(
            id=d.ident("id"),
            relay_pin=d.int("relay_pin", low=0, high=53),
            reader=reader,
            relay_active_high=d.bool("relay_active_high", False),
            unlock_seconds=d.number("unlock_seconds", 5.0, low=0.5, high=60),
            contact_pin=d.opt_int("contact_pin", low=0, high=53),
            held_open_seconds=d.number("held_open_seconds", 60.0, low=5, high=3600),
            direction=direction,
            exit_button_pin=d.opt_int("exit_button_pin", low=0, high=53),
            tamper_pin=d.opt_int("tamper_pin", low=0, high=53),
            exit_reader=exit_reader,
            feedback=feedback,
        )
        d.done()
        if door.id in seen:
            raise ConfigError(f"{d.prefix}id: door {door.id!r} is listed twice")
        seen.add(door.id)
        doors.append(door)
    if not doors:
        raise ConfigError("doors: at least one [[doors]] table is required")
    rooms = []
    for rm in r.tables("rooms"):
        room = RoomConfig(
            id=rm.ident("id"),
            name=rm.str("name"),
            motion_pin=rm.int("motion_pin", low=0, high=53),
            hold_seconds=rm.number("hold_seconds", 300.0, low=1, high=86_400),
        )
        rm.done()
        if any(other.id == room.id for other in rooms):
            raise ConfigError(f"{rm.prefix}id: room {room.id!r} is listed twice")
        rooms.append(room)
    tamper_pin = r.opt_int("tamper_pin", low=0, high=53)
    pins: dict[int, str] = {}
    _claim_pin(pins, tamper_pin, "tamper_pin")
    for door in doors:
        for key, pin in (
            ("relay_pin", door.relay_pin),
            ("contact_pin", door.contact_pin),
            ("exit_button_pin", door.exit_button_pin),
            ("tamper_pin", door.tamper_pin),
            *((f"feedback.{k}_pin", v) for k, v in door.feedback.pins.items()),
        ):
            _claim_pin(pins, pin, f"doors[{door.id}].{key}")
    for room in rooms:
        _claim_pin(pins, room.motion_pin, f"rooms[{room.id}].motion_pin")
    chips: dict[tuple[int, int], str] = {}
    for door in doors:  # readers may share one reset line, nothing else may use it
        for name, reader in door.readers.items():
            key = f"doors[{door.id}].{'reader' if name == 'entry' else 'exit_reader'}"
            if reader.kind != "mfrc522":
                continue
            if reader.reset_pin in pins:
                raise ConfigError(
                    f"{key}.reset_pin: GPIO {reader.reset_pin} is already used by "
                    f"{pins[reader.reset_pin]}"
                )
            chip = (reader.spi_bus, reader.spi_device)
            if chip in chips:
                raise ConfigError(
                    f"{key}.spi_device: SPI bus {chip[0]} device {chip[1]} is already the "
                    f"reader of {chips[chip]}"
                )
            chips[chip] = key
    cfg = EdgeConfig(
        device_id=device_id,
        centre=r.ident("centre"),
        badge_key_file=r.path("badge_key_file", base_dir),
        data_dir=r.path("data_dir", base_dir),
        mqtt=mqtt,
        doors=tuple(doors),
        rooms=tuple(rooms),
        pin_factory=r.choice("pin_factory", ("default", "lgpio", "rpigpio", "mock"), "default"),
        online_deadline_ms=r.int("online_deadline_ms", 800, low=50, high=10_000),
        ack_timeout_s=r.number("ack_timeout_s", 10.0, low=0.5, high=3600),
        server_public_keys=_server_keys(r),
        max_command_ttl_s=r.int("max_command_ttl_s", 30, low=1, high=300),
        tamper_pin=tamper_pin,
        anti_passback_s=r.number("anti_passback_s", 0.0, low=0, high=86_400),
        outbox_max_events=r.int("outbox_max_events", 100_000, low=100, high=10_000_000),
        health_interval_s=r.number("health_interval_s", 10.0, low=1, high=3600),
        badge_key_fingerprint=_fingerprint(r.opt_str("badge_key_fingerprint")),
        config_hash=config_hash,
    )
    r.done()
    return cfg


_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")


def _reader(rd: _Reader) -> ReaderConfig:
    reader = ReaderConfig(
        kind=rd.choice("kind", ("mfrc522", "fake"), "mfrc522"),
        spi_bus=rd.int("spi_bus", 0, low=0, high=7),
        spi_device=rd.int("spi_device", 0, low=0, high=7),
        reset_pin=rd.int("reset_pin", 25, low=0, high=53),
        poll_interval_ms=rd.int("poll_interval_ms", 50, low=10, high=1000),
        repeat_ms=rd.int("repeat_ms", 2000, low=0, high=60_000),
    )
    rd.done()
    return reader


def _server_keys(r: _Reader) -> tuple[str, ...]:
    key = "server_public_keys"
    value = r._get(key, _MISSING)
    if (
        not isinstance(value, list)
        or not 1 <= len(value) <= MAX_SERVER_KEYS
        or not all(isinstance(v, str) for v in value)
    ):
        raise r._fail(key, f"a list of 1 to {MAX_SERVER_KEYS} strings of 64 hex", value)
    keys = []
    for i, text in enumerate(value):
        try:
            if not _HEX64.match(text.strip()):
                raise SigningKeyError("not hex")
            parse_public_key(text)
        except SigningKeyError:
            raise ConfigError(
                f"{key}[{i}]: expected 64 hexadecimal characters (the server's public key), "
                f"got {text!r}"
            ) from None
        keys.append(text.strip().lower())
    if len(set(keys)) != len(keys):
        raise ConfigError(f"{key}: the same key is listed twice")
    return tuple(keys)


def _claim_pin(pins: dict[int, str], pin: int | None, key: str) -> None:
    if pin is None:
        return
    if pin in pins:
        raise ConfigError(f"{key}: GPIO {pin} is already used by {pins[pin]}")
    pins[pin] = key


_MISSING: Any = object()


class _Reader:
    """Typed access to one TOML table that names the full key in every error."""

    def __init__(self, data: dict[str, Any], prefix: str) -> None:
        self.data = data
        self.prefix = prefix
        self.used: set[str] = set()

    def _get(self, key: str, default: Any) -> Any:
        self.used.add(key)
        if key in self.data:
            return self.data[key]
        if default is _MISSING:
            raise ConfigError(f"{self.prefix}{key}: required key missing")
        return default

    def _fail(self, key: str, want: str, value: Any) -> ConfigError:
        return ConfigError(f"{self.prefix}{key}: expected {want}, got {value!r}")

    def str(self, key: str, default: Any = _MISSING) -> str:
        value = self._get(key, default)
        if not isinstance(value, str) or not value:
            raise self._fail(key, "a non-empty string", value)
        return value

    def opt_str(self, key: str) -> str | None:
        if self.data.get(key) is None:
            self.used.add(key)
            return None
        return self.str(key)

    def ident(self, key: str) -> str:
        value = self.str(key)
        try:
            validate_device_id(value)
        except TopicError:
            raise self._fail(key, "lowercase letters, digits and '-'", value) from None
        return value

    def int(self, key: str, default: Any = _MISSING, *, low: int = 0, high: int = 2**31) -> int:
        value = self._get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._fail(key, "an integer", value)
        if not low <= value <= high:
            raise self._fail(key, f"an integer from {low} to {high}", value)
        return value

    def opt_int(self, key: str, *, low: int = 0, high: int = 2**31) -> int | None:
        if self.data.get(key) is None:
            self.used.add(key)
            return None
        return self.int(key, low=low, high=high)

    def number(self, key: str, default: Any = _MISSING, *, low: float, high: float) -> float:
        value = self._get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self._fail(key, "a number", value)
        if not low <= value <= high:
            raise self._fail(key, f"a number from {low} to {high}", value)
        return float(value)

    def bool(self, key: str, default: Any = _MISSING) -> bool:
        value = self._get(key, default)
        if not isinstance(value, bool):
            raise self._fail(key, "true or false", value)
        return value

    def choice(self, key: str, options: tuple[str, ...], default: Any = _MISSING) -> Any:
        value = self._get(key, default)
        if value not in options:
            raise self._fail(key, "one of " + ", ".join(map(repr, options)), value)
        return value

    def path(self, key: str, base_dir: Path) -> Path:
        value = Path(self.str(key)).expanduser()
        return value if value.is_absolute() else base_dir / value

    def opt_path(self, key: str, base_dir: Path) -> Path | None:
        if self.data.get(key) is None:
            self.used.add(key)
            return None
        return self.path(key, base_dir)

    def table(self, key: str) -> _Reader:
        value = self._get(key, {})
        if not isinstance(value, dict):
            raise self._fail(key, "a table", value)
        return _Reader(value, f"{self.prefix}{key}.")

    def tables(self, key: str) -> list[_Reader]:
        value = self._get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise self._fail(key, "an array of tables ([[" + key + "]])", value)
        return [_Reader(v, f"{self.prefix}{key}[{i}].") for i, v in enumerate(value)]

    def done(self) -> None:
        """Reject keys nobody read: a typo must not silently fall back to a default."""
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            raise ConfigError(f"{self.prefix}{unknown[0]}: unknown key")
