"""Random secrets for sessions, CSRF and API tokens, and the hash kept of each."""

from __future__ import annotations

import hashlib
import secrets

API_TOKEN_PREFIX = "tc_"  # recognisable in a script or a leaked log


def new_secret() -> str:
    """256 random bits, URL-safe: a session id or a CSRF token."""
    return secrets.token_urlsafe(32)


def new_api_token() -> str:
    return API_TOKEN_PREFIX + secrets.token_urlsafe(32)


def digest(secret: str) -> str:
    """What the store keeps of a secret: SHA-256 suffices for 256 random bits (no
    dictionary to try), and a copy of the database then lets nobody in."""
    return hashlib.sha256(secret.encode()).hexdigest()


def same(secret: str, expected_digest: str) -> bool:
    return secrets.compare_digest(digest(secret), expected_digest)
