"""Fleet health: what the central team reads about each unit; pure rules, no I/O.

A unit's record holds what its own messages said (its last ``online`` status, the last
time it was heard live); this module turns it into the view an operator needs: online or
offline and since when, whether its access list is the one published for its centre, how
old its backlog is, which alarms are open.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def oldest_pending_at(
    status_ts: float | None, oldest_ts: float | None, received_at: float
) -> float | None:
    """When the unit's oldest unacknowledged event was made, on the server's clock.

    Both times of the status come from the unit's clock, so their difference is right
    even when that clock is wrong: the event waited ``status_ts - oldest_ts`` when the
    status was built, received at ``received_at``. Without ``status_ts`` the unit's time
    is taken as is, never later than the arrival.
    """
    if oldest_ts is None:
        return None
    if status_ts is None:
        return min(oldest_ts, received_at)
    return received_at - max(0.0, status_ts - oldest_ts)


def unit_health(
    device: dict[str, Any],
    *,
    published_version: int | None,
    open_alarms: Iterable[str],
    now: float,
) -> dict[str, Any]:
    """The unit's record with what an operator reads from it.

    - ``access_list_published``: the version published for its centre (None before the
      first); ``access_list_current``: whether the unit holds it (None when either is
      unknown);
    - ``outbox_oldest_age_s``: how long its oldest unacknowledged event has waited, as of
      ``now`` (None when its last status told of no backlog);
    - ``open_alarms``: the kinds of its open alarms.
    """
    out = dict(device)
    installed = device.get("access_list_version")
    out["access_list_published"] = published_version
    out["access_list_current"] = (
        None if installed is None or published_version is None else installed >= published_version
    )
    oldest = device.get("outbox_oldest_at")
    pending = device.get("outbox_pending") or 0
    out["outbox_oldest_age_s"] = (
        round(max(0.0, now - oldest), 3) if oldest is not None and pending > 0 else None
    )
    out["open_alarms"] = sorted(set(open_alarms))
    out["silent"] = "unit_silent" in out["open_alarms"]
    return out
