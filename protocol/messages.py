"""Message types carried on the topics of ``protocol.topics`` (schema version 2).

Unit -> server messages are compact JSON objects carrying ``"v": 2``. Server -> unit
messages are signed (``protocol.signing``): a MessagePack envelope around a MessagePack
body whose ``type`` names the message. Every field is bounded (integers within signed
64-bit, badge hashes exactly 64 lowercase hex, ids and names by pattern and length, lists
by length), so ``decode`` refuses anything out of bounds before it travels further and
raises only ``ProtocolError``.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from typing import Annotated, Any, Literal, TypeVar

import msgspec
from msgspec import Meta, Struct

from protocol.errors import ProtocolError

SCHEMA_VERSION = 2

# Largest payload either side accepts. A list snapshot is cut into segments well below it.
MAX_PAYLOAD_BYTES = 1024 * 1024
# Largest unit -> server message: events, status and requests are small.
MAX_EDGE_PAYLOAD_BYTES = 64 * 1024

INT64_MAX = 2**63 - 1

# --- field types ---------------------------------------------------------------------------

Int64 = Annotated[int, Meta(ge=-(2**63), le=INT64_MAX)]
PositiveInt = Annotated[int, Meta(ge=1, le=INT64_MAX)]
Count = Annotated[int, Meta(ge=0, le=INT64_MAX)]
# Seconds since the Unix epoch. The upper bound (year 5138) only keeps numbers sane.
Timestamp = Annotated[float, Meta(ge=0, le=1e11)]
Version = Annotated[int, Meta(ge=1, le=INT64_MAX)]
Seq = PositiveInt
MemberId = PositiveInt
BadgeHash = Annotated[str, Meta(pattern="^[0-9a-f]{64}$")]
BadgeBytes = Annotated[bytes, Meta(min_length=32, max_length=32)]
DeviceId = Annotated[str, Meta(pattern="^[a-z0-9][a-z0-9-]{0,62}$")]
CentreId = Annotated[str, Meta(pattern="^[a-z0-9][a-z0-9-]{0,62}$")]
LocalId = Annotated[str, Meta(pattern="^[a-z0-9][a-z0-9_-]{0,31}$")]  # door and room ids
Uuid = Annotated[
    str, Meta(pattern="^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
]
Epoch = Annotated[str, Meta(pattern="^[0-9a-f]{32}$")]


def new_event_id() -> str:
    """A new event's ``event_id``: a version 7 UUID (RFC 9562), its first 48 bits the
    milliseconds since 1970 and 74 random bits after them, so ids made one after another
    sort together and the server's unique index on them grows at its end instead of at
    random places. Unique without a synchronised clock: the random bits keep it so."""
    raw = bytearray(((time.time_ns() // 1_000_000) & 0xFFFF_FFFF_FFFF).to_bytes(6, "big"))
    raw += os.urandom(10)
    raw[6] = 0x70 | (raw[6] & 0x0F)  # version 7
    raw[8] = 0x80 | (raw[8] & 0x3F)  # the RFC 9562 variant
    return str(uuid.UUID(bytes=bytes(raw)))


Reason = Annotated[str, Meta(pattern="^[a-z][a-z_]{0,31}$")]
ShortText = Annotated[str, Meta(min_length=1, max_length=64)]
Text = Annotated[str, Meta(min_length=1, max_length=200)]
HexDigest = Annotated[str, Meta(pattern="^[0-9a-f]{1,64}$")]
OperatorName = Annotated[str, Meta(pattern="^[A-Za-z0-9@._+-]{1,64}$")]

DENY_REASONS = (  # in the order the policy (protocol.policy) checks them
    "unknown_card",
    "revoked",
    "suspended",
    "not_yet_valid",
    "expired",
    "wrong_centre",
    "plan_expired",
    "plan_not_started",
    "outside_hours",
    "centre_closed",
    "no_credit",
    "server_denied",
    "server_timeout",
    "lockdown",  # the unit is locked down and the badge is not lockdown-exempt
)

# States of a badge in an access list.
ACTIVE, REVOKED, SUSPENDED = 0, 1, 2
EntryState = Literal[0, 1, 2]


class _Message(Struct, forbid_unknown_fields=True, omit_defaults=True, kw_only=True):
    """Base of the JSON messages: every one carries the schema version first."""

    v: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if self.v != SCHEMA_VERSION:
            raise ProtocolError(
                f"v: schema version {self.v!r} is not supported (expected {SCHEMA_VERSION})",
                "bad_version",
            )


class _Body(Struct, forbid_unknown_fields=True, omit_defaults=True, kw_only=True, tag_field="type"):
    """Base of the signed server -> unit bodies; ``type`` is the tag."""


# --- unit -> server (JSON) -----------------------------------------------------------------


class RoomInfo(Struct, forbid_unknown_fields=True, kw_only=True):
    """A room a unit watches, as named on the dashboard."""

    id: LocalId
    name: Text


class WorkerInfo(Struct, forbid_unknown_fields=True, omit_defaults=True, kw_only=True):
    """One worker thread of the unit: alive or not, and how many errors it survived."""

    name: LocalId
    alive: bool
    errors: Count = 0


class Status(_Message, kw_only=True):
    """Retained unit status; ``online`` is the birth message, ``offline`` the last will."""

    device_id: DeviceId
    state: Literal["online", "offline"]
    centre: CentreId | None = None
    ts: Timestamp | None = None
    software_version: ShortText | None = None
    config_hash: HexDigest | None = None
    list_version: Version | None = None
    clock_synced: bool | None = None
    outbox_pending: Count | None = None
    outbox_rejected: Count | None = None
    outbox_oldest_ts: Timestamp | None = None
    faults: Annotated[list[Text], Meta(max_length=32)] | None = None
    doors: Annotated[list[LocalId], Meta(max_length=16)] | None = None
    rooms: Annotated[list[RoomInfo], Meta(max_length=32)] | None = None
    workers: Annotated[list[WorkerInfo], Meta(max_length=32)] | None = None
    rejected: dict[Reason, Count] | None = None
    lockdown: bool | None = None


class DoorHealth(Struct, forbid_unknown_fields=True, omit_defaults=True, kw_only=True):
    """One door in a health report: its readers, its relay and its contact."""

    id: LocalId
    reader: Literal["ok", "fault"]
    exit_reader: Literal["ok", "fault"] | None = None
    relay: Literal["locked", "unlocked"]
    contact: Literal["closed", "open"] | None = None


Seconds = Annotated[float, Meta(ge=0, le=1e10)]


class Health(_Message, kw_only=True):
    """The unit's heartbeat, retained, every ``interval_s`` while it is connected.

    ``condition`` is ``degraded`` while anything in ``reasons`` holds (a reader fault, a
    worker that died, a filling outbox, a low disk…): the unit still decides, fail-secure.
    A server that hears no heartbeat for a few intervals knows the unit has gone silent,
    even when the network dropped without a word.
    """

    device_id: DeviceId
    ts: Timestamp
    interval_s: Annotated[float, Meta(gt=0, le=3600)]
    uptime_s: Seconds
    condition: Literal["ok", "degraded"]
    reasons: Annotated[list[Text], Meta(max_length=32)] | None = None
    outbox_pending: Count
    outbox_oldest_age_s: Seconds | None = None
    list_version: Version | None = None
    list_age_s: Seconds | None = None
    cpu_temp_c: Annotated[float, Meta(ge=-60, le=200)] | None = None
    disk_free_mb: Count | None = None
    clock_synced: bool
    lockdown: bool
    doors: Annotated[list[DoorHealth], Meta(max_length=16)]
    workers: Annotated[list[WorkerInfo], Meta(max_length=32)]


EventKind = Literal[
    "access",
    "door_forced",
    "door_held",
    "door_closed",
    "room",
    "unlock",
    "exit",
    "tamper",
    "tamper_cleared",
    "lockdown",
    "release",
    "passback",
]

_REQUIRED: dict[str, tuple[str, ...]] = {
    "access": ("door", "badge_hash", "granted", "reason"),
    "door_forced": ("door",),
    "door_held": ("door",),
    "door_closed": ("door",),
    "room": ("room", "room_state"),
    "unlock": ("door", "command_id"),
    "exit": ("door",),
    "tamper": (),
    "tamper_cleared": (),
    "lockdown": ("command_id",),
    "release": ("command_id",),
    "passback": ("door", "badge_hash", "member_id"),
}


class Event(_Message, kw_only=True):
    """Something that happened at a unit, sent until the server acknowledges it.

    ``kind`` says which optional fields are set:
    - ``access``: door, badge_hash, granted, reason, direction (granted only), member_id
    - ``door_forced`` / ``door_held`` / ``door_closed``: door
    - ``room``: room, room_state
    - ``unlock``: door, reason, command_id, requested_by (remote unlock by command)
    - ``exit``: door (opened by its request-to-exit button, no badge)
    - ``tamper`` / ``tamper_cleared``: door (a reader's tamper switch) or none (the unit's)
    - ``lockdown`` / ``release``: command_id, requested_by (by command, the whole unit)
    """

    event_id: Uuid
    device_id: DeviceId
    epoch: Epoch
    seq: Seq
    kind: EventKind
    ts: Timestamp
    clock_synced: bool
    historical: bool = False
    door: LocalId | None = None
    badge_hash: BadgeHash | None = None
    granted: bool | None = None
    reason: Reason | None = None
    direction: Literal["in", "out"] | None = None
    member_id: MemberId | None = None
    room: LocalId | None = None
    room_state: Literal["occupied", "free"] | None = None
    command_id: Uuid | None = None
    requested_by: OperatorName | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in _REQUIRED[self.kind]:
            if getattr(self, name) is None:
                raise ProtocolError(f"{name}: required when kind is {self.kind!r}")
        if self.kind == "access" and self.granted and self.direction is None:
            raise ProtocolError("direction: required when access is granted")


class EventHeader(Struct, kw_only=True):
    """Just enough of an event to refuse it by its seq when the rest is malformed."""

    epoch: Epoch
    seq: Seq


class AccessRequest(_Message, kw_only=True):
    """A card the unit's list does not know, asked of the server with a short deadline."""

    request_id: Uuid
    badge_hash: BadgeHash
    door: LocalId
    ts: Timestamp


