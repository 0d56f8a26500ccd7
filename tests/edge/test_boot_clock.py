"""A unit without a real-time clock boots in 1970: its in/out direction (a toggle door)
and anti-passback read the trusted clock (the newest signed time seen), so the moment NTP
catches up does not make a member inside look gone for decades."""

from __future__ import annotations

from collections.abc import Callable

from edge.agent import EdgeAgent
from edge.clock import CachedSync
from protocol.signing import Signer
from tests.edge.support import NOW, FakeTime
from tests.edge.test_lists import ALICE_UID, entry, install, no_server

MakeAgent = Callable[..., EdgeAgent]


def test_a_member_in_before_the_clock_synchronised_goes_out_after_it(
    make_agent: MakeAgent, signer: Signer, badge_key: bytes, fake_time: FakeTime
) -> None:
    fake_time.is_synced = False
    fake_time.wall = 40.0  # booted in 1970, no network time yet
    agent = make_agent()
    install(agent, signer, [entry(badge_key, ALICE_UID, 1)], version=1)  # signed at NOW
    no_server(agent)

    came_in = agent.badge("entree", ALICE_UID)
    assert came_in.granted and came_in.direction == "in"
    assert came_in.ts == 40.0 and came_in.clock_synced is False  # the event tells its clock

    fake_time.wall, fake_time.is_synced = NOW + 600, True  # NTP caught up ten minutes later
    went_out = agent.badge("entree", ALICE_UID)
    assert went_out.direction == "out"


def test_the_kernel_is_asked_whether_the_clock_is_synchronised_at_most_once_a_second() -> None:
    answers = iter([False, True])
    asked: list[float] = []
    now = [100.0]

    def kernel() -> bool:
        asked.append(now[0])
        return next(answers)

    synced = CachedSync(kernel, monotonic=lambda: now[0])
    assert [synced(), synced()] == [False, False] and asked == [100.0]
    now[0] = 100.9  # NTP caught up meanwhile: told at the next second, not at every card
    assert synced() is False and asked == [100.0]
    now[0] = 101.0
    assert synced() is True and asked == [100.0, 101.0]
