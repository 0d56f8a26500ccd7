from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, Field, model_validator

from protocol.badges import badge_hash, parse_uid
from server.domain.lists import touched_centres
from server.runtime import RuntimeDep, StoreDep

router = APIRouter(tags=["members and badges"])


class MemberCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    email: str | None = Field(default=None, max_length=320)
    valid_from: float | None = Field(default=None, description="Epoch seconds.")
    valid_until: float | None = Field(default=None, description="Epoch seconds.")
    centres: list[str] | None = Field(default=None, description="None: every centre.")


class MemberUpdate(BaseModel):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    email: str | None = Field(default=None, max_length=320)
    active: bool | None = Field(default=None, description="false revokes every badge at once.")
    valid_from: float | None = None
    valid_until: float | None = None
    centres: list[str] | None = None

    @model_validator(mode="after")
    def _no_null_for_required(self) -> MemberUpdate:
        for name in ("name", "active"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        return self


class BadgeEnrol(BaseModel):
    uid: str | None = Field(
        default=None,
        examples=["04:A1:B2:C3"],
        description="The card UID as printed or read; hashed at once.",
    )
    badge_hash: str | None = Field(
        default=None,
        pattern=r"^[0-9a-f]{64}$",
        description="From /api/unknown-cards: enrol a tapped card.",
    )
    label: str | None = Field(default=None, max_length=100)

    @model_validator(mode="after")
    def _one_of(self) -> BadgeEnrol:
        if (self.uid is None) == (self.badge_hash is None):
            raise ValueError("give exactly one of uid or badge_hash")
        return self


@router.get("/api/members")
def list_members(
    store: StoreDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict:
    total, items = store.members(limit=limit, offset=offset)
    return {"total": total, "items": items}


@router.post("/api/members", status_code=201)
def create_member(body: MemberCreate, runtime: RuntimeDep) -> dict:
    member = runtime.store.create_member(body.model_dump())
    runtime.access_changed(touched_centres(member["centres"]), [member["id"]])
    return member


@router.get("/api/members/{member_id}")
def get_member(member_id: int, store: StoreDep) -> dict:
    return store.member(member_id)


@router.patch("/api/members/{member_id}")
def update_member(member_id: int, body: MemberUpdate, runtime: RuntimeDep) -> dict:
    before = runtime.store.member(member_id)
    member = runtime.store.update_member(member_id, body.model_dump(exclude_unset=True))
    runtime.access_changed(touched_centres(before["centres"], member["centres"]), [member_id])
    return member


@router.post("/api/members/{member_id}/badges", status_code=201)
def enrol_badge(member_id: int, body: BadgeEnrol, runtime: RuntimeDep) -> dict:
    if body.uid is not None:
        try:
            hashed = badge_hash(runtime.badge_key, parse_uid(body.uid))
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
    else:
        hashed = body.badge_hash  # type: ignore[assignment]
    badge = runtime.store.enrol_badge(member_id, hashed, body.label)
    runtime.access_changed(touched_centres(runtime.store.member(member_id)["centres"]), [member_id])
    return badge


@router.post("/api/badges/{badge_id}/revoke")
def revoke_badge(badge_id: int, runtime: RuntimeDep) -> dict:
    badge = runtime.store.revoke_badge(badge_id)
    member = runtime.store.member(badge["member_id"])
    runtime.access_changed(touched_centres(member["centres"]), [member["id"]])
    return badge


@router.get("/api/unknown-cards")
def unknown_cards(store: StoreDep, centre: str | None = None) -> list[dict]:
    return store.unknown_cards(centre)
