"""The access rules for a card the unit's list did not know, decided online by the server."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from protocol.calendar import Calendar
from protocol.messages import ListEntry
from protocol.policy import day_number
from protocol.policy import decide as policy_decide

GRANTED = "granted"


@dataclass(frozen=True)
class BadgeRecord:
    """What is stored about one enrolled card and its member, as the access rules need it."""

    member_id: int
    revoked: bool
    active: bool
    valid_from: float | None
    valid_until: float | None
    centres: list[str] | None  # None: every centre


def admits_centre(centres: list[str] | None, centre_id: str) -> bool:
    """Whether a member with these centres may enter ``centre_id`` (None: every centre)."""
    return centres is None or centre_id in centres


def decide(badge: BadgeRecord | None, centre_id: str | None, now: float) -> str:
    """The reason for the answer: ``GRANTED`` when the door may open, else why not.

    The order matters: a revoked card says "revoked" even where it was never valid, so
    the person at the door is told the real problem first.
    """
    if badge is None:
        return "unknown_card"
    if badge.revoked:
        return "revoked"
    if not badge.active:
        return "suspended"
    if centre_id is None or not admits_centre(badge.centres, centre_id):
        return "wrong_centre"
    if badge.valid_from is not None and now < badge.valid_from:
        return "not_yet_valid"
    if badge.valid_until is not None and now >= badge.valid_until:
        return "expired"
    return GRANTED


def answer(
    badge: BadgeRecord | None,
    centre_id: str | None,
    entry: ListEntry | None,
    calendar: Callable[[], Calendar],
    now: float,
) -> tuple[str, ListEntry | None]:
    """The server's answer to a unit that asked about a card: (the reason, the entry to
    send with a grant, else None).

    The card's record first (``decide``), then the unit's own policy over the entry its
    list would hold (plans, hours, closed days, credits): one set of rules online and
    offline. ``entry`` is None when the member holds plans but none is live any more;
    ``calendar()`` (the centre's) is read only for a card that gets that far.
    """
    reason = decide(badge, centre_id, now)
    if reason != GRANTED:
        return reason, None
    if entry is None:
        return "plan_expired", None
    centre = calendar()
    today = day_number(centre, now)
    verdict = policy_decide(entry, centre, now, used_today=today in entry.days)
    return verdict.reason, entry if verdict.granted else None
