"""Delivery of events: epoch, acks opened with the server key, rejections, back-off."""

from __future__ import annotations

import threading
from collections.abc import Callable

from edge.agent import EdgeAgent
from edge.outbox import MAX_BACKOFF_S, backoff_s
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
