"""What a store call raises when the request contradicts what is stored."""

from __future__ import annotations

from protocol.errors import TelecentreError


class NotFound(TelecentreError, LookupError):
    """The named record does not exist."""


class Conflict(TelecentreError, ValueError):
    """The write contradicts what is stored (a badge enrolled twice, say)."""


class SchemaTooNew(TelecentreError, RuntimeError):
    """The database was migrated by a newer version of the server than this one."""