class CommandResult(_Message, kw_only=True):
    """What a unit did with a command: executed, or refused with the reason."""

    command_id: Uuid
    device_id: DeviceId
    result: Literal["executed", "refused"]
    reason: Reason | None = None
    ts: Timestamp

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.result == "refused" and self.reason is None:
            raise ProtocolError("reason: required when result is 'refused'")


class ServerStatus(_Message, kw_only=True):
    """Retained server presence; a new ``instance`` online makes units resend at once."""

    state: Literal["online", "offline"]
    instance: Uuid
    ts: Timestamp | None = None
    badge_key_fp: Annotated[str, Meta(pattern="^[0-9a-f]{16}$")] | None = None


# --- server -> unit (signed bodies, MessagePack) -------------------------------------------


# Plan kinds and hour rules (protocol.policy decides with them).
SUBSCRIPTION, DAY_PASS, TRIAL = 0, 1, 2
ALWAYS, OPENING_HOURS, WINDOW = 0, 1, 2
WindowRow = tuple[
    Annotated[int, Meta(ge=0, le=6)],
    Annotated[int, Meta(ge=0, le=1440)],
    Annotated[int, Meta(ge=0, le=1440)],
]
DayNumber = Annotated[int, Meta(ge=1, le=3_652_059)]  # date.toordinal()


