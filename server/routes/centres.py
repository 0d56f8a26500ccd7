from __future__ import annotations

import time
import uuid
from typing import Literal

from fastapi import APIRouter, HTTPException
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from protocol import topics
from protocol.messages import Command
from server.auth.deps import AdminOnly, AuditDep, CanWrite, Scope, require_centre
from server.errors import error_response
from server.routes import fleet, models
from server.routes.params import (
    CentreFilter,
    CentreId,
    CentreIdPath,
    CommandIdPath,
    DeviceIdPath,
    Limit,
    Offset,
    page,
)
from server.runtime import RuntimeDep, StoreDep
from server.store import NotFound

router = APIRouter(tags=["centres and units"])

IDENT = r"^[a-z0-9][a-z0-9-]{0,62}$"
DOOR = r"^[a-z0-9][a-z0-9_-]{0,31}$"


class CentreCreate(BaseModel):
    id: CentreId
    name: str = Field(min_length=1, max_length=200, examples=["Télécentre de Boitron"])
    commune: str | None = Field(default=None, max_length=200)


class DeviceAssign(BaseModel):
    centre_id: CentreId


class UnitCommand(BaseModel):
    reason: str | None = Field(default=None, min_length=1, max_length=200)
    ttl_s: float = Field(
        default=10,
        gt=0,
        allow_inf_nan=False,
        description="The unit refuses the command after this; at most max_command_ttl_s.",
    )


class UnlockCommand(UnitCommand):
    door: str = Field(pattern=DOOR, examples=["entree"])


@router.get("/api/centres", response_model=models.Page[models.CentrePublic])
def list_centres(store: StoreDep, scope: Scope, limit: Limit = 100, offset: Offset = 0) -> dict:
    return page([c for c in store.centres() if scope.sees(c["id"])], limit, offset)


@router.post("/api/centres", status_code=201, response_model=models.CentrePublic)
def create_centre(body: CentreCreate, runtime: RuntimeDep, _: AdminOnly, audit: AuditDep) -> dict:
    centre = runtime.store.create_centre(body.id, body.name, body.commune)
    runtime.access_changed([body.id])  # its first (empty) list, for its units to find
    audit.record("centre.created", "centre", body.id, centre=body.id, after=centre)
    return centre


@router.get("/api/centres/{centre_id}", response_model=models.CentrePublic)
def get_centre(centre_id: CentreIdPath, store: StoreDep, scope: Scope) -> dict:
    require_centre(scope, centre_id, f"no centre {centre_id!r}")
    return store.centre(centre_id)


