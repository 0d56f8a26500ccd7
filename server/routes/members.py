from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException
from pydantic import AfterValidator, BaseModel, EmailStr, Field, model_validator

from protocol.badges import badge_hash, parse_uid
from server.auth.deps import AuditDep, CanWrite, Scope, require_centre
from server.data import communes
from server.domain.audit import changed
from server.domain.lists import touched_centres
from server.domain.operators import CentreScope
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
from server.store import NotFound, Store

router = APIRouter(tags=["members and badges"])


def _known_commune(code: str) -> str:
    if code not in communes():
        raise ValueError(
            f"commute_insee: commune {code} is not in the communes the impact report knows "
            "(server/data/communes.csv)"
        )
    return code


Insee = Annotated[
    str,
    Field(
        pattern=r"^(\d{5}|2[AB]\d{3})$",
        description="INSEE code of the commune the member would otherwise commute to.",
        examples=["14118"],
    ),
    AfterValidator(_known_commune),
]


class MemberCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    email: EmailStr | None = Field(default=None, max_length=320)
    valid_from: EpochSeconds | None = Field(default=None, description="Epoch seconds.")
    valid_until: EpochSeconds | None = Field(default=None, description="Epoch seconds.")
    centres: list[CentreId] | None = Field(
        default=None, max_length=1000, description="None: every centre."
    )
    lockdown_exempt: bool = Field(
        default=False, description="The member's badges still open a locked-down unit."
    )
    commute_insee: Insee | None = None

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
    lockdown_exempt: bool | None = None
    commute_insee: Insee | None = None

    @model_validator(mode="after")
    def _no_null_for_required(self) -> MemberUpdate:
        for name in ("name", "active", "lockdown_exempt"):
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

    def card_hash(self, key: bytes) -> str:
        """The card's hash: the one given, or the typed UID's (422 naming a bad UID)."""
        if self.uid is None:
            return self.badge_hash  # type: ignore[return-value]
        try:
            return badge_hash(key, parse_uid(self.uid))
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None


def audit_centre(centres: list[str] | None) -> str | None:
    """The centre an audit entry is filed under: the member's one centre, if one."""
    return centres[0] if centres and len(centres) == 1 else None


def visible_member(store: Store, scope: CentreScope, member_id: int) -> dict:
    """The member, or NotFound when the operator's centres do not include them."""
    member = store.member(member_id)
    if not scope.sees_member(member["centres"]):
        raise NotFound(f"no member {member_id}")
    return member


def check_changeable(scope: CentreScope, centres: list[str] | None, *, asked: bool) -> None:
    """Refuse a manager a member reaching beyond their centres (see domain.operators).

    ``asked``: the centres come from the request (a new member, a move), so a centre the
    manager does not see is unknown to them (404); otherwise the member is visible, with
    its centres, and the refusal is a 403.
    """
    if scope.changes_member(centres):
        return
    for centre_id in centres or () if asked else ():
        require_centre(scope, centre_id, f"no centre {centre_id!r}")
    raise HTTPException(
        403,
        "ce membre a accès à d'autres centres que les vôtres : seul un admin peut le modifier "
        "/ this member reaches centres beyond yours: only an admin can change them",
    )


@router.get("/api/members", response_model=models.Page[models.MemberPublic])
def list_members(
    store: StoreDep,
    scope: Scope,
    limit: Limit = 100,
    offset: Offset = 0,
) -> dict:
    """Members by name (a manager: those allowed at one of their centres or at all)."""
    total, items = store.members(limit=limit, offset=offset, centre_ids=scope.centres)
    return {"total": total, "limit": limit, "offset": offset, "items": items}