class PlanRule(Struct, array_like=True, forbid_unknown_fields=True, gc=False):
    """One plan a member holds, as a unit needs it at one centre:
    [kind, valid_from, valid_until, hours, window, credits].

    ``kind``: 0 subscription, 1 day-pass book, 2 trial. ``hours``: 0 always, 1 the centre's
    opening hours, 2 the weekly ``window`` ([weekday 0-6 Monday first, start minute, end
    minute] in the centre's local time). ``credits``: days left (books and trials) as the
    server counted them when it compiled the list.
    """

    kind: Literal[0, 1, 2]
    valid_from: Timestamp | None = None
    valid_until: Timestamp | None = None
    hours: Literal[0, 1, 2] = ALWAYS
    window: Annotated[list[WindowRow], Meta(max_length=64)] = []
    credits: Count | None = None


class ListEntry(Struct, array_like=True, forbid_unknown_fields=True, gc=False):
    """One badge of an access list:
    [badge, member_id, state, valid_from, valid_until, plans, days, exempt].

    ``badge`` is the 32 raw bytes of the badge hash; ``state`` is 0 active, 1 revoked,
    2 suspended (a revoked or suspended badge is denied at once, offline too).
    ``plans`` (omitted: the member holds no plan, only the validity window applies) are the
    member's plans valid at this centre; ``days`` the recent local days (``date.toordinal``)
    the server has already counted against the member's day credits. ``exempt``: the
    badge still opens while the unit is locked down.
    """

    badge: BadgeBytes
    member_id: MemberId
    state: EntryState = ACTIVE
    valid_from: Timestamp | None = None
    valid_until: Timestamp | None = None
    plans: Annotated[list[PlanRule], Meta(max_length=16)] | None = None
    days: Annotated[list[DayNumber], Meta(max_length=31)] = []
    exempt: bool = False

    @property
    def badge_hash(self) -> str:
        return self.badge.hex()


