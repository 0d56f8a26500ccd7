"""Wire contract between Telecentre edge units and the server (stdlib only, no I/O)."""

from protocol import messages, topics
from protocol.messages import SCHEMA_VERSION, ProtocolError, decode, encode

__all__ = ["SCHEMA_VERSION", "ProtocolError", "decode", "encode", "messages", "topics"]
