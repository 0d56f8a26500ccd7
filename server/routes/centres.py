from __future__ import annotations

import time
import uuid

from fastapi import APIRouter, HTTPException
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from protocol import topics
from protocol.messages import Command
from server.errors import error_response
from server.routes import models
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

router = APIRouter(tags=["centres and units"])

IDENT = r"^[a-z0-9][a-z0-9-]{0,62}$"
DOOR = r"^[a-z0-9][a-z0-9_-]{0,31}$"


class CentreCreate(BaseModel):
    id: CentreId
    name: str = Field(min_length=1, max_length=200, examples=["Télécentre de Boitron"])
    commune: str | None = Field(default=None, max_length=200)


class DeviceAssign(BaseModel):
    centre_id: CentreId


class UnlockCommand(BaseModel):
    door: str = Field(pattern=DOOR, examples=["entree"])
    reason: str | None = Field(default=None, min_length=1, max_length=200)
    ttl_s: float = Field(
        default=10,
        gt=0,
        allow_inf_nan=False,
        description="The unit refuses the command after this; at most max_command_ttl_s.",
    )


@router.get("/api/centres", response_model=models.Page[models.CentrePublic])
def list_centres(store: StoreDep, limit: Limit = 100, offset: Offset = 0) -> dict:
    return page(store.centres(), limit, offset)


@router.post("/api/centres", status_code=201, response_model=models.CentrePublic)
def create_centre(body: CentreCreate, runtime: RuntimeDep) -> dict:
    centre = runtime.store.create_centre(body.id, body.name, body.commune)
    runtime.access_changed([body.id])  # its first (empty) list, for its units to find
    return centre


@router.get("/api/centres/{centre_id}", response_model=models.CentrePublic)
def get_centre(centre_id: CentreIdPath, store: StoreDep) -> dict:
    return store.centre(centre_id)


@router.get("/api/devices", response_model=models.Page[models.DevicePublic])
def list_devices(
    store: StoreDep, centre: CentreFilter = None, limit: Limit = 100, offset: Offset = 0
) -> dict:
    return page(store.devices(centre), limit, offset)


@router.get("/api/devices/{device_id}", response_model=models.DevicePublic)
def get_device(device_id: DeviceIdPath, store: StoreDep) -> dict:
    return store.device(device_id)


@router.put("/api/devices/{device_id}", response_model=models.DevicePublic)
def assign_device(device_id: DeviceIdPath, body: DeviceAssign, runtime: RuntimeDep) -> dict:
    try:
        topics.validate_device_id(device_id)
    except topics.TopicError as exc:
        raise HTTPException(422, f"device_id: {exc}") from None
    device = runtime.store.assign_device(device_id, body.centre_id)
    runtime.access_changed([body.centre_id])
    return device


@router.post(
    "/api/devices/{device_id}/unlock",
    response_model=models.UnlockResult,
    responses={409: {"description": "The unit refused"}, 503: {}, 504: {}},
)
def unlock(
    device_id: DeviceIdPath, body: UnlockCommand, runtime: RuntimeDep
) -> dict | JSONResponse:
    """Open a door remotely and say whether the unit did it.

    The command is signed, sent once (QoS 1, never retained, expiring with its ttl) and the
    call waits up to ``command_wait_s`` for the unit's answer: 200 executed, 409 refused
    (with the unit's reason), 503 unit offline, 504 no answer (a late answer is still
    recorded: see ``GET /api/commands/{command_id}``).
    """
    settings = runtime.settings
    if body.ttl_s > settings.max_command_ttl_s:
        raise HTTPException(422, f"ttl_s: at most {settings.max_command_ttl_s:g} seconds")
    device = runtime.store.device(device_id)
    bridge = runtime.bridge
    if device.get("state") != "online" or not bridge.connected.is_set():
        raise HTTPException(503, f"unit offline: {device_id} cannot be reached now")
    now = time.time()
    command = Command(
        command_id=str(uuid.uuid4()),
        device_id=device_id,
        action="unlock",
        door=body.door,
        issued_at=now,
        expires_at=now + body.ttl_s,
        requested_by="api",  # operators come with logins
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
def get_command(command_id: CommandIdPath, store: StoreDep) -> dict:
    return store.command(command_id)