@router.post("/api/members", status_code=201, response_model=models.MemberPublic)
def create_member(
    body: MemberCreate, runtime: RuntimeDep, _: CanWrite, scope: Scope, audit: AuditDep
) -> dict:
    check_changeable(scope, body.centres, asked=True)
    known_centres(runtime.store, body.centres)
    member = runtime.store.create_member(body.model_dump())
    runtime.access_changed(touched_centres(member["centres"]), [member["id"]])
    audit.record(
        "member.created",
        "member",
        member["id"],
        centre=audit_centre(member["centres"]),
        after={k: v for k, v in member.items() if k != "badges"},
    )
    return member


@router.get("/api/members/{member_id}", response_model=models.MemberPublic)
def get_member(member_id: MemberId, store: StoreDep, scope: Scope) -> dict:
    return visible_member(store, scope, member_id)


@router.patch("/api/members/{member_id}", response_model=models.MemberPublic)
def update_member(
    member_id: MemberId,
    body: MemberUpdate,
    runtime: RuntimeDep,
    _: CanWrite,
    scope: Scope,
    audit: AuditDep,
) -> dict:
    before = visible_member(runtime.store, scope, member_id)
    check_changeable(scope, before["centres"], asked=False)
    fields = body.model_dump(exclude_unset=True)
    if "centres" in fields:
        check_changeable(scope, fields["centres"], asked=True)
    known_centres(runtime.store, body.centres)
    member = runtime.store.update_member(member_id, fields)
    runtime.access_changed(touched_centres(before["centres"], member["centres"]), [member_id])
    was, now = changed(
        {k: v for k, v in before.items() if k != "badges"},
        {k: v for k, v in member.items() if k != "badges"},
    )
    audit.record(
        "member.updated",
        "member",
        member_id,
        centre=audit_centre(member["centres"]),
        before=was,
        after=now,
    )
    return member


@router.post("/api/members/{member_id}/badges", status_code=201, response_model=models.BadgePublic)
def enrol_badge(
    member_id: MemberId,
    body: BadgeEnrol,
    runtime: RuntimeDep,
    _: CanWrite,
    scope: Scope,
    audit: AuditDep,
) -> dict:
    member = visible_member(runtime.store, scope, member_id)
    check_changeable(scope, member["centres"], asked=False)
    hashed = body.card_hash(runtime.badge_key)
    badge = runtime.store.enrol_badge(member_id, hashed, body.label)
    runtime.access_changed(touched_centres(member["centres"]), [member_id])
    audit.record(
        "badge.enrolled",
        "badge",
        badge["id"],
        centre=audit_centre(member["centres"]),
        after={
            "member_id": member_id,
            "label": badge["label"],
            "enrolled_at": badge["enrolled_at"],
        },
    )
    return badge


@router.post("/api/badges/{badge_id}/revoke", response_model=models.BadgePublic)
def revoke_badge(
    badge_id: BadgeId, runtime: RuntimeDep, _: CanWrite, scope: Scope, audit: AuditDep
) -> dict:
    before = runtime.store.badge(badge_id)
    try:
        member = visible_member(runtime.store, scope, before["member_id"])
    except NotFound:
        raise NotFound(f"no badge {badge_id}") from None
    check_changeable(scope, member["centres"], asked=False)
    badge = runtime.store.revoke_badge(badge_id)
    runtime.access_changed(touched_centres(member["centres"]), [member["id"]])
    audit.record(
        "badge.revoked",
        "badge",
        badge_id,
        centre=audit_centre(member["centres"]),
        before={"revoked_at": before["revoked_at"]},
        after={"revoked_at": badge["revoked_at"], "member_id": member["id"]},
    )
    return badge


@router.get("/api/unknown-cards", response_model=models.Page[models.UnknownCardPublic])
def unknown_cards(
    store: StoreDep,
    scope: Scope,
    centre: CentreFilter = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> dict:
    """Cards tapped but not enrolled (a manager: those tapped in their centres)."""
    if centre is not None:
        require_centre(scope, centre, f"no centre {centre!r}")
    return page(
        [c for c in store.unknown_cards(centre) if scope.sees(c["centre_id"])], limit, offset
    )