@router.get("/api/devices", response_model=models.Page[models.DevicePublic])
def list_devices(
    store: StoreDep,
    scope: Scope,
    centre: CentreFilter = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> dict:
    if centre is not None:
        require_centre(scope, centre, f"no centre {centre!r}")
    devices = [d for d in store.devices(centre) if scope.sees(d.get("centre_id"))]
    return page(devices, limit, offset)


def visible_device(store: StoreDep, scope: Scope, device_id: str) -> dict:
    """The unit, or NotFound when it belongs to a centre the operator does not see."""
    device = store.device(device_id)
    require_centre(scope, device.get("centre_id"), f"no unit {device_id!r}")
    return device


@router.get("/api/devices/{device_id}", response_model=models.FleetUnit)
def get_device(device_id: DeviceIdPath, store: StoreDep, scope: Scope) -> dict:
    """The unit with its health, as in ``GET /api/fleet``."""
    visible_device(store, scope, device_id)
    return fleet.unit_health(store, device_id)


@router.put("/api/devices/{device_id}", response_model=models.DevicePublic)
def assign_device(
    device_id: DeviceIdPath,
    body: DeviceAssign,
    runtime: RuntimeDep,
    _: CanWrite,
    scope: Scope,
    audit: AuditDep,
) -> dict:
    """Register a unit in a centre, or move it (a manager: between their centres)."""
    try:
        topics.validate_device_id(device_id)
    except topics.TopicError as exc:
        raise HTTPException(422, f"device_id: {exc}") from None
    try:
        before: dict | None = visible_device(runtime.store, scope, device_id)
    except NotFound:
        before = None
        if scope.centres is not None and runtime.store.device_known(device_id):
            raise  # another centre's unit: as if it did not exist
    require_centre(scope, body.centre_id, f"no centre {body.centre_id!r}")
    device = runtime.store.assign_device(device_id, body.centre_id)
    runtime.access_changed([body.centre_id])
    audit.record(
        "device.assigned",
        "device",
        device_id,
        centre=body.centre_id,
        before={"centre_id": before.get("centre_id")} if before else None,
        after={"centre_id": body.centre_id},
    )
    return device


@router.post(
    "/api/devices/{device_id}/unlock",
    response_model=models.UnlockResult,
    responses={409: {"description": "The unit refused"}, 503: {}, 504: {}},
)
def unlock(
    device_id: DeviceIdPath,
    body: UnlockCommand,
    runtime: RuntimeDep,
    operator: CanWrite,
    scope: Scope,
    audit: AuditDep,
) -> dict | JSONResponse:
    """Open a door remotely and say whether the unit did it.

    The command is signed, sent once (QoS 1, never retained, expiring with its ttl) and the
    call waits up to ``command_wait_s`` for the unit's answer: 200 executed, 409 refused
    (with the unit's reason), 503 unit offline, 504 no answer (a late answer is still
    recorded: see ``GET /api/commands/{command_id}``).
    """
    return _command_unit(
        runtime, operator, scope, audit, device_id, "unlock", body, "door.unlock", body.door
    )


@router.post(
    "/api/devices/{device_id}/lockdown",
    response_model=models.UnlockResult,
    responses={409: {"description": "The unit refused"}, 503: {}, 504: {}},
)
def lockdown(
    device_id: DeviceIdPath,
    body: UnitCommand,
    runtime: RuntimeDep,
    operator: CanWrite,
    scope: Scope,
    audit: AuditDep,
) -> dict | JSONResponse:
    """Lock a unit down: until its release only lockdown-exempt badges open its doors (the
    exit buttons still do). Sent and answered like an unlock; the unit keeps the state
    across restarts and reports it in its status (``lockdown``)."""
    return _command_unit(
        runtime, operator, scope, audit, device_id, "lockdown", body, "unit.lockdown"
    )


@router.post(
    "/api/devices/{device_id}/release",
    response_model=models.UnlockResult,
    responses={409: {"description": "The unit refused"}, 503: {}, 504: {}},
)
def release(
    device_id: DeviceIdPath,
    body: UnitCommand,
    runtime: RuntimeDep,
    operator: CanWrite,
    scope: Scope,
    audit: AuditDep,
) -> dict | JSONResponse:
    """End a unit's lockdown. Sent and answered like an unlock."""
    return _command_unit(
        runtime, operator, scope, audit, device_id, "release", body, "unit.release"
    )


def _command_unit(
    runtime: RuntimeDep,
    operator: CanWrite,
    scope: Scope,
    audit: AuditDep,
    device_id: str,
    action: Literal["unlock", "lockdown", "release"],
    body: UnitCommand,
    audit_action: str,
    door: str | None = None,
) -> dict | JSONResponse:
    """Sign and send one command to a unit, wait for its answer, audit both."""
    settings = runtime.settings
    if body.ttl_s > settings.max_command_ttl_s:
        raise HTTPException(422, f"ttl_s: at most {settings.max_command_ttl_s:g} seconds")
    device = visible_device(runtime.store, scope, device_id)
    bridge = runtime.bridge
    if device.get("state") != "online" or not bridge.connected.is_set():
        raise HTTPException(503, f"unit offline: {device_id} cannot be reached now")
    now = time.time()
    command = Command(
        command_id=str(uuid.uuid4()),
        device_id=device_id,
        action=action,
        door=door,
        issued_at=now,
        expires_at=now + body.ttl_s,
        requested_by=operator.login,
        reason=body.reason,
    )
    runtime.store.create_command(command)
    pending = bridge.handlers.expect_result(command.command_id)
    try:
        if not bridge.send_command(command):
            raise HTTPException(503, f"unit offline: the broker is not reachable ({device_id})")
        answered = pending.done.wait(settings.command_wait_s)
    finally:
        bridge.handlers.forget(command.command_id)
    result = pending.result
    audit.record(
        audit_action,
        "command",
        command.command_id,
        centre=device.get("centre_id"),
        after={
            "device_id": device_id,
            **({"door": door} if door is not None else {}),
            "reason": body.reason,
            # The unit's answer; "no answer" when none came in time (a late one is
            # still recorded on the command).
            "result": result.result if answered and result else "no answer",
            "result_reason": result.reason if answered and result else None,
        },
    )
    if not answered or result is None:
        return error_response(
            504,
            f"the unit did not answer within {settings.command_wait_s:g} s; "
            "its answer, if it comes, is recorded with the command",
            command_id=command.command_id,
        )
    if result.result != "executed":
        return error_response(
            409,
            f"the unit refused the command: {result.reason}",
            command_id=command.command_id,
            result=result.result,
            reason=result.reason,
        )
    return {"ok": True, "command_id": command.command_id, "result": result.result}


@router.get("/api/commands/{command_id}", response_model=models.CommandPublic)
def get_command(command_id: CommandIdPath, store: StoreDep, scope: Scope) -> dict:
    command = store.command(command_id)
    try:
        visible_device(store, scope, command["device_id"])
    except NotFound:
        raise NotFound(f"no command {command_id!r}") from None
    return command
