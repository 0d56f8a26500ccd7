from __future__ import annotations

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, EmailStr, Field, model_validator

from protocol.badges import badge_hash, parse_uid
from server.domain.lists import touched_centres
from server.routes import models
from server.routes.params import (
    BadgeId,
    CentreFilter,
    CentreId,
    EpochSeconds,
    Limit,
    MemberId,
    Offset,
    check_validity,
    known_centres,
    page,
)
from server.runtime import RuntimeDep, StoreDep

router = APIRouter(tags=["members and badges"])


class MemberCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    email: EmailStr | None = Field(default=None, max_length=320)
    valid_from: EpochSeconds | None = Field(default=None, description="Epoch seconds.")
    valid_until: EpochSeconds | None = Field(default=None, description="Epoch seconds.")
    centres: list[CentreId] | None = Field(
        default=None, max_length=1000, description="None: every centre."
    )

    @model_validator(mode="after")
    def _valid_range(self) -> MemberCreate:
        check_validity(self.valid_from, self.valid_until)
        return self


class MemberUpdate(BaseModel):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    email: EmailStr | None = Field(default=None, max_length=320)
    active: bool | None = Field(default=None, description="false revokes every badge at once.")
    valid_from: EpochSeconds | None = None
    valid_until: EpochSeconds | None = None
    centres: list[CentreId] | None = Field(default=None, max_length=1000)

    @model_validator(mode="after")
    def _no_null_for_required(self) -> MemberUpdate:
        for name in ("name", "active"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        check_validity(self.valid_from, self.valid_until)
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


@router.get("/api/members", response_model=models.Page[models.MemberPublic])
def list_members(
    store: StoreDep,
    limit: Limit = 100,
    offset: Offset = 0,
) -> dict:
    total, items = store.members(limit=limit, offset=offset)
    return {"total": total, "limit": limit, "offset": offset, "items": items}


@router.post("/api/members", status_code=201, response_model=models.MemberPublic)
def create_member(body: MemberCreate, runtime: RuntimeDep) -> dict:
    known_centres(runtime.store, body.centres)
    member = runtime.store.create_member(body.model_dump())
    runtime.access_changed(touched_centres(member["centres"]), [member["id"]])
    return member


@router.get("/api/members/{member_id}", response_model=models.MemberPublic)
def get_member(member_id: MemberId, store: StoreDep) -> dict:
    return store.member(member_id)


@router.patch("/api/members/{member_id}", response_model=models.MemberPublic)
def update_member(member_id: MemberId, body: MemberUpdate, runtime: RuntimeDep) -> dict:
    before = runtime.store.member(member_id)
    known_centres(runtime.store, body.centres)
    member = runtime.store.update_member(member_id, body.model_dump(exclude_unset=True))
    runtime.access_changed(touched_centres(before["centres"], member["centres"]), [member_id])
    return member


@router.post("/api/members/{member_id}/badges", status_code=201, response_model=models.BadgePublic)
def enrol_badge(member_id: MemberId, body: BadgeEnrol, runtime: RuntimeDep) -> dict:
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


@router.post("/api/badges/{badge_id}/revoke", response_model=models.BadgePublic)
def revoke_badge(badge_id: BadgeId, runtime: RuntimeDep) -> dict:
    badge = runtime.store.revoke_badge(badge_id)
    member = runtime.store.member(badge["member_id"])
    runtime.access_changed(touched_centres(member["centres"]), [member["id"]])
    return badge


@router.get("/api/unknown-cards", response_model=models.Page[models.UnknownCardPublic])
def unknown_cards(
    store: StoreDep, centre: CentreFilter = None, limit: Limit = 100, offset: Offset = 0
) -> dict:
    return page(store.unknown_cards(centre), limit, offset)
