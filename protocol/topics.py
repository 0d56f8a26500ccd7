"""Topic tree shared by the edge units and the server.

Every unit owns one subtree, ``telecentre/<device_id>/...``, so that a single broker ACL
pattern (``telecentre/%u/#``) confines a unit to its own topics. Nobody else in the code
base writes a topic string: build them here, parse them here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from protocol.errors import TelecentreError

BASE = "telecentre"

DEVICE_ID_PATTERN = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")


class Direction(StrEnum):
    """Who publishes on a topic."""

    EDGE_TO_SERVER = "edge → server"
    SERVER_TO_EDGE = "server → edge"


@dataclass(frozen=True)
class TopicSpec:
    """One leaf of a unit's subtree and how it is published."""

    leaf: str
    direction: Direction
    qos: int
    retain: bool
    message: str  # name of the message type in protocol.messages


STATUS = TopicSpec("status", Direction.EDGE_TO_SERVER, 1, True, "Status")
EVENT = TopicSpec("event", Direction.EDGE_TO_SERVER, 1, False, "Event")
ACCESS_REQUEST = TopicSpec("access/request", Direction.EDGE_TO_SERVER, 1, False, "AccessRequest")
ACK = TopicSpec("ack", Direction.SERVER_TO_EDGE, 1, False, "Ack")
ACCESS_LIST = TopicSpec("access/list", Direction.SERVER_TO_EDGE, 1, True, "AccessList")
ACCESS_RESPONSE = TopicSpec("access/response", Direction.SERVER_TO_EDGE, 1, False, "AccessResponse")
COMMAND = TopicSpec("command", Direction.SERVER_TO_EDGE, 1, False, "Command")

ALL_TOPICS: tuple[TopicSpec, ...] = (
    STATUS,
    EVENT,
    ACCESS_REQUEST,
    ACK,
    ACCESS_LIST,
    ACCESS_RESPONSE,
    COMMAND,
)
_BY_LEAF = {spec.leaf: spec for spec in ALL_TOPICS}


class TopicError(TelecentreError, ValueError):
    """A topic that is not part of the contract."""


def validate_device_id(device_id: str) -> str:
    if not isinstance(device_id, str) or not DEVICE_ID_PATTERN.fullmatch(device_id):
        raise TopicError(
            f"device_id {device_id!r} must be 1-63 characters of a-z, 0-9 and '-', "
            "starting with a letter or digit"
        )
    return device_id


def topic(spec: TopicSpec, device_id: str) -> str:
    """The concrete topic of ``spec`` for one unit."""
    return f"{BASE}/{validate_device_id(device_id)}/{spec.leaf}"


def subscription(spec: TopicSpec) -> str:
    """The wildcard the server subscribes to for ``spec`` on every unit."""
    return f"{BASE}/+/{spec.leaf}"


def device_subscriptions(device_id: str) -> list[str]:
    """What a unit subscribes to: every server → edge leaf of its own subtree."""
    return [topic(s, device_id) for s in ALL_TOPICS if s.direction is Direction.SERVER_TO_EDGE]


@dataclass(frozen=True)
class ParsedTopic:
    device_id: str
    spec: TopicSpec


def parse(topic_name: str) -> ParsedTopic:
    """Split a concrete topic into its unit and leaf; raise TopicError when foreign."""
    parts = topic_name.split("/", 2)
    if len(parts) != 3 or parts[0] != BASE:
        raise TopicError(f"topic {topic_name!r} is not under {BASE}/<device_id>/")
    _, device_id, leaf = parts
    validate_device_id(device_id)
    spec = _BY_LEAF.get(leaf)
    if spec is None:
        raise TopicError(f"topic {topic_name!r}: unknown leaf {leaf!r}")
    return ParsedTopic(device_id, spec)
