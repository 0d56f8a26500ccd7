"""The online access rules, on plain records: no database, no clock."""

from __future__ import annotations

import pytest

from protocol.calendar import Calendar
from protocol.messages import DAY_PASS, ListEntry, PlanRule
from server.domain.access import GRANTED, BadgeRecord, admits_centre, answer, decide

NOW = 1_750_000_000.0


def record(**changes: object) -> BadgeRecord:
    fields: dict = {
        "member_id": 1,
        "revoked": False,
        "active": True,
        "valid_from": None,
        "valid_until": None,
        "centres": None,
    }
    fields.update(changes)
    return BadgeRecord(**fields)


@pytest.mark.parametrize(
    ("badge", "centre_id", "reason"),
    [
        (None, "boitron", "unknown_card"),
        (record(), "boitron", GRANTED),
        (record(revoked=True), "boitron", "revoked"),
        (record(active=False), "boitron", "suspended"),
        (record(revoked=True, centres=["belleme"]), "boitron", "revoked"),
        (record(), None, "wrong_centre"),
        (record(centres=["belleme"]), "boitron", "wrong_centre"),
        (record(centres=[]), "boitron", "wrong_centre"),
        (record(centres=["boitron"]), "boitron", GRANTED),
        (record(valid_from=NOW + 1), "boitron", "not_yet_valid"),
        (record(valid_from=NOW), "boitron", GRANTED),
        (record(valid_until=NOW), "boitron", "expired"),
        (record(valid_until=NOW + 1), "boitron", GRANTED),
    ],
)
def test_decide(badge: BadgeRecord | None, centre_id: str | None, reason: str) -> None:
    assert decide(badge, centre_id, NOW) == reason


def test_no_centres_means_every_centre() -> None:
    assert admits_centre(None, "boitron")
    assert not admits_centre([], "boitron")


# -- the whole online answer --------------------------------------------------------------

ENTRY = ListEntry(b"\xab" * 32, 1)


def test_answer_grants_with_the_entry_the_list_would_hold() -> None:
    assert answer(record(), "boitron", ENTRY, Calendar, NOW) == (GRANTED, ENTRY)


def test_answer_refuses_on_the_record_first_without_reading_the_calendar() -> None:
    def unread() -> Calendar:
        raise AssertionError("the calendar of a refused card was read")

    assert answer(record(revoked=True), "boitron", ENTRY, unread, NOW) == ("revoked", None)
    assert answer(None, "boitron", None, unread, NOW) == ("unknown_card", None)
    assert answer(record(), None, None, unread, NOW) == ("wrong_centre", None)
    # Plans held, none live: the list would leave the card out.
    assert answer(record(), "boitron", None, unread, NOW) == ("plan_expired", None)


def test_answer_applies_the_units_policy_to_the_entry() -> None:
    today = Calendar().local_day(NOW)
    closed = Calendar(closed_days=frozenset({today}), closures=frozenset({today}))
    assert answer(record(), "boitron", ENTRY, lambda: closed, NOW) == ("centre_closed", None)
    book = ListEntry(ENTRY.badge, 1, plans=[PlanRule(DAY_PASS, credits=0)])
    assert answer(record(), "boitron", book, Calendar, NOW)[1] is None
    used_today = ListEntry(ENTRY.badge, 1, plans=book.plans, days=[today.toordinal()])
    assert answer(record(), "boitron", used_today, Calendar, NOW) == (GRANTED, used_today)