class Rejected(Struct, array_like=True, forbid_unknown_fields=True):
    """One event the server refused: [seq, reason]."""

    seq: Seq
    reason: Reason


class Ack(_Body, tag="ack", kw_only=True):
    """The server committed these events of the unit's outbox ``epoch``; forget them.

    ``rejected`` lists events the server will never take, with the reason: the unit moves
    them aside instead of resending them.
    """

    device_id: DeviceId
    epoch: Epoch
    seqs: Annotated[list[Seq], Meta(max_length=10_000)] = []
    rejected: Annotated[list[Rejected], Meta(max_length=10_000)] = []
    issued_at: Timestamp


class AccessResponse(_Body, tag="access_response", kw_only=True):
    """The server's answer to one AccessRequest, for that unit and that badge only."""

    request_id: Uuid
    device_id: DeviceId
    badge_hash: BadgeHash
    granted: bool
    reason: Reason
    entry: ListEntry | None = None
    issued_at: Timestamp

    def __post_init__(self) -> None:
        if self.granted and self.entry is None:
            raise ProtocolError("entry: required when granted is true")
        if self.entry is not None and self.entry.badge_hash != self.badge_hash:
            raise ProtocolError("entry: for another badge than the one asked about")


CommandAction = Literal["unlock", "lockdown", "release", "send_status", "refetch_list"]
DOOR_ACTIONS = ("unlock",)  # the actions aimed at one door; the others are for the whole unit


class Command(_Body, tag="command", kw_only=True):
    """A one-off order to one unit, valid from ``issued_at`` until ``expires_at``.

    Never retained; published with an MQTT message expiry as well. ``door`` is required
    for ``unlock`` and absent for the actions that concern the whole unit.
    """

    command_id: Uuid
    device_id: DeviceId
    action: CommandAction
    door: LocalId | None = None
    issued_at: Timestamp
    expires_at: Timestamp
    requested_by: OperatorName | None = None
    reason: Text | None = None

    def __post_init__(self) -> None:
        if self.action in DOOR_ACTIONS and self.door is None:
            raise ProtocolError(f"door: required when action is {self.action!r}")
        if self.action not in DOOR_ACTIONS and self.door is not None:
            raise ProtocolError(f"door: not allowed when action is {self.action!r}")


