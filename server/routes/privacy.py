"""A member's data: exported (right of access) and erased (right to erasure), by admins
only; both are in the audit log, which never holds the member's personal values itself."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field

from server.auth.deps import AdminOnly, AuditDep, clock
from server.domain.lists import touched_centres
from server.routes import models
from server.routes.params import MAX_ID, MemberId
from server.runtime import RuntimeDep

router = APIRouter(tags=["members and badges"])

Rows = list[dict[str, Any]]


class MemberExport(models.Public):
    """Everything stored about one member, one list per kind of record."""

    exported_at: float
    member: dict[str, Any] = Field(description="The profile as stored.")
    badges: Rows = Field(description="Cards, as their keyed hashes.")
    plans: Rows | None = None
    credit_days: Rows | None = None
    presence: Rows | None = None
    events: Rows = Field(description="Raw events naming the member or one of their cards.")
    unknown_cards: Rows | None = None
    visits: Rows | None = Field(default=None, description="Present once visits are stored.")
    audit: Rows = Field(description="Audit entries about the member.")


class EraseRequest(BaseModel):
    confirm: int = Field(
        ge=1, le=MAX_ID, description="The member's id again: erasing cannot be undone."
    )


class EraseResult(models.Public):
    ok: bool
    member_id: int
    removed: dict[str, int] = Field(
        description="Rows deleted or anonymised per table (events: anonymised, counts kept)."
    )


@router.get("/api/members/{member_id}/export", response_model=MemberExport)
def export_member(
    member_id: MemberId, runtime: RuntimeDep, _: AdminOnly, audit: AuditDep
) -> dict[str, Any]:
    """Everything stored about the member, as JSON (GDPR right of access)."""
    data = runtime.store.member_export(member_id)
    audit.record(
        "member.exported",
        "member",
        member_id,
        after={key: len(value) for key, value in data.items() if isinstance(value, list)},
    )
    return {"exported_at": clock(runtime), **data}


@router.post("/api/members/{member_id}/erase", response_model=EraseResult)
def erase_member(
    member_id: MemberId,
    body: EraseRequest,
    runtime: RuntimeDep,
    _: AdminOnly,
    audit: AuditDep,
) -> dict[str, Any]:
    """Erase the member: profile, cards, plans, day credits and presence deleted; their
    events kept for the counts but naming nobody; personal values of their audit entries
    deleted; every list they could be in published again as a new snapshot."""
    if body.confirm != member_id:
        raise HTTPException(
            422, f"confirm: must repeat the member's id ({member_id}) to erase them"
        )
    member = runtime.store.member(member_id)
    removed = runtime.store.erase_member(member_id, now=clock(runtime), forget_lists=False)
    runtime.member_erased(touched_centres(member["centres"]))
    audit.record("member.erased", "member", member_id, after={"removed": removed})
    return {"ok": True, "member_id": member_id, "removed": removed}
