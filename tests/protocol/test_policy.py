"""The access policy as a table: plan × day × hour × credits × closure → decision and rule.

The centre (Europe/Paris) opens 08:30-18:00 on weekdays and 09:00-12:00 on Saturdays.
2026-11-11 is a public holiday (Armistice); 2026-12-24 a closure of the centre; the clocks
go forward on 2027-03-28 (02:00 → 03:00) and back on 2026-10-25.
"""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from protocol.calendar import Calendar, check_hours
from protocol.messages import (
    ALWAYS,
    DAY_PASS,
    OPENING_HOURS,
    REVOKED,
    SUBSCRIPTION,
    SUSPENDED,
    TRIAL,
    WINDOW,
    ListEntry,
    PlanRule,
)
from protocol.policy import calendar_of, decide
from server.domain.calendar import calendar as centre_calendar
from server.domain.calendar import for_units

PARIS = ZoneInfo("Europe/Paris")
BADGE = b"\x01" * 32
HOURS = [[(510, 1080)]] * 5 + [[(540, 720)], []]
HOLIDAY = date(2026, 11, 11)
CLOSURE = date(2026, 12, 24)
CAL = Calendar(
    timezone="Europe/Paris",
    hours=check_hours(HOURS),
    closed_days=frozenset({HOLIDAY, CLOSURE}),
    closures=frozenset({CLOSURE}),
)


def at(text: str) -> float:
    """Local Paris wall-clock time as epoch seconds."""
    return datetime.fromisoformat(text).replace(tzinfo=PARIS).timestamp()


def entry(*plans: PlanRule, state: int = 0, days: list[int] | None = None) -> ListEntry:
    return ListEntry(BADGE, 7, state, plans=list(plans), days=days or [])


SUB = PlanRule(SUBSCRIPTION, hours=OPENING_HOURS)
SUB_ALWAYS = PlanRule(SUBSCRIPTION, hours=ALWAYS)
SUB_ENDED = PlanRule(SUBSCRIPTION, valid_until=at("2026-11-01T00:00"), hours=OPENING_HOURS)
SUB_LATER = PlanRule(SUBSCRIPTION, valid_from=at("2027-01-01T00:00"), hours=OPENING_HOURS)
# Tuesday and Thursday mornings.
MORNINGS = PlanRule(SUBSCRIPTION, hours=WINDOW, window=[(1, 480, 720), (3, 480, 720)])
BOOK_3 = PlanRule(DAY_PASS, hours=OPENING_HOURS, credits=3)
BOOK_0 = PlanRule(DAY_PASS, hours=OPENING_HOURS, credits=0)
TRIAL_1 = PlanRule(TRIAL, hours=OPENING_HOURS, credits=1)
NIGHT_OWL = PlanRule(SUBSCRIPTION, hours=WINDOW, window=[(6, 60, 240)])  # Sundays 01:00-04:00

MONDAY_10 = "2026-11-23T10:00"
TODAY = date(2026, 11, 23).toordinal()