HoursDay = Annotated[
    list[tuple[Annotated[int, Meta(ge=0, le=1440)], Annotated[int, Meta(ge=0, le=1440)]]],
    Meta(max_length=8),
]


class CentreHours(Struct, array_like=True, forbid_unknown_fields=True):
    """A centre's calendar for its units: [timezone, hours, closed, holidays].

    ``hours``: 7 lists (Monday first) of [start, end] minutes in local time; ``closed``:
    the days the centre is shut (closures); ``holidays``: the public holidays (no opening
    hours that day); local days as ``date.toordinal``, for the weeks the list covers.
    """

    timezone: Annotated[str, Meta(pattern=r"^[A-Za-z_]+(/[A-Za-z0-9_+-]+){0,2}$", max_length=64)]
    hours: Annotated[list[HoursDay], Meta(min_length=7, max_length=7)]
    closed: Annotated[list[DayNumber], Meta(max_length=400)] = []
    holidays: Annotated[list[DayNumber], Meta(max_length=400)] = []


class ListHead(_Body, tag="list_head", kw_only=True):
    """The centre's current snapshot: its version, how many segments make it, and the
    centre's calendar (a new calendar comes as a new snapshot)."""

    centre: CentreId
    version: Version
    segments: Annotated[int, Meta(ge=1, le=4096)]
    entries: Count
    issued_at: Timestamp
    calendar: CentreHours | None = None


class ListSegment(_Body, tag="list_segment", kw_only=True):
    """Part ``index`` of ``segments`` of snapshot ``version``."""

    centre: CentreId
    version: Version
    index: Annotated[int, Meta(ge=0, le=4095)]
    segments: Annotated[int, Meta(ge=1, le=4096)]
    entries: Annotated[list[ListEntry], Meta(max_length=20_000)]
    issued_at: Timestamp


class ListDelta(_Body, tag="list_delta", kw_only=True):
    """Every change since snapshot ``base``, up to ``version`` (cumulative).

    Applying it twice, or over a list that already holds some of its changes, gives the
    same result: ``upsert`` entries replace whatever the list had for their badge, and
    ``remove`` badges leave it.
    """

    centre: CentreId
    base: Version
    version: Version
    upsert: Annotated[list[ListEntry], Meta(max_length=20_000)] = []
    remove: Annotated[list[BadgeBytes], Meta(max_length=20_000)] = []
    issued_at: Timestamp


SignedBody = Ack | AccessResponse | Command | ListHead | ListSegment | ListDelta

JSON_TYPES: tuple[type, ...] = (
    Status,
    Health,
    Event,
    AccessRequest,
    CommandResult,
    ServerStatus,
)
SIGNED_TYPES: tuple[type, ...] = (Ack, AccessResponse, Command, ListHead, ListSegment, ListDelta)
MESSAGE_TYPES: dict[str, type] = {
    cls.__name__: cls
    for cls in (
        *JSON_TYPES,
        *SIGNED_TYPES,
        RoomInfo,
        WorkerInfo,
        DoorHealth,
        ListEntry,
        PlanRule,
        CentreHours,
    )
}
MESSAGE_TYPES["Rejected"] = Rejected

# --- encoding ------------------------------------------------------------------------------

M = TypeVar("M")

_json_encoder = msgspec.json.Encoder()
_msgpack_encoder = msgspec.msgpack.Encoder()
# A decoder per JSON message type, made here, at import, on one thread: msgspec reads a
# Struct type's fields the first time a decoder for it is made, and two threads doing that
# for the same type at once crashed a unit (a segmentation fault, its publisher and its
# heartbeat each decoding its first Event). A type not listed is made under a lock.
_json_decoders: dict[type, msgspec.json.Decoder[Any]] = {
    cls: msgspec.json.Decoder(cls)
    for cls in (Status, Health, Event, EventHeader, AccessRequest, CommandResult, ServerStatus)
}
_json_decoders_lock = threading.Lock()
_any_body_decoder = msgspec.msgpack.Decoder(SignedBody)


