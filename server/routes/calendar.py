"""A centre's registry entry and calendar: where it is, its capacity, its weekly hours,
its closures and the public holidays. A change reaches the centre's units in their next
list (a new snapshot carries the calendar)."""

from __future__ import annotations

import time
from datetime import date, timedelta
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query
from pydantic import BaseModel, Field, model_validator

from protocol.calendar import CalendarError, check_hours, days_between, zone
from server.auth.deps import AuditDep, CanWrite, Scope, require_centre
from server.domain.audit import changed
from server.routes import models
from server.routes.params import DEVICE, MAX_ID, CentreIdPath
from server.runtime import RuntimeDep, StoreDep
from server.store import NotFound

router = APIRouter(tags=["centres and units"])

ClosureId = Annotated[int, Path(ge=1, le=MAX_ID)]
MinuteRow = Annotated[list[Annotated[int, Field(ge=0, le=1440)]], Field(min_length=2, max_length=2)]


class CentreUpdate(BaseModel):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    commune: str | None = Field(default=None, max_length=200)
    insee: str | None = Field(
        default=None, pattern=r"^(\d{5}|2[AB]\d{3})$", description="INSEE code, e.g. 61001."
    )
    address: str | None = Field(default=None, max_length=300)
    lat: float | None = Field(default=None, ge=-90, le=90, allow_inf_nan=False)
    lon: float | None = Field(default=None, ge=-180, le=180, allow_inf_nan=False)
    capacity: int | None = Field(default=None, ge=0, le=100_000)
    timezone: str | None = Field(default=None, max_length=64, examples=["Europe/Paris"])
    hours: list[Annotated[list[MinuteRow], Field(max_length=8)]] | None = Field(
        default=None,
        min_length=7,
        max_length=7,
        description="7 days, Monday first, of [start, end] minutes in local time; null: "
        "open around the clock.",
        examples=[[[[510, 1080]]] * 5 + [[], []]],
    )

    @model_validator(mode="after")
    def _checked(self) -> CentreUpdate:
        for name in ("name", "timezone"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        try:
            if self.timezone is not None:
                zone(self.timezone)
            if self.hours is not None:
                check_hours(self.hours)
        except CalendarError as exc:
            raise ValueError(str(exc)) from None
        return self


LOCAL_ID = r"^[a-z0-9][a-z0-9_-]{0,31}$"
LocalIdPath = Annotated[str, Path(pattern=LOCAL_ID, examples=["visio"])]


class RoomPut(BaseModel):
    name: str = Field(min_length=1, max_length=100, examples=["Salle visio"])
    capacity: int | None = Field(default=None, ge=0, le=10_000)
    bookable: bool = False


class DoorPut(BaseModel):
    name: str = Field(min_length=1, max_length=100, examples=["Entrée principale"])
    device_id: str | None = Field(default=None, pattern=DEVICE, description="Its unit.")


class ClosureCreate(BaseModel):
    start_date: date = Field(description="First closed day (local).")
    end_date: date = Field(description="Last closed day, included.")
    reason: str | None = Field(default=None, min_length=1, max_length=200)

    @model_validator(mode="after")
    def _ordered(self) -> ClosureCreate:
        if self.end_date < self.start_date:
            raise ValueError("end_date is before start_date")
        if (self.end_date - self.start_date).days > 366:
            raise ValueError("a closure lasts at most a year")
        return self


@router.patch("/api/centres/{centre_id}", response_model=models.CentrePublic)
def update_centre(
    centre_id: CentreIdPath,
    body: CentreUpdate,
    runtime: RuntimeDep,
    _: CanWrite,
    scope: Scope,
    audit: AuditDep,
) -> dict:
    require_centre(scope, centre_id, f"no centre {centre_id!r}")
    before = runtime.store.centre(centre_id)
    after = runtime.store.update_centre(centre_id, body.model_dump(exclude_unset=True))
    runtime.access_changed([centre_id])  # hours travel in the list's head
    was, now = changed(before, after)
    audit.record("centre.updated", "centre", centre_id, centre=centre_id, before=was, after=now)
    return after


@router.get("/api/centres/{centre_id}/closures", response_model=list[models.ClosurePublic])
def list_closures(centre_id: CentreIdPath, store: StoreDep, scope: Scope) -> list[dict]:
    require_centre(scope, centre_id, f"no centre {centre_id!r}")
    store.centre(centre_id)
    return store.closures(centre_id)


@router.post(
    "/api/centres/{centre_id}/closures", status_code=201, response_model=models.ClosurePublic
)
def add_closure(
    centre_id: CentreIdPath,
    body: ClosureCreate,
    runtime: RuntimeDep,
    _: CanWrite,
    scope: Scope,
    audit: AuditDep,
) -> dict:
    require_centre(scope, centre_id, f"no centre {centre_id!r}")
    closure = runtime.store.add_closure(
        centre_id, body.start_date.isoformat(), body.end_date.isoformat(), body.reason
    )
    runtime.access_changed([centre_id])
    audit.record("closure.added", "closure", closure["id"], centre=centre_id, after=closure)
    return closure


@router.delete(
    "/api/centres/{centre_id}/closures/{closure_id}", response_model=models.ClosurePublic
)
def remove_closure(
    centre_id: CentreIdPath,
    closure_id: ClosureId,
    runtime: RuntimeDep,
    _: CanWrite,
    scope: Scope,
    audit: AuditDep,
) -> dict:
    require_centre(scope, centre_id, f"no closure {closure_id}")
    closure = runtime.store.remove_closure(centre_id, closure_id)
    runtime.access_changed([centre_id])
    audit.record("closure.removed", "closure", closure_id, centre=centre_id, before=closure)
    return closure


@router.get("/api/centres/{centre_id}/calendar", response_model=list[models.CalendarDay])
def centre_calendar(
    centre_id: CentreIdPath,
    store: StoreDep,
    scope: Scope,
    start: Annotated[date | None, Query(alias="from", description="First day (local).")] = None,
    days: Annotated[int, Query(ge=1, le=62)] = 14,
) -> list[dict]:
    """Each day's opening intervals, or why the centre is closed (closure, public holiday)."""
    require_centre(scope, centre_id, f"no centre {centre_id!r}")
    now = time.time()
    cal = store.centre_calendar(centre_id, now)
    first = start or cal.local_day(now)
    if abs((first - cal.local_day(now)).days) > 365:
        raise HTTPException(422, "from: within a year of today")
    holidays = {d: "jour férié" for d in cal.closed_days - cal.closures}
    out = []
    for day in days_between(first, first + timedelta(days=days - 1)):
        reason = "fermeture" if day in cal.closures else holidays.get(day)
        intervals = [] if reason else [list(i) for i in cal.hours[day.weekday()]]
        out.append({"date": day.isoformat(), "open": intervals, "closed": reason})
    return out


@router.get("/api/centres/{centre_id}/rooms", response_model=list[models.RoomPublic])
def list_rooms(centre_id: CentreIdPath, store: StoreDep, scope: Scope) -> list[dict]:
    require_centre(scope, centre_id, f"no centre {centre_id!r}")
    return store.rooms(centre_id)


@router.put("/api/centres/{centre_id}/rooms/{room_id}", response_model=models.RoomPublic)
def put_room(
    centre_id: CentreIdPath,
    room_id: LocalIdPath,
    body: RoomPut,
    runtime: RuntimeDep,
    _: CanWrite,
    scope: Scope,
    audit: AuditDep,
) -> dict:
    require_centre(scope, centre_id, f"no centre {centre_id!r}")
    before = next((r for r in runtime.store.rooms(centre_id) if r["room_id"] == room_id), None)
    room = runtime.store.put_room(centre_id, room_id, body.model_dump())
    was, now = changed(before or {}, room)
    audit.record(
        "room.updated", "room", f"{centre_id}/{room_id}", centre=centre_id, before=was, after=now
    )
    return room


@router.get("/api/centres/{centre_id}/doors", response_model=list[models.DoorPublic])
def list_doors(centre_id: CentreIdPath, store: StoreDep, scope: Scope) -> list[dict]:
    require_centre(scope, centre_id, f"no centre {centre_id!r}")
    return store.doors(centre_id)


@router.put("/api/centres/{centre_id}/doors/{door_id}", response_model=models.DoorPublic)
def put_door(
    centre_id: CentreIdPath,
    door_id: LocalIdPath,
    body: DoorPut,
    runtime: RuntimeDep,
    _: CanWrite,
    scope: Scope,
    audit: AuditDep,
) -> dict:
    require_centre(scope, centre_id, f"no centre {centre_id!r}")
    before = next((d for d in runtime.store.doors(centre_id) if d["door_id"] == door_id), None)
    try:
        door = runtime.store.put_door(centre_id, door_id, body.model_dump())
    except NotFound as exc:
        if str(exc).startswith("device_id"):
            raise HTTPException(422, str(exc)) from None
        raise
    was, now = changed(before or {}, door)
    audit.record(
        "door.updated", "door", f"{centre_id}/{door_id}", centre=centre_id, before=was, after=now
    )
    return door
