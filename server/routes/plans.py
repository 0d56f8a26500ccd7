"""Plans: the catalogue, the plans members hold, suspension and the lost badge.

The catalogue is the admins'; giving a member a plan, suspending, reactivating and
replacing a lost badge follow the members' rules (a manager for members of their centres
only). Every change is audited and reaches the units' lists at once.
"""

from __future__ import annotations

import time
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Path
from pydantic import BaseModel, Field, model_validator

from server.auth.deps import AdminOnly, AuditDep, CanWrite, Scope
from server.domain.lists import touched_centres
from server.routes import models
from server.routes.members import BadgeEnrol, audit_centre, check_changeable, visible_member
from server.routes.params import (
    MAX_ID,
    BadgeId,
    CentreId,
    EpochSeconds,
    MemberId,
    check_validity,
    known_centres,
)
from server.runtime import RuntimeDep, StoreDep
from server.store import NotFound

router = APIRouter(tags=["plans"])

PlanId = Annotated[int, Path(ge=1, le=MAX_ID)]
HeldId = Annotated[int, Path(ge=1, le=MAX_ID)]
WindowRow = Annotated[
    list[Annotated[int, Field(ge=0, le=1440)]],
    Field(min_length=3, max_length=3, description="[weekday 0-6 Monday first, start, end]"),
]


class PlanCreate(BaseModel):
    name: str = Field(min_length=1, max_length=100, examples=["Carnet 10 jours"])
    kind: Literal["subscription", "day_pass", "trial"]
    days: int | None = Field(default=None, ge=1, le=3650, description="Book or trial days.")
    duration_days: int | None = Field(
        default=None, ge=1, le=3650, description="How long a member holds it, by default."
    )
    centres: list[CentreId] | None = Field(default=None, max_length=1000)
    hours: Literal["always", "opening", "window"] = "opening"
    window: list[WindowRow] = Field(default=[], max_length=64)
    price_cents: int | None = Field(default=None, ge=0, le=10**9)

    @model_validator(mode="after")
    def _coherent(self) -> PlanCreate:
        if self.kind == "subscription" and self.days is not None:
            raise ValueError("days: only books and trials count days")
        if self.kind != "subscription" and self.days is None:
            raise ValueError(f"days: required for a {self.kind}")
        if (self.hours == "window") != bool(self.window):
            raise ValueError("window: required with hours 'window', and only then")
        for row in self.window:
            if row[0] > 6 or row[1] >= row[2]:
                raise ValueError(f"window: {row} is not [weekday 0-6, start < end]")
        return self


class PlanGive(BaseModel):
    plan_id: int = Field(ge=1, le=MAX_ID)
    valid_from: EpochSeconds | None = Field(default=None, description="Default: now.")
    valid_until: EpochSeconds | None = Field(
        default=None, description="Default: valid_from + the plan's duration_days, if any."
    )

    @model_validator(mode="after")
    def _range(self) -> PlanGive:
        check_validity(self.valid_from, self.valid_until)
        return self


class Suspension(BaseModel):
    reason: str = Field(min_length=1, max_length=200, examples=["impayé"])


@router.get("/api/plans", response_model=list[models.PlanPublic])
def list_plans(store: StoreDep, _: Scope) -> list[dict]:
    return store.plans()


@router.post("/api/plans", status_code=201, response_model=models.PlanPublic)
def create_plan(body: PlanCreate, runtime: RuntimeDep, _: AdminOnly, audit: AuditDep) -> dict:
    known_centres(runtime.store, body.centres)
    plan = runtime.store.create_plan(body.model_dump())
    audit.record("plan.created", "plan", plan["id"], after=plan)
    return plan


@router.get("/api/plans/{plan_id}", response_model=models.PlanPublic)
def get_plan(plan_id: PlanId, store: StoreDep, _: Scope) -> dict:
    return store.plan(plan_id)


@router.get("/api/members/{member_id}/plans", response_model=list[models.MemberPlanPublic])
def member_plans(member_id: MemberId, store: StoreDep, scope: Scope) -> list[dict]:
    visible_member(store, scope, member_id)
    return store.member_plans(member_id)


