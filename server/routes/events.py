from __future__ import annotations

import base64
import binascii
import json
import math
import time
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response

from server.auth.deps import Scope, require_centre
from server.domain.operators import CentreScope
from server.routes import models
from server.routes.live import SSE_DOC, FeedResponse, OccupancyFeed
from server.routes.params import (
    IDENT,
    MAX_ID,
    MAX_OFFSET,
    CentreFilter,
    Limit,
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


COUNT_LIMIT = 1_000  # events counted for ``total``; past it the total is a floor
Cursor = Annotated[
    str | None,
    Query(
        max_length=200,
        pattern=r"^[A-Za-z0-9_-]+={0,2}$",
        description="The next_cursor of the previous page (opaque).",
    ),
]
EventsOffset = Annotated[
    int,
    Query(
        ge=0,
        le=MAX_OFFSET,
        deprecated=True,
        description="Items skipped. Deprecated: slower the further it goes; use cursor.",
    ),
]


def encode_cursor(ts: float, event_id: int) -> str:
    """The opaque cursor after an event: its (ts, id), as base64url JSON."""
    raw = json.dumps([ts, event_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode()


def decode_cursor(cursor: str) -> tuple[float, int]:
    """(ts, id) from a cursor this API gave; 422 for anything else."""
    try:
        ts, event_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        if not (
            isinstance(ts, int | float)
            and not isinstance(ts, bool)
            and math.isfinite(ts)
            and isinstance(event_id, int)
            and not isinstance(event_id, bool)
            and 0 <= event_id <= MAX_ID
        ):
            raise ValueError
    except (ValueError, TypeError, binascii.Error):
        raise HTTPException(422, "cursor: not a cursor this API gave (use next_cursor)") from None
    return float(ts), event_id


@router.get("/api/events", response_model=models.EventPage)
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
    cursor: Cursor = None,
    offset: EventsOffset = 0,
) -> JSONResponse:
    """Events, newest first (a manager's centres only), a page at a time: follow
    ``next_cursor``. ``total`` counts the matches up to 1,000 (``total_exact``)."""
    if centre is not None:
        require_centre(scope, centre, f"no centre {centre!r}")
    if cursor is not None and offset:
        raise HTTPException(422, "offset: not with cursor (the cursor says where to go on)")
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
        after=decode_cursor(cursor) if cursor is not None else None,
        count_limit=COUNT_LIMIT,
    )
    exact = total <= COUNT_LIMIT
    last = items[-1] if len(items) == limit else None
    # The model documents the page; its JSON is the store's dicts as they are (``Public``
    # keeps every key given and no other), so they are sent without validating each item
    # again (that took longer than reading the page).
    return JSONResponse(
        {
            "total": total if exact else COUNT_LIMIT,
            "limit": limit,
            "offset": offset,
            "items": items,
            "next_cursor": encode_cursor(last["ts"], last["id"]) if last else None,
            "total_exact": exact,
        }
    )


@router.get("/api/occupancy", response_model=list[models.CentreOccupancy])
def occupancy(store: StoreDep, scope: Scope) -> list[dict]:
    """One entry per centre: people present, room states (unknown when the unit is silent)."""
    return visible_occupancy(store.occupancy(time.time()), scope)


def visible_occupancy(centres: list[dict], scope: CentreScope) -> list[dict]:
    return [c for c in centres if scope.sees(c["centre_id"])]


@router.get(
    "/api/occupancy/stream", response_class=FeedResponse, status_code=200, responses=SSE_DOC
)
async def occupancy_stream(request: Request, runtime: RuntimeDep, scope: Scope) -> Response:
    """The occupancy now, then again each time it changes (Server-Sent Events): the same
    list as GET /api/occupancy in each event's data. One computation per change is shared
    by every client and pushed to it; a heartbeat every 15 s also refreshes "present
    since" and unit states."""
    return OccupancyFeed.of(request.app.state, runtime.store).response(scope)
