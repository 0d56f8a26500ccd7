"""The one exception root of the project, and the wire contract's own error.

Every error the project raises on purpose derives from ``TelecentreError`` and also from
the builtin it resembles (``ValueError`` for bad input, ``LookupError`` for a missing
record, ``RuntimeError`` for a part that cannot run), so a caller may catch either.
"""

from __future__ import annotations

# Why a message was refused. Counters are keyed by these and nothing else, so a sender
# cannot grow them with names of its own choosing.
REJECT_REASONS = (
    "too_large",  # payload above the size limit
    "malformed",  # not valid JSON / MessagePack, a field missing, out of bounds or unknown
    "bad_version",  # another schema version
    "bad_topic",  # a topic outside the contract or not meant for the receiver
    "unsigned",  # a server -> unit message without a signature envelope
    "unknown_key",  # signed by a key the unit does not hold
    "bad_signature",  # the signature does not match the body
    "wrong_type",  # a signed body of another message type than the topic carries
    "other_device",  # addressed to another unit
    "other_centre",  # an access list of another centre
    "device_mismatch",  # a device_id field that differs from the topic
    "unknown_device",  # a unit the server's registry does not know
    "retained",  # a command delivered as a retained message
    "replayed",  # a command id already seen
    "expired",  # a command past its expiry by the unit's trusted clock
    "ttl_too_long",  # a command whose expiry is too far after its issue time
    "clock_unsynced",  # a command the unit cannot place in time (clock not synchronised)
    "not_yet_valid",  # a command issued in the future by the unit's trusted clock
    "not_requested",  # an online answer to a question the unit did not ask
    "stale",  # an access list older than the one installed
    "unknown_door",  # a command for a door the unit does not have
    "room_taken",  # a room that another unit of the centre already reports
)


class TelecentreError(Exception):
    """Root of every error the project raises on purpose."""


class ProtocolError(TelecentreError, ValueError):
    """A message that breaks the contract; ``reason`` is one of ``REJECT_REASONS``.

    The text names what is wrong (``seq: Expected `int` >= 1``) for the log; the reason
    is what counters are keyed by.
    """

    def __init__(self, message: str, reason: str = "malformed") -> None:
        super().__init__(message)
        if reason not in REJECT_REASONS:
            raise ValueError(f"unknown rejection reason {reason!r}")  # a bug in the caller
        self.reason = reason
