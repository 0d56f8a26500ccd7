from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.sse import EventSourceResponse

from server.auth.deps import Scope, require_centre
from server.domain.operators import CentreScope
from server.routes import models
from server.routes.params import (
    IDENT,
    MAX_ID,
    CentreFilter,
    Limit,
    Offset,
    Since,
    Until,
    time_range,
)
from server.runtime import RuntimeDep, StoreDep

router = APIRouter(tags=["events and occupancy"])

REASON = r"^[a-z][a-z_]{0,31}$"  # protocol.messages.Reason

KINDS = (
    r"^(access|door_forced|door_held|door_closed|room|unlock"
    r"|exit|tamper|tamper_cleared|lockdown|release|passback)$"
)


@router.get("/api/events", response_model=models.Page[models.EventPublic])
def list_events(
    store: StoreDep,
    scope: Scope,
    centre: CentreFilter = None,
    since: Since = None,
    until: Until = None,
    kind: Annotated[str | None, Query(pattern=KINDS)] = None,
    door: Annotated[str | None, Query(pattern=IDENT, description="Only this door.")] = None,
    member: Annotated[int | None, Query(ge=1, le=MAX_ID, description="Only this member.")] = None,
    granted: Annotated[
        bool | None, Query(description="Cards only: let in (true) or refused (false).")
    ] = None,
    reason: Annotated[
        str | None, Query(pattern=REASON, description="The rule behind the decision.")
    ] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> dict:
    """Events, newest first, with the total matching the filter (a manager's centres only)."""
    if centre is not None:
        require_centre(scope, centre, f"no centre {centre!r}")
    start, end = time_range(since, until)
    total, items = store.events(
        centre_id=centre,
        centre_ids=scope.centres,
        since=start,
        until=end,
        kind=kind,
        limit=limit,
        offset=offset,
        door=door,
        member_id=member,
        granted=granted,
        reason=reason,
    )
    return {"total": total, "limit": limit, "offset": offset, "items": items}


@router.get("/api/occupancy", response_model=list[models.CentreOccupancy])
def occupancy(store: StoreDep, scope: Scope) -> list[dict]:
    """One entry per centre: people present, room states (unknown when the unit is silent)."""
    return visible_occupancy(store.occupancy(time.time()), scope)


def visible_occupancy(centres: list[dict], scope: CentreScope) -> list[dict]:
    return [c for c in centres if scope.sees(c["centre_id"])]


@router.get("/api/occupancy/stream", response_class=EventSourceResponse)
async def occupancy_stream(
    request: Request, runtime: RuntimeDep, scope: Scope
) -> AsyncIterator[list[dict]]:
    """The occupancy again each time it changes (Server-Sent Events)."""
    store = runtime.store
    seen = -1
    last_sent = 0.0
    while not await request.is_disconnected():
        # A heartbeat every 15 s also refreshes "present since" and unit states.
        if store.change_counter != seen or time.monotonic() - last_sent > 15:
            seen = store.change_counter
            last_sent = time.monotonic()
            yield visible_occupancy(await asyncio.to_thread(store.occupancy, time.time()), scope)
        await asyncio.sleep(0.25)