@pytest.mark.parametrize(
    ("case", "plans", "when", "used_today", "spent", "reason", "uses_credit"),
    [
        ("subscription, open", [SUB], MONDAY_10, False, 0, "granted", False),
        ("subscription, evening", [SUB], "2026-11-23T19:00", False, 0, "outside_hours", False),
        ("subscription, Saturday 11:00", [SUB], "2026-11-28T11:00", False, 0, "granted", False),
        (
            "subscription, Saturday 12:00",
            [SUB],
            "2026-11-28T12:00",
            False,
            0,
            "outside_hours",
            False,
        ),
        ("subscription, Sunday", [SUB], "2026-11-29T10:00", False, 0, "outside_hours", False),
        ("subscription, holiday", [SUB], "2026-11-11T10:00", False, 0, "centre_closed", False),
        ("24/7, holiday", [SUB_ALWAYS], "2026-11-11T10:00", False, 0, "granted", False),
        ("24/7, closure", [SUB_ALWAYS], "2026-12-24T10:00", False, 0, "centre_closed", False),
        ("24/7, night", [SUB_ALWAYS], "2026-11-23T03:00", False, 0, "granted", False),
        ("ended", [SUB_ENDED], MONDAY_10, False, 0, "plan_expired", False),
        ("not started", [SUB_LATER], MONDAY_10, False, 0, "plan_not_started", False),
        ("window, Tuesday 9:00", [MORNINGS], "2026-11-24T09:00", False, 0, "granted", False),
        ("window, Tuesday 14:00", [MORNINGS], "2026-11-24T14:00", False, 0, "outside_hours", False),
        ("window, Monday 9:00", [MORNINGS], "2026-11-23T09:00", False, 0, "outside_hours", False),
        ("book, first entry", [BOOK_3], MONDAY_10, False, 0, "granted", True),
        ("book, again today", [BOOK_3], MONDAY_10, True, 0, "granted", False),
        ("book, empty", [BOOK_0], MONDAY_10, False, 0, "no_credit", False),
        ("book, empty, paid today", [BOOK_0], MONDAY_10, True, 0, "granted", False),
        ("book, spent offline", [BOOK_3], MONDAY_10, False, 3, "no_credit", False),
        ("book, 2 of 3 spent", [BOOK_3], MONDAY_10, False, 2, "granted", True),
        ("book, evening", [BOOK_3], "2026-11-23T19:00", False, 0, "outside_hours", False),
        ("trial before book", [BOOK_3, TRIAL_1], MONDAY_10, False, 0, "granted", True),
        ("subscription spares credits", [BOOK_3, SUB], MONDAY_10, False, 0, "granted", False),
        ("ended sub + book", [SUB_ENDED, BOOK_3], MONDAY_10, False, 0, "granted", True),
        ("no credit beats expired", [SUB_ENDED, BOOK_0], MONDAY_10, False, 0, "no_credit", False),
        (
            "hours beat expired",
            [SUB_ENDED, SUB],
            "2026-11-23T19:00",
            False,
            0,
            "outside_hours",
            False,
        ),
        ("no plan here", [], MONDAY_10, False, 0, "wrong_centre", False),
        # DST: 2027-03-28 is a Sunday with 23 hours; 01:30 and 03:30 local both exist.
        ("DST spring, 01:30", [NIGHT_OWL], "2027-03-28T01:30", False, 0, "granted", False),
        ("DST spring, 03:30", [NIGHT_OWL], "2027-03-28T03:30", False, 0, "granted", False),
        ("DST spring, 04:30", [NIGHT_OWL], "2027-03-28T04:30", False, 0, "outside_hours", False),
        ("DST autumn, 08:40", [SUB], "2026-10-26T08:40", False, 0, "granted", False),
        ("DST autumn, 08:20", [SUB], "2026-10-26T08:20", False, 0, "outside_hours", False),
    ],
)
def test_policy_table(
    case: str,
    plans: list[PlanRule],
    when: str,
    used_today: bool,
    spent: int,
    reason: str,
    uses_credit: bool,
) -> None:
    verdict = decide(entry(*plans), CAL, at(when), used_today=used_today, spent_offline=spent)
    assert (verdict.reason, verdict.uses_credit) == (reason, uses_credit), case
    assert verdict.granted == (reason == "granted")


@pytest.mark.parametrize(
    ("state", "when", "reason"),
    [(REVOKED, MONDAY_10, "revoked"), (SUSPENDED, MONDAY_10, "suspended")],
)
def test_the_badge_state_comes_first(state: int, when: str, reason: str) -> None:
    assert decide(entry(SUB, state=state), CAL, at(when)).reason == reason


def test_a_member_without_plans_is_decided_by_the_validity_window_alone() -> None:
    legacy = ListEntry(BADGE, 7, valid_until=at("2026-12-01T00:00"))
    assert decide(legacy, CAL, at("2026-11-23T19:00")).reason == "granted"
    assert decide(legacy, CAL, at("2026-12-02T10:00")).reason == "expired"
    no_end = ListEntry(BADGE, 7)
    assert decide(no_end, CAL, at("2026-12-24T10:00")).reason == "centre_closed"


def test_the_calendar_a_unit_gets_decides_like_the_servers() -> None:
    """The server's calendar (holidays library, closures) → the list head → the unit."""
    centre = {"timezone": "Europe/Paris", "hours": HOURS}
    closures = [{"start_date": "2026-12-24", "end_date": "2026-12-24", "reason": "inventaire"}]
    server_side = centre_calendar(centre, closures, date(2026, 11, 1))
    unit_side = calendar_of(for_units(server_side, date(2026, 11, 1)))
    assert unit_side is not None
    for when in ("2026-11-11T10:00", "2026-12-24T10:00", "2026-12-25T10:00", MONDAY_10):
        for plan in (SUB, SUB_ALWAYS, BOOK_3):
            assert decide(entry(plan), unit_side, at(when)) == decide(
                entry(plan), server_side, at(when)
            ), (when, plan)
    assert date(2026, 12, 25) in unit_side.closed_days  # Noël, from the holidays library
    assert date(2026, 12, 25) not in unit_side.closures


def test_days_already_counted_by_the_server_are_not_counted_again() -> None:
    """The list's ``days`` holds today: the member has paid for it (another centre)."""
    paid = entry(BOOK_0, days=[TODAY])
    assert decide(paid, CAL, at(MONDAY_10), used_today=TODAY in paid.days).granted
