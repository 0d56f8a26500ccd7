"""Access lists v2, the rules: which badges a centre's list holds, and in which state.

Pure functions over plain records; the store selects the records, the list publisher
(``server.mqtt.lists``) diffs and publishes what they compile to.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

from protocol.messages import ACTIVE, REVOKED, SUSPENDED, ListEntry, PlanRule
from server.domain.access import admits_centre
from server.domain.plans import HOURS, KINDS

# Plans ended longer ago than this leave the list: the unit asks, the server says why.
PLAN_GRACE_S = 31 * 86400


class MemberPlans(NamedTuple):
    """What the list needs of the members' plans: each member's plan rows (live or recently
    ended), who holds plans at all, and the days already counted against their credits."""

    rows: dict[int, list[dict]]
    holders: set[int]
    days: dict[int, list[int]]


def plan_rules(rows: Iterable[dict], centre_id: str) -> list[PlanRule]:
    """The member's plans that cover ``centre_id``, as a unit needs them."""
    rules = []
    for row in rows:
        if not admits_centre(row["centres"], centre_id):
            continue
        credits = None
        if row["kind"] != "subscription":
            credits = max(0, (row["days"] or 0) - row["used"])
        rules.append(
            PlanRule(
                KINDS[row["kind"]],
                row["valid_from"],
                row["valid_until"],
                HOURS[row["hours"]],
                [tuple(w) for w in row["window"] or []],  # type: ignore[misc]
                credits,
            )
        )
    return rules


class BadgeRow(NamedTuple):
    """One badge and its member, as the list needs them (the store's row, in this order)."""

    badge_hash: str
    member_id: int
    revoked_at: float | None
    active: int | bool
    valid_from: float | None
    valid_until: float | None
    centres: Sequence[str] | None  # None: every centre
    exempt: int | bool = False  # the member's badges open during a lockdown


def compile_entries(
    centre_id: str,
    rows: Iterable[BadgeRow | tuple],
    now: float,
    *,
    centres_of: Callable[[Any], Sequence[str] | None] | None = None,
    plans: MemberPlans | None = None,
) -> dict[bytes, ListEntry]:
    """The entries of ``centre_id``'s list, by badge, in the order of ``rows``.

    Badges of members allowed at the centre are listed active, revoked or suspended, so a
    unit denies the last two at once, offline too. Members whose ``valid_until`` has passed
    are left out: a unit that does not know the card asks, and the server says ``expired``.
    A member's validity window travels in the entry; the unit checks it by its clock.

    ``centres_of`` decodes a row's ``centres`` when it comes in a stored form (once per
    distinct value: most members share a few). ``plans``: the members' plans; a member who
    holds plans but none live or recently ended is left out (the server answers online).
    """
    admitted: dict[Any, bool] = {}
    entries: dict[bytes, ListEntry] = {}
    for badge_hash, member_id, revoked_at, active, valid_from, valid_until, centres, exempt in rows:
        if valid_until is not None and valid_until <= now:
            continue
        if centres_of is None:
            if not admits_centre(centres, centre_id):
                continue
        else:
            allowed = admitted.get(centres)
            if allowed is None:
                allowed = admitted[centres] = admits_centre(centres_of(centres), centre_id)
            if not allowed:
                continue
        if revoked_at is not None:
            state = REVOKED
        elif not active:
            state = SUSPENDED
        else:
            state = ACTIVE
        rules = None
        days: list[int] = []
        if plans is not None and member_id in plans.holders:
            rows_of = plans.rows.get(member_id)
            if not rows_of:
                continue
            rules = plan_rules(rows_of, centre_id)
            days = plans.days.get(member_id, [])
        badge = bytes.fromhex(badge_hash)
        entries[badge] = ListEntry(
            badge, member_id, state, valid_from, valid_until, rules, days, bool(exempt)
        )
    return entries


def touched_centres(*centre_lists: Sequence[str] | None) -> set[str] | None:
    """The centres whose lists a member change may alter; None means every centre.

    Pass the member's centres before and after the change (just one for a new member or a
    badge change): a member for every centre (None) touches every list, else the union.
    """
    touched: set[str] = set()
    for centres in centre_lists:
        if centres is None:
            return None
        touched.update(centres)
    return touched
