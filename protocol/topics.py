"""Topic tree shared by the edge units and the server.

Every unit owns one subtree, ``telecentre/<device_id>/...``, so that one broker ACL
pattern (``%u`` = the unit's username = its device id) confines a unit to its own leaves.
Access lists are computed once per centre and published under
``telecentre/_centre/<centre_id>/...``, which the generated ACL opens to that centre's
units; the server announces itself on ``telecentre/_server/status``. Device and centre ids
never start with ``_``, so these cannot clash with a unit's subtree. Nobody else in the
code base writes a topic string: build them here, parse them here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from protocol.errors import TelecentreError

BASE = "telecentre"
CENTRE_PREFIX = "_centre"
SERVER_PREFIX = "_server"

DEVICE_ID_PATTERN = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
CENTRE_ID_PATTERN = DEVICE_ID_PATTERN
MAX_SEGMENTS = 4096


class Direction(StrEnum):
    """Who publishes on a topic."""

    EDGE_TO_SERVER = "edge → server"
    SERVER_TO_EDGE = "server → edge"


class Scope(StrEnum):
    """Whose subtree a topic lives in."""

    DEVICE = "device"  # telecentre/<device_id>/<leaf>
    CENTRE = "centre"  # telecentre/_centre/<centre_id>/<leaf>
    SERVER = "server"  # telecentre/_server/<leaf>


@dataclass(frozen=True)
class TopicSpec:
    """One leaf and how it is published."""

    leaf: str
    direction: Direction
    qos: int
    retain: bool
    message: str  # name of the message type in protocol.messages
    scope: Scope = Scope.DEVICE
    signed: bool = False
    indexed: bool = False  # the leaf ends in /<index> (list segments)


STATUS = TopicSpec("status", Direction.EDGE_TO_SERVER, 1, True, "Status")
HEALTH = TopicSpec("health", Direction.EDGE_TO_SERVER, 1, True, "Health")
EVENT = TopicSpec("event", Direction.EDGE_TO_SERVER, 1, False, "Event")
ACCESS_REQUEST = TopicSpec("access/request", Direction.EDGE_TO_SERVER, 0, False, "AccessRequest")
COMMAND_RESULT = TopicSpec("command/result", Direction.EDGE_TO_SERVER, 1, False, "CommandResult")
ACK = TopicSpec("ack", Direction.SERVER_TO_EDGE, 0, False, "Ack", signed=True)
ACCESS_RESPONSE = TopicSpec(
    "access/response", Direction.SERVER_TO_EDGE, 0, False, "AccessResponse", signed=True
)
COMMAND = TopicSpec("command", Direction.SERVER_TO_EDGE, 1, False, "Command", signed=True)
LIST_HEAD = TopicSpec(
    "list/head", Direction.SERVER_TO_EDGE, 1, True, "ListHead", Scope.CENTRE, signed=True
)
LIST_SEGMENT = TopicSpec(
    "list/segment",
    Direction.SERVER_TO_EDGE,
    1,
    True,
    "ListSegment",
    Scope.CENTRE,
    signed=True,
    indexed=True,
)
LIST_DELTA = TopicSpec(
    "list/delta", Direction.SERVER_TO_EDGE, 1, True, "ListDelta", Scope.CENTRE, signed=True
)
SERVER_STATUS = TopicSpec("status", Direction.SERVER_TO_EDGE, 1, True, "ServerStatus", Scope.SERVER)

ALL_TOPICS: tuple[TopicSpec, ...] = (
    STATUS,
    HEALTH,
    EVENT,
    ACCESS_REQUEST,
    COMMAND_RESULT,
    ACK,
    ACCESS_RESPONSE,
    COMMAND,
    LIST_HEAD,
    LIST_SEGMENT,
    LIST_DELTA,
    SERVER_STATUS,
)
_BY_SCOPE_LEAF = {(spec.scope, spec.leaf): spec for spec in ALL_TOPICS}


class TopicError(TelecentreError, ValueError):
    """A topic that is not part of the contract."""


def validate_device_id(device_id: str) -> str:
    if not isinstance(device_id, str) or not DEVICE_ID_PATTERN.fullmatch(device_id):
        raise TopicError(
            f"device_id {device_id!r} must be 1-63 characters of a-z, 0-9 and '-', "
            "starting with a letter or digit"
        )
    return device_id


def validate_centre_id(centre_id: str) -> str:
    if not isinstance(centre_id, str) or not CENTRE_ID_PATTERN.fullmatch(centre_id):
        raise TopicError(
            f"centre id {centre_id!r} must be 1-63 characters of a-z, 0-9 and '-', "
            "starting with a letter or digit"
        )
    return centre_id


def topic(spec: TopicSpec, owner: str = "", index: int | None = None) -> str:
    """The concrete topic of ``spec``: ``owner`` is the device id or the centre id."""
    if spec.scope is Scope.DEVICE:
        name = f"{BASE}/{validate_device_id(owner)}/{spec.leaf}"
    elif spec.scope is Scope.CENTRE:
        name = f"{BASE}/{CENTRE_PREFIX}/{validate_centre_id(owner)}/{spec.leaf}"
    else:
        name = f"{BASE}/{SERVER_PREFIX}/{spec.leaf}"
    if spec.indexed:
        if index is None or not 0 <= index < MAX_SEGMENTS:
            raise TopicError(f"{spec.leaf}: an index from 0 to {MAX_SEGMENTS - 1} is needed")
        name = f"{name}/{index}"
    return name


def subscription(spec: TopicSpec) -> str:
    """The wildcard the server subscribes to for an edge -> server ``spec`` on every unit."""
    return f"{BASE}/+/{spec.leaf}"


def device_subscriptions(device_id: str, centre_id: str) -> list[str]:
    """What a unit subscribes to: its own server -> edge leaves, its centre's list, the server.

    List segments are not here: a unit subscribes to them only while it fetches a snapshot
    (``segment_subscription``), so a reconnect does not bring 25 retained segments again.
    """
    own = [
        topic(s, device_id)
        for s in ALL_TOPICS
        if s.direction is Direction.SERVER_TO_EDGE and s.scope is Scope.DEVICE
    ]
    return [
        *own,
        topic(LIST_HEAD, centre_id),
        topic(LIST_DELTA, centre_id),
        topic(SERVER_STATUS),
    ]


def acl_filter(spec: TopicSpec, owner: str | None = None) -> str:
    """The broker ACL topic filter for ``spec``: one owner's topic, or every owner's (None).

    An indexed leaf (list segments) covers all its indexes. The broker's ACL is generated
    from these, so it follows the contract.
    """
    if spec.scope is Scope.DEVICE:
        name = f"{BASE}/{'+' if owner is None else validate_device_id(owner)}/{spec.leaf}"
    elif spec.scope is Scope.CENTRE:
        centre = "+" if owner is None else validate_centre_id(owner)
        name = f"{BASE}/{CENTRE_PREFIX}/{centre}/{spec.leaf}"
    else:
        name = f"{BASE}/{SERVER_PREFIX}/{spec.leaf}"
    return f"{name}/+" if spec.indexed else name


def segment_subscription(centre_id: str) -> str:
    return f"{BASE}/{CENTRE_PREFIX}/{validate_centre_id(centre_id)}/{LIST_SEGMENT.leaf}/+"


@dataclass(frozen=True)
class ParsedTopic:
    owner: str  # device id, centre id, or "" for the server's own topics
    spec: TopicSpec
    index: int | None = None

    @property
    def device_id(self) -> str:
        return self.owner


def parse(topic_name: str) -> ParsedTopic:
    """Split a concrete topic into its owner and leaf; raise TopicError when foreign."""
    parts = topic_name.split("/")
    if len(parts) < 3 or parts[0] != BASE:
        raise TopicError(f"topic {topic_name!r} is not under {BASE}/")
    if parts[1] == SERVER_PREFIX:
        scope, owner, rest = Scope.SERVER, "", parts[2:]
    elif parts[1] == CENTRE_PREFIX:
        if len(parts) < 4:
            raise TopicError(f"topic {topic_name!r}: no leaf after the centre id")
        scope, owner, rest = Scope.CENTRE, validate_centre_id(parts[2]), parts[3:]
    else:
        scope, owner, rest = Scope.DEVICE, validate_device_id(parts[1]), parts[2:]
    index = None
    spec = _BY_SCOPE_LEAF.get((scope, "/".join(rest)))
    if spec is None and len(rest) > 1:
        candidate = _BY_SCOPE_LEAF.get((scope, "/".join(rest[:-1])))
        if candidate is not None and candidate.indexed and rest[-1].isdigit():
            spec, index = candidate, int(rest[-1])
            if index >= MAX_SEGMENTS or rest[-1] != str(index):
                raise TopicError(f"topic {topic_name!r}: bad segment index")
    if spec is None or (spec.indexed and index is None):
        raise TopicError(f"topic {topic_name!r}: unknown leaf {'/'.join(rest)!r}")
    return ParsedTopic(owner, spec, index)
