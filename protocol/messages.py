"""Message types carried on the topics of ``protocol.topics``.

Every payload is a JSON object carrying ``"v": SCHEMA_VERSION``. ``decode`` checks the
version and every field, and raises ``ProtocolError`` naming the field that is wrong, so a
malformed message is rejected with a reason instead of travelling further.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

from protocol.errors import TelecentreError

SCHEMA_VERSION = 1

# Largest payload either side accepts; an access list of 20 000 badges is about 3 MB.
MAX_PAYLOAD_BYTES = 8 * 1024 * 1024


class ProtocolError(TelecentreError, ValueError):
    """A payload that does not follow the contract; the message names the bad field."""


# --- message types -------------------------------------------------------------------------


@dataclass(frozen=True)
class RoomInfo:
    """A room a unit watches, as named on the dashboard."""

    id: str
    name: str


@dataclass(frozen=True)
class Status:
    """Retained unit status; ``online`` is the birth message, ``offline`` the last will."""

    device_id: str
    state: Literal["online", "offline"]
    ts: float | None = None
    software_version: str | None = None
    config_hash: str | None = None
    access_list_version: int | None = None
    clock_synced: bool | None = None
    outbox_pending: int | None = None
    faults: list[str] | None = None
    doors: list[str] | None = None
    rooms: list[RoomInfo] | None = None


EventKind = Literal["access", "door_forced", "door_held", "door_closed", "room", "unlock"]
DENY_REASONS = (
    "unknown_card",
    "revoked",
    "not_yet_valid",
    "expired",
    "wrong_centre",
    "server_denied",
    "server_timeout",
)


@dataclass(frozen=True)
class Event:
    """Something that happened at a unit, sent until the server acknowledges its seq.

    ``kind`` says which optional fields are set:
    - ``access``: door, badge_hash, granted, reason, direction (granted only), member_id
    - ``door_forced`` / ``door_held`` / ``door_closed``: door
    - ``room``: room, room_state
    - ``unlock``: door, reason (remote unlock by command)
    """

    event_id: str
    device_id: str
    seq: int
    kind: EventKind
    ts: float
    clock_synced: bool
    historical: bool = False
    door: str | None = None
    badge_hash: str | None = None
    granted: bool | None = None
    reason: str | None = None
    direction: Literal["in", "out"] | None = None
    member_id: int | None = None
    room: str | None = None
    room_state: Literal["occupied", "free"] | None = None

    def __post_init__(self) -> None:
        if self.seq < 1:
            raise ProtocolError("seq: must be >= 1")
        required: dict[str, tuple[str, ...]] = {
            "access": ("door", "badge_hash", "granted", "reason"),
            "door_forced": ("door",),
            "door_held": ("door",),
            "door_closed": ("door",),
            "room": ("room", "room_state"),
            "unlock": ("door",),
        }
        for name in required[self.kind]:
            if getattr(self, name) is None:
                raise ProtocolError(f"{name}: required when kind is {self.kind!r}")
        if self.kind == "access" and self.granted and self.direction is None:
            raise ProtocolError("direction: required when access is granted")


@dataclass(frozen=True)
class Ack:
    """The server committed these events of the unit; the unit may forget them."""

    seqs: list[int]

    def __post_init__(self) -> None:
        if any(seq < 1 for seq in self.seqs):
            raise ProtocolError("seqs: every seq is >= 1")


@dataclass(frozen=True)
class BadgeGrant:
    """One badge the unit may let in, and the window in which it may."""

    badge_hash: str
    member_id: int
    valid_from: float | None = None
    valid_until: float | None = None


@dataclass(frozen=True)
class AccessList:
    """Everything a unit needs to decide alone; retained, replaced whole on each change."""

    version: int
    issued_at: float
    centre: str | None = None
    grants: list[BadgeGrant] = field(default_factory=list)


@dataclass(frozen=True)
class AccessRequest:
    """A card the unit's list does not know, asked of the server with a short deadline."""

    request_id: str
    badge_hash: str
    door: str
    ts: float


@dataclass(frozen=True)
class AccessResponse:
    """The server's answer to one AccessRequest; ``grant`` is cached by the unit."""

    request_id: str
    granted: bool
    reason: str
    grant: BadgeGrant | None = None

    def __post_init__(self) -> None:
        if self.granted and self.grant is None:
            raise ProtocolError("grant: required when granted is true")


