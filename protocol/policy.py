"""The access policy: one set of rules for a unit deciding offline and the server online.

A decision names the rule that made it. In order:

1. ``unknown_card`` (no entry), ``revoked``, ``suspended``: the badge's state.
2. ``not_yet_valid`` / ``expired``: the member's own validity window.
3. ``centre_closed``: a closure day of the centre (works, holidays of the team) shuts the
   door for everyone.
4. The member's plans (``ListEntry.plans``). No plans at all (``None``): the validity
   window alone decides (members from before plans existed). Otherwise the door opens if
   one plan admits the member now, preferring plans that use no credit (subscriptions,
   then trials, then day-pass books). When none does, the refusal names the most useful
   reason among the plans' own: ``no_credit``, ``outside_hours``, ``centre_closed`` (a
   public holiday for a plan bound to opening hours), ``plan_not_started``,
   ``plan_expired``; an empty plan list means no plan is valid at this centre:
   ``wrong_centre``.

Day credits (books and trials): the first granted entry of a local calendar day, at any
centre, uses one day; later entries that day are free. ``used_today`` says whether the day
is already paid for, ``spent_offline`` how many days this unit used that the list's
``credits`` do not count yet.

Offline rule when credits run out: a unit lets a book holder in while its own count says a
day is left. Two units cut off from the server do not see each other's use, so a member
can enter at two centres on two different days with one day left: the server counts both
days when the events arrive (the book goes below zero and the invoice report shows the
days over), and the next list says ``credits`` 0 everywhere. Two centres on the same day
count one day.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from protocol.calendar import CENTRE_CLOSED, OUTSIDE_HOURS, Calendar, check_hours, in_window
from protocol.messages import (
    ACTIVE,
    DAY_PASS,
    OPENING_HOURS,
    REVOKED,
    SUBSCRIPTION,
    TRIAL,
    WINDOW,
    CentreHours,
    ListEntry,
    PlanRule,
)

GRANTED = "granted"
UNKNOWN_CARD = "unknown_card"
SUSPENDED_RULE = "suspended"
PLAN_EXPIRED = "plan_expired"
PLAN_NOT_STARTED = "plan_not_started"
WRONG_CENTRE = "wrong_centre"
NO_CREDIT = "no_credit"

# When no plan admits: the reason that helps the member most, first.
_REFUSAL_ORDER = (NO_CREDIT, OUTSIDE_HOURS, CENTRE_CLOSED, PLAN_NOT_STARTED, PLAN_EXPIRED)
# When several admit: the one that costs least.
_PLAN_ORDER = {SUBSCRIPTION: 0, TRIAL: 1, DAY_PASS: 2}


@dataclass(frozen=True)
class Verdict:
    """The rule that decided, and whether the entry uses a day credit (a new day on a book
    or a trial)."""

    reason: str
    member_id: int | None = None
    uses_credit: bool = False

    @property
    def granted(self) -> bool:
        return self.reason == GRANTED


def calendar_of(hours: CentreHours | None) -> Calendar | None:
    """The Calendar a list head carries (None: the list says nothing of hours)."""
    if hours is None:
        return None
    closures = frozenset(date.fromordinal(d) for d in hours.closed)
    return Calendar(
        timezone=hours.timezone,
        hours=check_hours(hours.hours),
        closed_days=closures | {date.fromordinal(d) for d in hours.holidays},
        closures=closures,
    )


def decide(
    entry: ListEntry | None,
    calendar: Calendar | None,
    now: float,
    *,
    used_today: bool = False,
    spent_offline: int = 0,
) -> Verdict:
    """Decide for ``entry`` at ``now`` (trusted epoch seconds) at a centre with
    ``calendar`` (None: open around the clock, no closed day)."""
    if entry is None:
        return Verdict(UNKNOWN_CARD)
    member = entry.member_id
    if entry.state != ACTIVE:
        return Verdict("revoked" if entry.state == REVOKED else SUSPENDED_RULE, member)
    if entry.valid_from is not None and now < entry.valid_from:
        return Verdict("not_yet_valid", member)
    if entry.valid_until is not None and now >= entry.valid_until:
        return Verdict("expired", member)
    if calendar is not None and calendar.local_day(now) in calendar.closures:
        return Verdict(CENTRE_CLOSED, member)
    if entry.plans is None:
        return Verdict(GRANTED, member)
    if not entry.plans:
        return Verdict(WRONG_CENTRE, member)
    refusals: list[str] = []
    for plan in sorted(entry.plans, key=lambda p: _PLAN_ORDER[p.kind]):
        reason = plan_reason(plan, calendar, now)
        if reason is None and plan.kind != SUBSCRIPTION and not used_today:
            left = (plan.credits or 0) - spent_offline
            if left <= 0:
                reason = NO_CREDIT
            else:
                return Verdict(GRANTED, member, uses_credit=True)
        if reason is None:
            return Verdict(GRANTED, member)
        refusals.append(reason)
    return Verdict(min(refusals, key=_REFUSAL_ORDER.index), member)


def plan_reason(plan: PlanRule, calendar: Calendar | None, now: float) -> str | None:
    """Why ``plan`` does not admit at ``now`` (credits aside), or None when it does."""
    if plan.valid_from is not None and now < plan.valid_from:
        return PLAN_NOT_STARTED
    if plan.valid_until is not None and now >= plan.valid_until:
        return PLAN_EXPIRED
    if plan.hours == OPENING_HOURS and calendar is not None:
        return calendar.why_closed(now)
    if plan.hours == WINDOW:
        if calendar is None:
            return None
        return None if in_window(plan.window, calendar.local(now)) else OUTSIDE_HOURS
    return None


def day_number(calendar: Calendar | None, now: float) -> int:
    """The local calendar day of ``now`` at the centre (``date.toordinal``); without a
    calendar, the day by the unit's own time zone."""
    if calendar is None:
        return date.fromtimestamp(now).toordinal()
    return calendar.local_day(now).toordinal()
