"""Door decisions from the local access list, as a member at the door sees them."""

from __future__ import annotations

from edge.access import LocalAccess
from protocol.messages import AccessList, BadgeGrant

NOW = 1_760_000_000.0  # October 2025
DAY = 86_400.0

ALICE = BadgeGrant("hash-alice", member_id=1, valid_from=NOW - 30 * DAY, valid_until=NOW + DAY)
BOB = BadgeGrant("hash-bob", member_id=2)  # no window: always valid
TOMORROW = BadgeGrant("hash-carol", member_id=3, valid_from=NOW + DAY)
LAPSED = BadgeGrant("hash-dave", member_id=4, valid_until=NOW - DAY)


def access_with(*grants: BadgeGrant, version: int = 1, issued_at: float = NOW) -> LocalAccess:
    access = LocalAccess()
    assert access.replace(AccessList(version=version, issued_at=issued_at, grants=list(grants)))
    return access


def test_a_member_with_a_current_plan_is_granted() -> None:
    access = access_with(ALICE, BOB)

    alice = access.decide("hash-alice", NOW)
    bob = access.decide("hash-bob", NOW)

    assert (alice.granted, alice.reason, alice.member_id) == (True, "granted", 1)
    assert (bob.granted, bob.member_id) == (True, 2)
    assert not alice.needs_server


def test_an_unknown_card_is_denied_and_asked_of_the_server() -> None:
    access = access_with(ALICE)

    decision = access.decide("hash-stranger", NOW)

    assert not decision.granted
    assert decision.reason == "unknown_card"
    assert decision.needs_server
    assert decision.member_id is None


def test_a_unit_without_any_list_asks_the_server_for_every_card() -> None:
    decision = LocalAccess().decide("hash-alice", NOW)

    assert decision.needs_server
    assert not decision.granted


def test_a_plan_that_starts_later_is_not_yet_valid() -> None:
    decision = access_with(TOMORROW).decide("hash-carol", NOW)

    assert (decision.granted, decision.reason, decision.member_id) == (False, "not_yet_valid", 3)
    assert not decision.needs_server


def test_a_lapsed_plan_is_expired() -> None:
    decision = access_with(LAPSED).decide("hash-dave", NOW)

    assert (decision.granted, decision.reason, decision.member_id) == (False, "expired", 4)
    assert not decision.needs_server


def test_a_plan_starts_at_valid_from_and_ends_at_valid_until() -> None:
    week = BadgeGrant("hash-week", member_id=6, valid_from=NOW + DAY, valid_until=NOW + 8 * DAY)
    access = access_with(week)

    assert access.decide("hash-week", week.valid_from - 1).reason == "not_yet_valid"
    assert access.decide("hash-week", week.valid_from).granted
    assert access.decide("hash-week", week.valid_until - 1).granted
    assert access.decide("hash-week", week.valid_until).reason == "expired"


def test_a_newer_list_replaces_the_old_one_whole() -> None:
    access = access_with(ALICE, BOB, version=1)

    installed = access.replace(AccessList(version=2, issued_at=NOW + 60, grants=[BOB]))

    assert installed
    assert access.version == 2
    assert access.decide("hash-alice", NOW + 60).needs_server  # revoked: no longer on the list
    assert access.decide("hash-bob", NOW + 60).granted


def test_an_older_or_equal_list_is_ignored() -> None:
    access = access_with(BOB, version=5)

    stale = access.replace(AccessList(version=4, issued_at=NOW - DAY, grants=[ALICE]))
    same = access.replace(AccessList(version=5, issued_at=NOW, grants=[ALICE]))

    assert (stale, same) == (False, False)
    assert access.version == 5
    assert access.decide("hash-alice", NOW).needs_server
    assert access.decide("hash-bob", NOW).granted


def test_a_grant_learnt_online_lets_the_card_in_until_the_next_list() -> None:
    access = access_with(BOB, version=1)
    day_pass = BadgeGrant("hash-erin", member_id=5, valid_until=NOW + DAY)

    access.learn(day_pass)
    learnt = access.decide("hash-erin", NOW)
    access.replace(AccessList(version=1, issued_at=NOW, grants=[BOB]))  # stale copy: ignored
    after_stale = access.decide("hash-erin", NOW)
    access.replace(AccessList(version=2, issued_at=NOW, grants=[BOB]))
    after_new = access.decide("hash-erin", NOW)

    assert (learnt.granted, learnt.member_id) == (True, 5)
    assert after_stale.granted
    assert after_new.needs_server and not after_new.granted


def test_a_unit_whose_clock_says_1970_still_grants_a_valid_member() -> None:
    access = access_with(ALICE, LAPSED, issued_at=NOW)

    booted_without_rtc = 0.0

    assert access.trusted_now(booted_without_rtc) == NOW
    assert access.decide("hash-alice", booted_without_rtc).granted
    # The floor does not resurrect a plan that had ended when the list was issued.
    assert access.decide("hash-dave", booted_without_rtc).reason == "expired"


def test_a_correct_clock_is_used_as_is() -> None:
    access = access_with(ALICE, issued_at=NOW)

    later = NOW + 2 * DAY

    assert access.trusted_now(later) == later
    assert access.decide("hash-alice", later).reason == "expired"
