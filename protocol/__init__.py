"""Wire contract between Telecentre edge units and the server (no I/O)."""

from protocol import messages, topics
from protocol.errors import ProtocolError, TelecentreError
from protocol.messages import SCHEMA_VERSION, decode, encode

__all__ = [
    "SCHEMA_VERSION",
    "ProtocolError",
    "TelecentreError",
    "decode",
    "encode",
    "messages",
    "topics",
]
