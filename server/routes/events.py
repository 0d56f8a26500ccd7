from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.sse import EventSourceResponse

from server.routes import models
from server.routes.params import CentreFilter, Limit, Offset, Since, Until, time_range
from server.runtime import RuntimeDep, StoreDep

router = APIRouter(tags=["events and occupancy"])

KINDS = r"^(access|door_forced|door_held|door_closed|room|unlock)$"


@router.get("/api/events", response_model=models.Page[models.EventPublic])
def list_events(
    store: StoreDep,
    centre: CentreFilter = None,
    since: Since = None,
    until: Until = None,
    kind: Annotated[str | None, Query(pattern=KINDS)] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> dict:
    """Events, newest first, with the total matching the filter."""
    start, end = time_range(since, until)
    total, items = store.events(
        centre_id=centre,
        since=start,
        until=end,
        kind=kind,
        limit=limit,
        offset=offset,
    )
    return {"total": total, "limit": limit, "offset": offset, "items": items}


@router.get("/api/occupancy", response_model=list[models.CentreOccupancy])
def occupancy(store: StoreDep) -> list[dict]:
    """One entry per centre: people present, room states (unknown when the unit is silent)."""
    return store.occupancy(time.time())


@router.get("/api/occupancy/stream", response_class=EventSourceResponse)
async def occupancy_stream(request: Request, runtime: RuntimeDep) -> AsyncIterator[list[dict]]:
    """The occupancy again each time it changes (Server-Sent Events)."""
    store = runtime.store
    seen = -1
    last_sent = 0.0
    while not await request.is_disconnected():
        # A heartbeat every 15 s also refreshes "present since" and unit states.
        if store.change_counter != seen or time.monotonic() - last_sent > 15:
            seen = store.change_counter
            last_sent = time.monotonic()
            yield await asyncio.to_thread(store.occupancy, time.time())
        await asyncio.sleep(0.25)
