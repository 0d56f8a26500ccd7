"""The one exception root of the project.

Every error the project raises on purpose derives from ``TelecentreError`` and also from
the builtin it resembles (``ValueError`` for bad input, ``LookupError`` for a missing
record, ``RuntimeError`` for a part that cannot run), so a caller may catch either.
"""

from __future__ import annotations


class TelecentreError(Exception):
    """Root of every error the project raises on purpose."""
