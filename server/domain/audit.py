"""Audit entries: who changed what, when, from where, with the values before and after.

Small event dataclasses, the shape the store appends and the API reads back; pure, no I/O.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

CLI_ACTOR = "cli"  # changes made on the server's command line

# Every action the audit log knows, so filters and reports can rely on the names.
ACTIONS = (
    "login.succeeded",
    "login.failed",
    "login.throttled",
    "logout",
    "password.changed",
    "password.reset",
    "operator.created",
    "operator.disabled",
    "token.created",
    "token.revoked",
    "centre.created",
    "device.assigned",
    "member.created",
    "member.updated",
    "badge.enrolled",
    "badge.revoked",
    "door.unlock",
    "unit.lockdown",
    "unit.release",
    # Centres' calendars, plans, suspensions, lost badges.
    "centre.updated",
    "closure.added",
    "closure.removed",
    "plan.created",
    "plan.given",
    "plan.ended",
    "member.suspended",
    "member.reactivated",
    "badge.replaced",
    "room.updated",
    "door.updated",
    "alarm.acknowledged",
    # Privacy: a member's data exported or erased, members imported, the retention applied.
    "member.exported",
    "member.erased",
    "member.imported",
    "retention.purged",
)


@dataclass(frozen=True)
class AuditEvent:
    """One audit entry. ``before``/``after`` hold only what the action changed or tells."""

    actor: str  # an operator's login, "cli", or the login typed at a failed attempt
    action: str  # one of ACTIONS
    target_kind: str  # operator, token, centre, device, member, badge, command, alarm
    target_id: str | None
    at: float
    centre_id: str | None = None
    address: str | None = None
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"unknown audit action {self.action!r}")  # a bug in the caller

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def changed(before: dict[str, Any], after: dict[str, Any]) -> tuple[dict, dict]:
    """(before, after) reduced to the keys whose value differs: what a change did."""
    keys = [k for k in after if before.get(k) != after.get(k)]
    keys += [k for k in before if k not in after and k not in keys]
    return {k: before.get(k) for k in keys}, {k: after.get(k) for k in keys}
