"""Delivery of events: epoch, acks opened with the server key, rejections, back-off."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from edge.agent import EdgeAgent
from edge.outbox import MAX_BACKOFF_S, AckTimer, backoff_s
from protocol import topics
from protocol.messages import Ack, Event, Rejected, ServerStatus, Status, decode, encode
from protocol.signing import Signer
from protocol.workers import Worker
from tests.edge.support import (
    DEVICE,
    NOW,
    FakeTime,
    new_id,
    parsed,
)
from tests.edge.test_lists import ALICE_UID, entry, install, no_server
from tests.edge.test_outbox import wal_flushes

MakeAgent = Callable[..., EdgeAgent]


def room_events(agent: EdgeAgent, n: int) -> list[Event]:
    return [agent._record(kind="room", room="visio", room_state="occupied") for _ in range(n)]


def ack(agent: EdgeAgent, signer: Signer, **kw: object) -> None:
    fields = {"device_id": DEVICE, "epoch": agent.outbox.epoch, "issued_at": NOW, **kw}
    agent.handle(parsed(topics.ACK), signer.sign(Ack(**fields)))  # type: ignore[arg-type]


def publish_once(agent: EdgeAgent) -> list[int]:
    """One publisher step with the link up; the seqs it sent."""
    agent.link.connected.set()
    before = len(agent.published.of(topics.EVENT))  # type: ignore[attr-defined]
    agent._wake.set()
    agent._publish_step()
    sent = agent.published.of(topics.EVENT)[before:]  # type: ignore[attr-defined]
    return [decode(Event, p).seq for p in sent]


def test_events_carry_the_outbox_epoch_which_survives_a_restart(make_agent: MakeAgent) -> None:
    first = make_agent(data="unit")
    [event] = room_events(first, 1)
    epoch = first.outbox.epoch
    first.stop()
    again = make_agent(data="unit")
    fresh = make_agent(data="other")

    assert len(epoch) == 32 and event.epoch == epoch
    assert again.outbox.epoch == epoch
    assert fresh.outbox.epoch != epoch


def test_an_ack_deletes_the_events(make_agent: MakeAgent, signer: Signer) -> None:
    agent = make_agent()
    room_events(agent, 3)

    ack(agent, signer, seqs=[1, 3])

    assert agent.outbox.pending_count() == 1


def test_an_ack_of_another_epoch_or_unit_or_unsigned_is_ignored(
    make_agent: MakeAgent, signer: Signer
) -> None:
    agent = make_agent()
    room_events(agent, 2)

    ack(agent, signer, seqs=[1, 2], epoch="0" * 32)
    ack(agent, signer, seqs=[1, 2], device_id="belleme-01")
    ack(agent, Signer.generate(), seqs=[1, 2])

    assert agent.outbox.pending_count() == 2
    assert agent.rejected["stale"] == 1
    assert agent.rejected["other_device"] == 1
    assert agent.rejected["unknown_key"] == 1


def test_rejected_events_are_moved_aside_and_counted(make_agent: MakeAgent, signer: Signer) -> None:
    agent = make_agent()
    room_events(agent, 3)

    ack(agent, signer, seqs=[1], rejected=[Rejected(2, "malformed")])

    assert agent.outbox.pending_count() == 1
    assert agent.outbox.rejected() == [(2, "malformed")]
    status = agent.status()
    assert (status.outbox_pending, status.outbox_rejected) == (1, 1)
    assert publish_once(agent) == [3]  # the rejected one is never sent again


def test_the_backoff_grows_per_event(make_agent: MakeAgent, fake_time: FakeTime) -> None:
    agent = make_agent()  # ack_timeout_s = 2
    room_events(agent, 1)

    waits = []
    for _ in range(10):
        assert publish_once(agent) == [1]
        waits.append(agent.outbox.next_attempt_at(1) - fake_time.mono)
        assert publish_once(agent) == []  # not due before its back-off
        fake_time.advance(waits[-1])
    assert publish_once(agent) == [1]
    room_events(agent, 1)
    assert publish_once(agent) == [2]  # a new event does not wait behind the old one's

    assert waits == [2, 4, 8, 16, 32, 64, 128, 256, 300, 300]
    assert backoff_s(2, 1) == 2 and backoff_s(2, 100) == MAX_BACKOFF_S


def test_acks_that_come_late_stretch_the_wait_before_a_resend_and_on_time_acks_end_it(
    make_agent: MakeAgent, fake_time: FakeTime, signer: Signer
) -> None:
    """A server far behind acks late: the unit waits longer before resending (a resend
    would only add to its backlog), and back to its config once acks come on time."""
    agent = make_agent()  # ack_timeout_s = 2

    def send_and_ack_after(delay: float) -> float:
        """One event sent, acked ``delay`` later; the wait its send was given."""
        (event,) = room_events(agent, 1)
        assert publish_once(agent) == [event.seq]
        wait = agent.outbox.next_attempt_at(event.seq) - fake_time.mono
        fake_time.advance(delay)
        ack(agent, signer, seqs=[event.seq])
        return wait

    assert send_and_ack_after(0.1) == 2  # acks on time: the config's timeout
    waits = [send_and_ack_after(1.9) for _ in range(3)]  # within the timeout, no resend
    assert waits[0] == 2 and waits[-1] > 2  # later acks: a longer wait (not a resend at 2 s)
    late = [send_and_ack_after(20.0) for _ in range(10)]  # a server 20 s behind
    assert late[-1] >= 20 and late[-1] <= MAX_BACKOFF_S
    assert agent.outbox.pending_count() == 0
    for _ in range(60):
        last = send_and_ack_after(0.05)
    assert last == 2  # caught up: back to the config's timeout


def send_one(agent: EdgeAgent) -> int:
    """A new event, sent now; its seq."""
    (event,) = room_events(agent, 1)
    assert publish_once(agent) == [event.seq]
    return event.seq


def test_while_the_server_acks_earlier_events_the_later_ones_are_not_resent(
    make_agent: MakeAgent, fake_time: FakeTime, signer: Signer
) -> None:
    """A server working through a backlog: each ack says the events sent after the ones
    it names are queued behind them, so their resend waits (it would only join the queue)."""
    agent = make_agent()  # ack_timeout_s = 2
    first = send_one(agent)  # t = 0
    fake_time.advance(1.0)
    second = send_one(agent)  # t = 1: due again at 3
    fake_time.advance(0.5)
    third = send_one(agent)  # t = 1.5: due again at 3.5
    fake_time.advance(1.4)
    ack(agent, signer, seqs=[first])  # t = 2.9: the server reached the send at t = 0
    fake_time.advance(0.2)
    assert publish_once(agent) == []  # t = 3.1: second's back-off is over, but it waits
    fake_time.advance(1.0)
    ack(agent, signer, seqs=[second])  # t = 4.1
    fake_time.advance(1.5)
    assert publish_once(agent) == []  # t = 5.6
    fake_time.advance(0.6)
    assert publish_once(agent) == [third]  # t = 6.2: no ack for 2 s: sent again


def test_an_event_passed_by_a_later_ones_ack_is_resent_soon(
    make_agent: MakeAgent, fake_time: FakeTime, signer: Signer
) -> None:
    """The broker dropped an event (a server far behind): a later event's ack shows the
    server went past it, so it is sent again within ack_timeout_s, not at its back-off."""
    agent = make_agent()  # ack_timeout_s = 2
    agent.ack_timer.smoothed_s, agent.ack_timer.deviation_s = 30.0, 5.0  # acks came late
    dropped = send_one(agent)  # t = 0
    assert agent.outbox.next_attempt_at(dropped) - fake_time.mono == 50  # the stretched wait
    fake_time.advance(1.0)
    later = send_one(agent)  # t = 1
    fake_time.advance(30.0)
    ack(agent, signer, seqs=[later])  # t = 31: the server went past `dropped`
    fake_time.advance(1.9)
    assert publish_once(agent) == []
    fake_time.advance(0.2)
    assert publish_once(agent) == [dropped]  # t = 33.1, not 50


def test_an_ack_moves_no_resend_when_it_names_only_resent_events(
    make_agent: MakeAgent, fake_time: FakeTime, signer: Signer
) -> None:
    agent = make_agent()  # ack_timeout_s = 2
    first = send_one(agent)  # t = 0
    fake_time.advance(2.0)
    assert publish_once(agent) == [first]  # t = 2: sent again (due at 6)
    fake_time.advance(0.5)
    second = send_one(agent)  # t = 2.5: due again at 4.5
    fake_time.advance(1.0)
    ack(agent, signer, seqs=[first])  # which send does it answer? Nothing is moved
    fake_time.advance(1.1)
    assert publish_once(agent) == [second]  # t = 4.6: its own back-off


def test_the_ack_timer_measures_first_sends_only_within_its_bounds() -> None:
    timer = AckTimer(10.0)
    assert timer.timeout_s == 10.0  # nothing measured yet
    timer.sent([1, 2], [], now=0.0)
    timer.sent([], [2], now=50.0)  # 2 sent again: its ack does not say which send
    timer.acked([2], now=51.0)
    assert timer.smoothed_s is None  # no sample from a resent event
    timer.acked([1], now=40.0)
    assert timer.smoothed_s == 40.0 and timer.timeout_s == 40.0 + 4 * 20.0
    timer.sent([3], [], now=100.0)
    timer.acked([3, 99], now=1100.0)  # 1,000 s: capped at the longest back-off
    assert timer.timeout_s == MAX_BACKOFF_S
    for seq in range(AckTimer.TRACKED + 5):  # never acked: bounded memory
        timer.sent([1000 + seq], [], now=2000.0)
    timer.acked([1000], now=2001.0)  # forgotten, the oldest: not measured
    assert timer.smoothed_s is not None and timer.smoothed_s > 100


def test_resent_events_are_marked_historical(make_agent: MakeAgent, fake_time: FakeTime) -> None:
    agent = make_agent()
    agent.link.connected.set()  # created online: live the first time
    room_events(agent, 1)
    publish_once(agent)
    fake_time.advance(2)
    publish_once(agent)

    first, second = (decode(Event, p) for p in agent.published.of(topics.EVENT))  # type: ignore[attr-defined]
    assert (first.historical, second.historical) == (False, True)


def test_a_new_server_instance_makes_every_pending_event_due_once(
    make_agent: MakeAgent,
) -> None:
    agent = make_agent()
    room_events(agent, 2)
    assert publish_once(agent) == [1, 2]
    assert publish_once(agent) == []
    online = ServerStatus(state="online", instance=new_id())

    agent.handle(parsed(topics.SERVER_STATUS), encode(online))
    assert publish_once(agent) == [1, 2]
    agent.handle(parsed(topics.SERVER_STATUS), encode(online))  # same instance again
    assert publish_once(agent) == []
    agent._on_connected()  # a broker reconnect
    assert publish_once(agent) == [1, 2]


def test_a_worker_whose_step_raises_keeps_working_and_shows_its_errors(
    make_agent: MakeAgent,
) -> None:
    agent = make_agent()
    calls = []
    recovered = threading.Event()

    def step() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("disk full")
        recovered.set()
        agent.publisher.stopping.wait(0.01)

    agent.publisher = Worker("publisher", step)
    agent.publisher.start()
    assert recovered.wait(5)

    info = {w.name: w for w in agent.status().workers or []}
    assert info["publisher"].alive and info["publisher"].errors == 1
    assert set(info) == {"publisher", "inbox", "lists", "heartbeat", "reader-entree"}


def test_the_status_tells_the_backlog_and_again_once_it_has_drained(
    make_agent: MakeAgent, signer: Signer, fake_time: FakeTime
) -> None:
    agent = make_agent()
    [oldest] = room_events(agent, 1)
    fake_time.advance(5)
    room_events(agent, 2)
    status = agent.status()
    assert status.outbox_pending == 3 and status.outbox_oldest_ts == oldest.ts
    published = agent.published  # type: ignore[attr-defined]
    told = len(published.of(topics.STATUS))

    ack(agent, signer, seqs=[1])
    assert len(published.of(topics.STATUS)) == told  # still a backlog: nothing new to tell
    ack(agent, signer, seqs=[2, 3])
    drained = decode(Status, published.of(topics.STATUS)[-1])
    assert drained.outbox_pending == 0 and drained.outbox_oldest_ts is None
    ack(agent, signer, seqs=[3])
    assert len(published.of(topics.STATUS)) == told + 1  # told once


def test_a_granted_badge_opens_the_door_before_its_event_is_flushed_to_the_disk(
    make_agent: MakeAgent, signer: Signer, badge_key: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = make_agent()
    install(agent, signer, [entry(badge_key, ALICE_UID, 1)], version=1)
    no_server(agent)
    log: list[str] = []
    wal_flushes(monkeypatch, log)
    lock = agent.hardware.locks["entree"]
    unlock = lock.unlock

    def logged_unlock() -> None:
        unlock()
        log.append("relay")

    monkeypatch.setattr(lock, "unlock", logged_unlock)
    agent._wake.clear()

    event = agent.badge("entree", ALICE_UID)
    woken = agent._wake.is_set()
    sent = publish_once(agent)

    assert event.granted
    # The member does not wait for the disk; the publisher, woken only after the flush,
    # sends the event without flushing again.
    assert log == ["relay", "flush"]
    assert woken and sent == [event.seq]


def test_a_unit_whose_disk_refuses_to_flush_says_so_and_sends_nothing(
    make_agent: MakeAgent, monkeypatch: pytest.MonkeyPatch
) -> None:
    import edge.outbox

    agent = make_agent()

    def failing(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(edge.outbox.os, "fsync", failing)
    room_events(agent, 1)

    assert publish_once(agent) == []
    faults = agent.status().faults or []
    assert any("cannot flush" in f and "events kept, not sent" in f for f in faults), faults
    assert agent.health().condition == "degraded"
