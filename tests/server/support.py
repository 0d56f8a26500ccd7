"""Helpers the server tests share."""

from __future__ import annotations

import time
import uuid
from typing import Literal

from protocol.messages import Event


def badge_in(
    device_id: str,
    seq: int,
    member_id: int,
    *,
    ts: float | None = None,
    direction: Literal["in", "out"] = "in",
    epoch: str = "e" * 32,
) -> Event:
    """A card let in at ``device_id``'s door (now, unless ``ts``), as the unit sends it."""
    return Event(
        event_id=str(uuid.uuid4()),
        device_id=device_id,
        epoch=epoch,
        seq=seq,
        kind="access",
        ts=time.time() if ts is None else ts,
        clock_synced=True,
        door="entree",
        badge_hash="a" * 64,
        granted=True,
        reason="granted",
        direction=direction,
        member_id=member_id,
    )
