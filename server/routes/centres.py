from __future__ import annotations

import time
import uuid

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field

from protocol import topics
from protocol.messages import Command, encode
from server.runtime import RuntimeDep, StoreDep

router = APIRouter(tags=["centres and units"])

IDENT = r"^[a-z0-9][a-z0-9-]{0,62}$"


class CentreCreate(BaseModel):
    id: str = Field(pattern=IDENT, examples=["boitron"])
    name: str = Field(min_length=1, max_length=200, examples=["Télécentre de Boitron"])
    commune: str | None = Field(default=None, max_length=200)


class DeviceAssign(BaseModel):
    centre_id: str = Field(pattern=IDENT)


class UnlockCommand(BaseModel):
    door: str = Field(pattern=IDENT)
    ttl_s: float = Field(default=10, gt=0, le=300, description="Ignored by the unit after this.")


@router.get("/api/centres")
def list_centres(store: StoreDep) -> list[dict]:
    return store.centres()


@router.post("/api/centres", status_code=201)
def create_centre(body: CentreCreate, store: StoreDep) -> dict:
    return store.create_centre(body.id, body.name, body.commune)


@router.get("/api/centres/{centre_id}")
def get_centre(centre_id: str, store: StoreDep) -> dict:
    return store.centre(centre_id)


@router.get("/api/devices")
def list_devices(store: StoreDep, centre: str | None = None) -> list[dict]:
    return store.devices(centre)


@router.get("/api/devices/{device_id}")
def get_device(device_id: str, store: StoreDep) -> dict:
    return store.device(device_id)


@router.put("/api/devices/{device_id}")
def assign_device(device_id: str, body: DeviceAssign, runtime: RuntimeDep) -> dict:
    try:
        topics.validate_device_id(device_id)
    except topics.TopicError as exc:
        raise HTTPException(422, f"device_id: {exc}") from None
    device = runtime.store.assign_device(device_id, body.centre_id)
    runtime.bridge.lists.invalidate([device_id])
    return device


@router.post("/api/devices/{device_id}/unlock", status_code=202)
def unlock(device_id: str, body: UnlockCommand, runtime: RuntimeDep) -> dict:
    device = runtime.store.device(device_id)
    if body.door not in device["doors"]:
        raise HTTPException(422, f"door: unit {device_id} has no door {body.door!r}")
    now = time.time()
    command = Command(str(uuid.uuid4()), "unlock", body.door, now + body.ttl_s, now)
    if not runtime.bridge.publish(topics.COMMAND, device_id, encode(command)):
        raise HTTPException(503, "the MQTT broker is not reachable; nothing was sent")
    return {"ok": True, "command_id": command.command_id, "expires_at": command.expires_at}
