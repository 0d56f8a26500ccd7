"""The unit decides plans offline: the centre's hours from the list head, day credits used
at the door, kept across a restart, and never counted twice once the server has them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from zoneinfo import ZoneInfo

from edge.agent import EdgeAgent
from protocol import topics
from protocol.badges import badge_hash
from protocol.lists import cut_snapshot
from protocol.messages import DAY_PASS, OPENING_HOURS, CentreHours, ListEntry, PlanRule
from protocol.signing import Signer
from tests.edge.support import CENTRE, FakeTime, parsed

MakeAgent = Callable[..., EdgeAgent]

PARIS = ZoneInfo("Europe/Paris")
UID = bytes.fromhex("04a1b2c3")
HOURS = CentreHours("Europe/Paris", [[(510, 1080)]] * 5 + [[], []], holidays=[])


def local(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=PARIS).timestamp()


def install(
    agent: EdgeAgent, signer: Signer, entries: list[ListEntry], version: int, at: float
) -> None:
    head, segments = cut_snapshot(CENTRE, version, entries, at, HOURS)
    agent.handle(parsed(topics.LIST_HEAD), signer.sign(head))
    for segment in segments:
        agent.handle(parsed(topics.LIST_SEGMENT, index=segment.index), signer.sign(segment))


def offline(agent: EdgeAgent) -> None:
    def refuse(*args: object) -> None:
        raise AssertionError("the decision must not wait for the server")

    agent._ask_server = refuse  # type: ignore[method-assign]


def book(key: bytes, credits: int, days: list[int] | None = None) -> ListEntry:
    return ListEntry(
        bytes.fromhex(badge_hash(key, UID)),
        7,
        plans=[PlanRule(DAY_PASS, hours=OPENING_HOURS, credits=credits)],
        days=days or [],
    )


def test_a_book_uses_one_day_per_day_offline_and_says_no_credit_when_empty(
    make_agent: MakeAgent, signer: Signer, badge_key: bytes, fake_time: FakeTime
) -> None:
    fake_time.wall = local("2026-11-23T09:00")
    agent = make_agent()
    install(agent, signer, [book(badge_key, 2)], 1, fake_time.wall)
    offline(agent)

    first = agent.badge("entree", UID)
    fake_time.wall = local("2026-11-23T15:00")
    again = agent.badge("entree", UID)  # the same day: free
    fake_time.wall = local("2026-11-23T19:00")
    evening = agent.badge("entree", UID)
    fake_time.wall = local("2026-11-24T09:00")
    second_day = agent.badge("entree", UID)

    assert [e.reason for e in (first, again, evening, second_day)] == [
        "granted",
        "granted",
        "outside_hours",
        "granted",
    ]
    # A restart keeps the days used and the calendar (both from the unit's own files).
    fake_time.wall = local("2026-11-25T09:00")
    restarted = make_agent()
    offline(restarted)
    third_day = restarted.badge("entree", UID)
    assert (third_day.granted, third_day.reason) == (False, "no_credit")
    fake_time.wall = local("2026-11-25T19:00")
    assert restarted.badge("entree", UID).reason == "outside_hours"


def test_days_the_server_already_counted_are_not_spent_twice(
    make_agent: MakeAgent, signer: Signer, badge_key: bytes, fake_time: FakeTime
) -> None:
    fake_time.wall = local("2026-11-23T09:00")
    agent = make_agent()
    install(agent, signer, [book(badge_key, 1)], 1, fake_time.wall)
    offline(agent)
    assert agent.badge("entree", UID).granted  # uses the last day
    # The server counted that day: the new list says 0 left, and lists the day.
    today = date(2026, 11, 23).toordinal()
    install(agent, signer, [book(badge_key, 0, [today])], 2, fake_time.wall)
    fake_time.wall = local("2026-11-23T16:00")
    assert agent.badge("entree", UID).granted  # today is paid for
    fake_time.wall = local("2026-11-24T09:00")
    assert agent.badge("entree", UID).reason == "no_credit"