class _Versioned(Struct):
    """The schema version alone, read before the rest of a JSON message."""

    v: int


_version_decoder = msgspec.json.Decoder(_Versioned)
_VERSION_PREFIX = b'{"v":%d,' % SCHEMA_VERSION


def encode(message: Any) -> bytes:
    """The compact JSON of a unit -> server message, ``"v"`` first, unset fields left out."""
    body = _json_encoder.encode(message)  # "v" equals its default, so it is left out
    return _VERSION_PREFIX + body[1:]


def decode(cls: type[M], payload: bytes | str, *, limit: int = MAX_PAYLOAD_BYTES) -> M:
    """Parse and check a JSON ``payload`` as ``cls``; raise ProtocolError naming the field."""
    if len(payload) > limit:
        raise ProtocolError(f"payload: {len(payload)} bytes exceeds {limit}", "too_large")
    # What ``encode`` writes starts with the version: the common case reads the payload once
    # (the message's own check still refuses a second, different "v").
    if not (isinstance(payload, bytes) and payload.startswith(_VERSION_PREFIX)):
        version = _convert_errors(_version_decoder.decode, payload).v
        if version != SCHEMA_VERSION:
            raise ProtocolError(
                f"v: schema version {version!r} is not supported (expected {SCHEMA_VERSION})",
                "bad_version",
            )
    decoder = _json_decoders.get(cls)
    if decoder is None:
        with _json_decoders_lock:
            decoder = _json_decoders.get(cls) or msgspec.json.Decoder(cls)
            _json_decoders[cls] = decoder
    return _convert_errors(decoder.decode, payload)


def encode_body(body: Any) -> bytes:
    """The MessagePack bytes of a server -> unit body (what gets signed)."""
    return _msgpack_encoder.encode(body)


def decode_body(cls: type[M], body: bytes) -> M:
    """Parse a signed body as ``cls``; a body of another type is refused as ``wrong_type``.

    The body is decoded as any signed type first, so its ``type`` tag is required: decoding
    straight into one tagged Struct, msgspec would accept a body without the tag.
    """
    message = _convert_errors(_any_body_decoder.decode, body)
    if not isinstance(message, cls):
        expected = getattr(cls, "__name__", str(cls))
        raise ProtocolError(
            f"type: a {type(message).__name__} body where {expected} was expected", "wrong_type"
        )
    return message


def _convert_errors(fn: Any, payload: bytes | str) -> Any:
    try:
        return fn(payload)
    except ProtocolError:
        raise
    except msgspec.ValidationError as exc:
        text = str(exc)
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, ProtocolError):
            raise ProtocolError(str(cause), cause.reason) from None
        if "Invalid value" in text and "`$.type`" in text:
            raise ProtocolError(f"type: {text}", "wrong_type") from None
        raise ProtocolError(_field_first(text)) from None
    except msgspec.DecodeError as exc:
        raise ProtocolError(f"payload: {exc}") from None
    except UnicodeDecodeError as exc:  # a string that is not UTF-8
        raise ProtocolError(f"payload: invalid UTF-8 ({exc.reason})") from None
    except RecursionError:  # arrays or objects nested deeper than the decoder goes
        raise ProtocolError("payload: nested too deeply") from None


def _field_first(text: str) -> str:
    """'Expected `int` >= 1 - at `$.seq`' -> 'seq: Expected `int` >= 1'."""
    message, sep, where = text.rpartition(" - at `$")
    if not sep:
        return f"payload: {text}"
    path = where.rstrip("`").lstrip(".") or "payload"
    return f"{path}: {message}"


def to_builtins(message: Any) -> Any:
    """A message as plain dicts and lists (bytes as base64), for logs and documentation."""
    return msgspec.to_builtins(message)
