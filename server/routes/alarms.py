"""GET /api/alarms and POST /api/alarms/{id}/ack: alarms open and close by themselves and
stay listed until an operator acknowledges them (a manager: their centres' only)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from server.auth.deps import AuditDep, CanWrite, Scope, clock, require_centre
from server.domain import alarms as rules
from server.routes import models
from server.routes.params import DEVICE, MAX_ID, CentreFilter, Limit, Offset
from server.runtime import RuntimeDep, StoreDep

router = APIRouter(tags=["fleet and alarms"])

AlarmId = Annotated[int, Path(ge=1, le=MAX_ID)]
KINDS = rf"^({'|'.join(rules.KINDS)})$"
VIEWS = rf"^({'|'.join(rules.VIEWS)})$"


@router.get("/api/alarms", response_model=models.Page[models.AlarmPublic])
def list_alarms(
    store: StoreDep,
    scope: Scope,
    status: Annotated[
        str,
        Query(
            pattern=VIEWS,
            description="active (open or not yet acknowledged), open, closed, "
            "unacknowledged or all.",
        ),
    ] = "active",
    centre: CentreFilter = None,
    kind: Annotated[str | None, Query(pattern=KINDS)] = None,
    device: Annotated[str | None, Query(pattern=DEVICE, description="Only this unit.")] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> dict:
    """Alarms newest first, with the total matching the filters."""
    if centre is not None:
        require_centre(scope, centre, f"no centre {centre!r}")
    total, items = store.alarms(
        view=status,
        centre_id=centre,
        centre_ids=scope.centres,
        kind=kind,
        device_id=device,
        limit=limit,
        offset=offset,
    )
    return {"total": total, "limit": limit, "offset": offset, "items": items}


@router.post("/api/alarms/{alarm_id}/ack", response_model=models.AlarmPublic)
def acknowledge(
    alarm_id: AlarmId,
    runtime: RuntimeDep,
    operator: CanWrite,
    scope: Scope,
    audit: AuditDep,
) -> dict:
    """Say the alarm was seen: it leaves the default list once it is also closed (an open
    alarm stays listed until its condition ends). 409 when already acknowledged."""
    store = runtime.store
    alarm = store.alarm(alarm_id)
    require_centre(scope, alarm.get("centre_id"), f"no alarm {alarm_id}")
    done = store.acknowledge_alarm(alarm_id, operator.login, clock(runtime))
    audit.record(
        "alarm.acknowledged",
        "alarm",
        alarm_id,
        centre=alarm.get("centre_id"),
        before={"acknowledged_at": None, "acknowledged_by": None},
        after={
            "acknowledged_at": done["acknowledged_at"],
            "acknowledged_by": done["acknowledged_by"],
            "kind": alarm["kind"],
            "device_id": alarm["device_id"],
            "door": alarm["door"],
            "open": done["open"],
        },
    )
    return done
