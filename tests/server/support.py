"""Helpers the server tests share."""

from __future__ import annotations

import time
import uuid

from protocol.messages import Event


def badge_in(device_id: str, seq: int, member_id: int) -> Event:
    """A card let in at ``device_id``'s door now, as the unit sends it."""
    return Event(
        event_id=str(uuid.uuid4()),
        device_id=device_id,
        epoch="e" * 32,
        seq=seq,
        kind="access",
        ts=time.time(),
        clock_synced=True,
        door="entree",
        badge_hash="ab" * 32,
        granted=True,
        reason="granted",
        direction="in",
        member_id=member_id,
    )
