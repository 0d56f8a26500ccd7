"""Badge identifiers as they cross the wire: HMAC-SHA256 of the card UID, never the UID.

A 4-byte UID hashed without a key is reversed by brute force in seconds, so the hash is
keyed. The key lives in a file outside the database, on the server and on each unit.
"""

from __future__ import annotations

import hashlib
import hmac
import re

_HEX_KEY = re.compile(r"^[0-9a-fA-F]{64}$")
_UID = re.compile(r"^(?:[0-9a-fA-F]{2}){4,10}$")


def parse_key(text: str) -> bytes:
    """A badge key as stored in its file: 64 hex characters (32 bytes)."""
    text = text.strip()
    if not _HEX_KEY.match(text):
        raise ValueError("badge key: expected 64 hexadecimal characters")
    return bytes.fromhex(text)


def parse_uid(text: str) -> bytes:
    """A card UID typed by a person: hex, with optional ':', '-' or spaces between bytes."""
    compact = re.sub(r"[\s:-]", "", text)
    if not _UID.match(compact):
        raise ValueError(f"uid {text!r}: expected 4 to 10 bytes in hexadecimal, e.g. 04:A1:B2:C3")
    return bytes.fromhex(compact)


def key_fingerprint(key: bytes) -> str:
    """16 hex characters that tell two badge keys apart without revealing either: the
    server publishes its key's in its status, a unit's self-test compares its own."""
    return hashlib.sha256(b"telecentre badge key fingerprint\0" + key).hexdigest()[:16]


def badge_hash(key: bytes, uid: bytes) -> str:
    """The identifier of a card everywhere but at the reader."""
    return hmac.new(key, uid, hashlib.sha256).hexdigest()