@dataclass(frozen=True)
class Command:
    """A one-off order to a unit; ignored once ``expires_at`` has passed. Never retained."""

    command_id: str
    action: Literal["unlock"]
    door: str
    expires_at: float
    ts: float


MESSAGE_TYPES: dict[str, type] = {
    cls.__name__: cls
    for cls in (Status, Event, Ack, AccessList, AccessRequest, AccessResponse, Command)
}

# --- encoding ------------------------------------------------------------------------------


def to_dict(message: Any) -> dict[str, Any]:
    """The JSON object of a message, with the schema version."""
    body = dataclasses.asdict(message)
    body = {k: v for k, v in body.items() if v is not None}
    return {"v": SCHEMA_VERSION, **body}


def encode(message: Any) -> bytes:
    return json.dumps(
        to_dict(message), separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


def _reject_constant(name: str) -> Any:
    raise ProtocolError(f"payload: {name} is not a number JSON allows")


M = TypeVar("M")


def decode(cls: type[M], payload: bytes | str) -> M:
    """Parse and validate ``payload`` as ``cls``; raise ProtocolError naming the bad field."""
    if isinstance(payload, bytes):
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise ProtocolError(f"payload: {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}")
        try:
            payload = payload.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ProtocolError(f"payload: not UTF-8 ({exc.reason})") from None
    try:
        data = json.loads(payload, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise ProtocolError(f"payload: not JSON ({exc.msg} at char {exc.pos})") from None
    if not isinstance(data, dict):
        raise ProtocolError(f"payload: expected a JSON object, got {type(data).__name__}")
    version = data.pop("v", None)
    if type(version) is not int or version != SCHEMA_VERSION:
        raise ProtocolError(f"v: schema version {version!r} is not supported (expected 1)")
    return from_dict(cls, data)


@functools.cache
def _schema(cls: type) -> tuple[frozenset[str], tuple[tuple[str, Any, bool], ...]]:
    """(field names, (name, type hint, required) per field) of a message type, computed once."""
    hints = get_type_hints(cls)
    specs = tuple(
        (
            f.name,
            hints[f.name],
            f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING,
        )
        for f in dataclasses.fields(cls)
    )
    return frozenset(name for name, _, _ in specs), specs


def from_dict(cls: type[M], data: dict[str, Any], path: str = "") -> M:
    names, specs = _schema(cls)
    if not names.issuperset(data):
        unknown = sorted(set(data) - names)
        raise ProtocolError(f"{path}{unknown[0]}: unknown field in {cls.__name__}")
    kwargs = {}
    for field_name, hint, required in specs:
        if field_name not in data:
            if required:
                raise ProtocolError(f"{path}{field_name}: required field missing")
            continue
        kwargs[field_name] = _check(hint, data[field_name], f"{path}{field_name}")
    try:
        return cls(**kwargs)
    except ProtocolError as exc:
        raise ProtocolError(f"{path}{exc}") from None


def _check(hint: Any, value: Any, name: str) -> Any:
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        options = get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _check(option, value, name)
            except ProtocolError as exc:
                errors.append(str(exc))
        raise ProtocolError(errors[0] if len(errors) == 1 else f"{name}: invalid value {value!r}")
    if origin is Literal:
        allowed = get_args(hint)
        if value not in allowed:
            raise ProtocolError(f"{name}: {value!r} is not one of {', '.join(map(repr, allowed))}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ProtocolError(f"{name}: expected a list, got {type(value).__name__}")
        (item,) = get_args(hint)
        return [_check(item, v, f"{name}[{i}]") for i, v in enumerate(value)]
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ProtocolError(f"{name}: expected an object, got {type(value).__name__}")
        return from_dict(typing.cast(type, hint), value, f"{name}.")
    if hint is bool:
        if not isinstance(value, bool):
            raise ProtocolError(f"{name}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ProtocolError(f"{name}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ProtocolError(f"{name}: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise ProtocolError(f"{name}: expected a finite number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ProtocolError(f"{name}: expected a string, got {value!r}")
        return value
    raise TypeError(f"{name}: unsupported annotation {hint!r}")  # a bug in this module
