"""GET /api/fleet: every unit's health (a manager: their centres' units only)."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Query

from server.auth.deps import Scope, require_centre
from server.domain import fleet as rules
from server.routes import models
from server.routes.params import CentreFilter, Limit, Offset, page
from server.runtime import StoreDep
from server.store import NotFound, Store

router = APIRouter(tags=["fleet and alarms"])

STATES = r"^(online|offline|unknown)$"


@router.get("/api/fleet", response_model=models.Page[models.FleetUnit])
def fleet(
    store: StoreDep,
    scope: Scope,
    centre: CentreFilter = None,
    state: Annotated[
        str | None, Query(pattern=STATES, description="unknown: never heard from.")
    ] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> dict:
    """Each unit by id: online or offline and since when, last heard live, software and
    config, access list installed against published, outbox backlog and its age, clock,
    faults and open alarm kinds."""
    if centre is not None:
        require_centre(scope, centre, f"no centre {centre!r}")
    now = time.time()
    units = [
        rules.unit_health(unit, published_version=published, open_alarms=kinds, now=now)
        for unit, published, kinds in store.fleet(centre_id=centre, centre_ids=scope.centres)
    ]
    if state is not None:
        units = [u for u in units if (u.get("state") or "unknown") == state]
    return page(units, limit, offset)


def unit_health(store: Store, device_id: str) -> dict:
    """One unit's fleet view (the unit must exist)."""
    for unit, published, kinds in store.fleet(device_id=device_id):
        return rules.unit_health(
            unit, published_version=published, open_alarms=kinds, now=time.time()
        )
    raise NotFound(f"no unit {device_id!r}")
