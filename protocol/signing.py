"""Signatures on every server -> unit message: a unit obeys only its server.

The server signs each body (``protocol.messages.encode_body``) with its Ed25519 private
key; the payload on the wire is a MessagePack envelope::

    {"v": 2, "kid": "<16 hex: key id>", "sig": <64 bytes>, "body": <the signed bytes>}

A unit holds the server's public key(s) in its config (two during a rotation) and opens an
envelope only when the key id is one of them and the signature matches the exact body
bytes. The body names its type, and its unit or centre, so a signed message cannot be
replayed on another topic or at another unit.

libsodium (PyNaCl) signs and checks: it checks a signature in half the time OpenSSL takes,
and a member at an unknown card waits for one signing and one check. ``cryptography``
reads and writes the server's PEM key file. Both are RFC 8032 Ed25519: the same key makes
the same signature through either.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, TypeVar

import msgspec
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from msgspec import Meta, Struct
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from protocol.errors import ProtocolError, TelecentreError
from protocol.messages import MAX_PAYLOAD_BYTES, SCHEMA_VERSION, decode_body, encode_body

KeyId = Annotated[str, Meta(pattern="^[0-9a-f]{16}$")]


class SigningKeyError(TelecentreError, ValueError):
    """A signing or public key that cannot be read; the message says which and why."""


class Envelope(Struct, forbid_unknown_fields=True):
    """A signed server -> unit payload."""

    v: int
    kid: KeyId
    sig: Annotated[bytes, Meta(min_length=64, max_length=64)]
    body: bytes


_envelope_decoder = msgspec.msgpack.Decoder(Envelope)
_encoder = msgspec.msgpack.Encoder()

B = TypeVar("B")


def key_id(public_raw: bytes) -> str:
    """A short name for a public key: the first 8 bytes of its SHA-256, in hex."""
    return hashlib.sha256(public_raw).hexdigest()[:16]


def parse_public_key(text: str) -> Ed25519PublicKey:
    """A public key as written in a unit's config: 64 hex characters (32 raw bytes)."""
    text = text.strip().lower()
    try:
        raw = bytes.fromhex(text)
        if len(raw) != 32:
            raise ValueError
    except ValueError:
        raise SigningKeyError(
            f"server public key {text[:20]!r}…: expected 64 hexadecimal characters"
        ) from None
    return Ed25519PublicKey.from_public_bytes(raw)


def public_hex(key: Ed25519PublicKey) -> str:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()


class Signer:
    """The server's private key; signs bodies into envelopes."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        self._signing = SigningKey(self.private_bytes())
        self.public_key = private_key.public_key()
        self.public_hex = public_hex(self.public_key)
        self.kid = key_id(bytes.fromhex(self.public_hex))

    @classmethod
    def generate(cls) -> Signer:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_private_bytes(cls, raw: bytes) -> Signer:
        """The key ``private_bytes`` gave (a child process of the server signs with it)."""
        return cls(Ed25519PrivateKey.from_private_bytes(raw))

    def private_bytes(self) -> bytes:
        """The raw 32-byte private key: for a process of ours, over a pipe of ours only."""
        return self._key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )

    @classmethod
    def from_file(cls, path: Path) -> Signer:
        """Read a PEM (PKCS#8) private key file, as ``init-signing-key`` writes it."""
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise SigningKeyError(f"signing key {path}: cannot read ({exc.strerror})") from None
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except ValueError as exc:
            raise SigningKeyError(f"signing key {path}: not a PEM private key ({exc})") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise SigningKeyError(f"signing key {path}: not an Ed25519 key")
        return cls(key)

    def write(self, path: Path) -> None:
        """Write the private key as PEM, readable by its owner only; never overwrite."""
        pem = self._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)

    def sign(self, body: object) -> bytes:
        """The envelope of ``body`` (a signed message type), ready to publish."""
        raw = encode_body(body)
        signature = self._signing.sign(raw).signature
        return _encoder.encode(Envelope(SCHEMA_VERSION, self.kid, signature, raw))


class Verifier:
    """The unit's side: the server public keys it trusts, and the check of an envelope."""

    def __init__(self, public_keys: Iterable[str | Ed25519PublicKey]) -> None:
        self._keys: dict[str, VerifyKey] = {}
        for key in public_keys:
            if isinstance(key, str):
                key = parse_public_key(key)
            raw = bytes.fromhex(public_hex(key))
            self._keys[key_id(raw)] = VerifyKey(raw)
        if not self._keys:
            raise SigningKeyError("no server public key configured")

    @property
    def key_ids(self) -> list[str]:
        return sorted(self._keys)

    def open(self, cls: type[B], payload: bytes) -> B:
        """The body of a signed payload as ``cls``; raise ProtocolError with the reason."""
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise ProtocolError(
                f"payload: {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}", "too_large"
            )
        try:
            envelope = _envelope_decoder.decode(payload)
        except (
            msgspec.ValidationError,
            msgspec.DecodeError,
            UnicodeDecodeError,
            RecursionError,
        ) as exc:
            raise ProtocolError(f"payload: not a signed envelope ({exc})", "unsigned") from None
        if envelope.v != SCHEMA_VERSION:
            raise ProtocolError(
                f"v: schema version {envelope.v} is not supported (expected {SCHEMA_VERSION})",
                "bad_version",
            )
        key = self._keys.get(envelope.kid)
        if key is None:
            raise ProtocolError(f"kid: key {envelope.kid} is not trusted here", "unknown_key")
        try:
            key.verify(envelope.body, envelope.sig)
        except BadSignatureError:
            raise ProtocolError("sig: the signature does not match", "bad_signature") from None
        return decode_body(cls, envelope.body)