@router.post(
    "/api/members/{member_id}/plans", status_code=201, response_model=models.MemberPlanPublic
)
def give_plan(
    member_id: MemberId,
    body: PlanGive,
    runtime: RuntimeDep,
    _: CanWrite,
    scope: Scope,
    audit: AuditDep,
) -> dict:
    member = visible_member(runtime.store, scope, member_id)
    check_changeable(scope, member["centres"], asked=False)
    try:
        runtime.store.plan(body.plan_id)
    except NotFound:
        raise HTTPException(422, f"plan_id: no plan {body.plan_id}") from None
    valid_from = body.valid_from if body.valid_from is not None else time.time()
    held = runtime.store.give_plan(member_id, body.plan_id, valid_from, body.valid_until)
    runtime.access_changed(touched_centres(member["centres"]), [member_id])
    audit.record(
        "plan.given", "member", member_id, centre=audit_centre(member["centres"]), after=held
    )
    return held


@router.post("/api/members/{member_id}/plans/{held_id}/end", response_model=models.MemberPlanPublic)
def end_plan(
    member_id: MemberId,
    held_id: HeldId,
    runtime: RuntimeDep,
    _: CanWrite,
    scope: Scope,
    audit: AuditDep,
) -> dict:
    member = visible_member(runtime.store, scope, member_id)
    check_changeable(scope, member["centres"], asked=False)
    held = runtime.store.end_member_plan(member_id, held_id)
    runtime.access_changed(touched_centres(member["centres"]), [member_id])
    audit.record(
        "plan.ended",
        "member",
        member_id,
        centre=audit_centre(member["centres"]),
        before={"plan": held_id, "ended_at": None},
        after={"plan": held_id, "ended_at": held["ended_at"]},
    )
    return held


def _set_suspension(
    member_id: int,
    reason: str | None,
    runtime: RuntimeDep,
    scope: Scope,
    audit: AuditDep,
    action: str,
) -> dict:
    before = visible_member(runtime.store, scope, member_id)
    check_changeable(scope, before["centres"], asked=False)
    suspended = reason if action == "member.suspended" else None
    member = runtime.store.update_member(
        member_id,
        {
            "active": action != "member.suspended",
            "suspended_reason": suspended,
            "suspended_at": time.time() if suspended else None,
        },
    )
    runtime.access_changed(touched_centres(member["centres"]), [member_id])
    audit.record(
        action,
        "member",
        member_id,
        centre=audit_centre(member["centres"]),
        before={"active": before["active"], "suspended_reason": before["suspended_reason"]},
        after={"active": member["active"], "reason": reason},
    )
    return member


@router.post("/api/members/{member_id}/suspend", response_model=models.MemberPublic)
def suspend(
    member_id: MemberId,
    body: Suspension,
    runtime: RuntimeDep,
    _: CanWrite,
    scope: Scope,
    audit: AuditDep,
) -> dict:
    """Every badge of the member is refused ``suspended`` at once, offline too."""
    return _set_suspension(member_id, body.reason, runtime, scope, audit, "member.suspended")


@router.post("/api/members/{member_id}/reactivate", response_model=models.MemberPublic)
def reactivate(
    member_id: MemberId,
    body: Suspension,
    runtime: RuntimeDep,
    _: CanWrite,
    scope: Scope,
    audit: AuditDep,
) -> dict:
    return _set_suspension(member_id, body.reason, runtime, scope, audit, "member.reactivated")


@router.post("/api/badges/{badge_id}/replace", status_code=201, response_model=models.BadgePublic)
def replace_lost_badge(
    badge_id: BadgeId,
    body: BadgeEnrol,
    runtime: RuntimeDep,
    _: CanWrite,
    scope: Scope,
    audit: AuditDep,
) -> dict:
    """ "Badge perdu": the lost badge is revoked and the new one enrolled in one commit."""
    lost = runtime.store.badge(badge_id)
    try:
        member = visible_member(runtime.store, scope, lost["member_id"])
    except NotFound:
        raise NotFound(f"no badge {badge_id}") from None
    check_changeable(scope, member["centres"], asked=False)
    hashed = body.card_hash(runtime.badge_key)
    badge = runtime.store.replace_badge(badge_id, hashed, body.label)
    runtime.access_changed(touched_centres(member["centres"]), [member["id"]])
    audit.record(
        "badge.replaced",
        "badge",
        badge_id,
        centre=audit_centre(member["centres"]),
        before={"badge": badge_id, "revoked_at": lost["revoked_at"]},
        after={"revoked": badge_id, "new_badge": badge["id"], "member_id": member["id"]},
    )
    return badge
