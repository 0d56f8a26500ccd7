"""GET /api/visits: members' stays at the centres, as built from their badge-ins and -outs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import Field

from server.auth.deps import Scope, clock, require_centre
from server.routes import models
from server.routes.params import MAX_ID, CentreFilter, Limit, Offset, Since, Until, time_range
from server.runtime import RuntimeDep

router = APIRouter(tags=["visits and reports"])

NOT_FOUND = {404: {"description": "No such centre (or not one of this manager's)"}}


class VisitPublic(models.Public):
    """A stay: open while ``open`` is true; ``closed_on_read``: no check-out is stored
    but the visit is past its limit, so it is shown closed there."""

    id: int
    member_id: int
    member_name: str | None = None
    centre_id: str
    day: str = Field(description="Local date of the check-in: the visit's day.")
    check_in: float
    check_out: float | None = None
    stop_reason: str | None = Field(
        default=None, description="badge_out, closing_time or max_stay; absent while open."
    )
    limit_at: float = Field(description="When it ends with no badge-out.")
    limit_reason: str
    in_event_id: str
    out_event_id: str | None = None
    historical: bool = Field(description="Built from events sent late (replayed).")
    open: bool
    closed_on_read: bool


@router.get("/api/visits", response_model=models.Page[VisitPublic], responses=NOT_FOUND)
def list_visits(
    runtime: RuntimeDep,
    scope: Scope,
    centre: CentreFilter = None,
    member: Annotated[int | None, Query(ge=1, le=MAX_ID, description="Only this member.")] = None,
    since: Since = None,
    until: Until = None,
    open: Annotated[bool, Query(description="Only visits still open now.")] = False,
    limit: Limit = 100,
    offset: Offset = 0,
) -> dict:
    """Visits, newest check-in first (a manager's centres only); since/until bound the
    check-in."""
    if centre is not None:
        require_centre(scope, centre, f"no centre {centre!r}")
    start, end = time_range(since, until)
    total, items = runtime.store.visits(
        now=clock(runtime),
        centre_id=centre,
        centre_ids=scope.centres,
        member_id=member,
        since=start,
        until=end,
        open_only=open,
        limit=limit,
        offset=offset,
    )
    return {"total": total, "limit": limit, "offset": offset, "items": items}
