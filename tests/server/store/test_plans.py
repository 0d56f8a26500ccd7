"""Plans in the store: what the lists carry, and day credits reconciled from the events."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from protocol.messages import DAY_PASS, SUBSCRIPTION
from server.store import Store
from tests.server.store.test_store import HASH_A, HASH_B, access

PARIS = ZoneInfo("Europe/Paris")
WEEKDAYS = [[[510, 1080]]] * 5 + [[], []]


def local(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=PARIS).timestamp()


MONDAY = local("2026-11-23T09:00")


@pytest.fixture
def store(store_at: Path | str) -> Iterator[Store]:
    s = Store(store_at)
    for centre in ("boitron", "belleme"):
        s.create_centre(centre, centre.title())
        s.update_centre(centre, {"hours": WEEKDAYS})
        s.assign_device(f"{centre}-01", centre)
    yield s
    s.close()


def member_with(store: Store, *plans: dict, badge: str = HASH_A) -> int:
    member = store.create_member({"name": "Camille Leroy"})
    store.enrol_badge(member["id"], badge)
    for fields in plans:
        plan = store.create_plan({"hours": "opening", **fields})
        store.give_plan(member["id"], plan["id"], MONDAY - 3600, None)
    return member["id"]


def book(days: int, name: str = "Carnet") -> dict:
    return {"name": name, "kind": "day_pass", "days": days}


def entered(store: Store, device: str, seq: int, member_id: int, when: str) -> tuple[int, ...]:
    event = access(device, seq, ts=local(when), member_id=member_id)
    return store.ingest(device, [event], received_at=local(when)).result(timeout=10).credited


def days_left(store: Store, member_id: int) -> list[int]:
    return [p["days_left"] for p in store.member_plans(member_id) if "days_left" in p]


def test_the_list_carries_each_members_plans_credits_and_counted_days(store: Store) -> None:
    member_id = member_with(store, book(10), {"name": "Abonnement", "kind": "subscription"})
    entered(store, "boitron-01", 1, member_id, "2026-11-23T09:30")
    (entry,) = store.list_entries("boitron", MONDAY).values()
    kinds = sorted((p.kind, p.credits) for p in entry.plans or [])
    assert kinds == [(SUBSCRIPTION, None), (DAY_PASS, 10)]  # the subscription covered it
    assert entry.days == []


def test_a_day_pass_used_at_two_centres_the_same_day_counts_one_day(store: Store) -> None:
    member_id = member_with(store, book(3))
    assert entered(store, "boitron-01", 1, member_id, "2026-11-23T09:30") == (member_id,)
    assert entered(store, "belleme-01", 1, member_id, "2026-11-23T14:00") == ()
    assert days_left(store, member_id) == [2]
    (entry,) = store.list_entries("belleme", MONDAY).values()
    assert entry.plans is not None and entry.plans[0].credits == 2
    assert entry.days == [datetime(2026, 11, 23).toordinal()]


def test_days_used_offline_past_the_book_go_below_zero(store: Store) -> None:
    """The written rule: two units cut off from the server each let the member use the
    last day, on two different days; both days are counted (days over)."""
    member_id = member_with(store, book(1))
    entered(store, "boitron-01", 1, member_id, "2026-11-23T09:30")
    entered(store, "belleme-01", 1, member_id, "2026-11-24T09:30")
    assert days_left(store, member_id) == [-1]
    (entry,) = store.list_entries("boitron", MONDAY).values()
    assert entry.plans is not None and entry.plans[0].credits == 0


def test_a_resent_event_and_a_late_one_count_their_day_once(store: Store) -> None:
    member_id = member_with(store, book(5))
    event = access("boitron-01", 1, ts=local("2026-11-23T09:30"), member_id=member_id)
    store.ingest("boitron-01", [event], received_at=MONDAY).result(timeout=10)
    store.ingest("boitron-01", [event], received_at=MONDAY).result(timeout=10)
    # A later entry of the same local day, arriving days afterwards (historical).
    late = access("boitron-01", 2, ts=local("2026-11-23T17:55"), member_id=member_id)
    store.ingest("boitron-01", [late], received_at=local("2026-11-27T10:00")).result(timeout=10)
    assert days_left(store, member_id) == [4]


def test_the_local_day_decides_across_midnight_utc(store: Store) -> None:
    """00:30 in Paris is still the previous day in UTC: the day counted is Paris's."""
    store.update_centre("boitron", {"hours": None})  # open around the clock
    member_id = member_with(store, {**book(5), "hours": "always"})
    entered(store, "boitron-01", 1, member_id, "2026-11-23T23:30")
    entered(store, "boitron-01", 2, member_id, "2026-11-24T00:30")
    assert days_left(store, member_id) == [3]


def test_a_trial_is_used_before_a_book(store: Store) -> None:
    member_id = member_with(store, book(5), {"name": "Essai", "kind": "trial", "days": 1})
    entered(store, "boitron-01", 1, member_id, "2026-11-23T09:30")
    entered(store, "boitron-01", 2, member_id, "2026-11-24T09:30")
    plans = {p["kind"]: p["days_left"] for p in store.member_plans(member_id)}
    assert plans == {"trial": 0, "day_pass": 4}


def test_members_whose_plans_all_ended_leave_the_list(store: Store) -> None:
    member_id = member_with(store, book(5))
    (held,) = store.member_plans(member_id)
    store.end_member_plan(member_id, held["id"])
    member_with(store, badge=HASH_B)  # no plans at all: the validity window decides
    entries = store.list_entries("boitron", MONDAY)
    assert [e.member_id for e in entries.values()] == [member_id + 1]
    assert next(iter(entries.values())).plans is None


def test_an_online_answer_reads_the_entry_the_list_would_hold(store: Store) -> None:
    member_id = member_with(store, book(3))
    other = member_with(store, book(3, "Carnet B"), badge=HASH_B)
    entered(store, "boitron-01", 1, member_id, "2026-11-23T09:30")
    entered(store, "boitron-01", 2, other, "2026-11-20T10:00")  # not the member's days
    entered(store, "belleme-01", 1, other, "2026-11-19T10:00")
    listed = store.list_entries("boitron", MONDAY)
    centre, record, entry = store.asked_card("boitron-01", HASH_A, MONDAY)
    assert (centre, record and record.member_id) == ("boitron", member_id)
    assert entry == listed[bytes.fromhex(HASH_A)]
    assert entry is not None and entry.days == [datetime(2026, 11, 23).toordinal()]
    assert store.asked_card("belleme-01", HASH_B, MONDAY)[2] == listed[bytes.fromhex(HASH_B)]


def test_an_online_answer_reads_no_entry_for_a_card_the_rules_refuse(store: Store) -> None:
    ended = member_with(store, book(3))
    (held,) = store.member_plans(ended)
    store.end_member_plan(ended, held["id"])
    assert store.asked_card("boitron-01", HASH_A, MONDAY)[2] is None  # answered plan_expired
    revoked = member_with(store, badge=HASH_B)
    store.revoke_badge(store.member(revoked)["badges"][0]["id"])
    centre, record, entry = store.asked_card("boitron-01", HASH_B, MONDAY)
    assert (centre, record and record.revoked, entry) == ("boitron", True, None)
    assert store.asked_card("boitron-01", "ee" * 32, MONDAY) == ("boitron", None, None)
    unknown_unit = store.asked_card("nowhere-01", HASH_B, MONDAY)
    assert unknown_unit[0] is None and unknown_unit[1] == record
