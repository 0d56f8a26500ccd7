"""The outbox is bounded: reported filling from 80 %, room changes shed at the bound (and
counted), the door's own record always written."""

from __future__ import annotations

from collections.abc import Callable

from edge.agent import EdgeAgent

MakeAgent = Callable[..., EdgeAgent]
UID = bytes.fromhex("0badcafe")  # not listed: refused, and recorded
DOOR, ROOM = "entree", "visio"


def outbox_faults(agent: EdgeAgent) -> list[str]:
    return [f for f in agent.status().faults or [] if "outbox" in f]


def test_the_status_reports_the_outbox_filling_then_room_changes_shed(
    make_agent: MakeAgent,
) -> None:
    agent = make_agent(outbox_max_events=100)
    for i in range(79):
        agent._room_state(ROOM, "occupied" if i % 2 else "free")
    assert outbox_faults(agent) == []
    agent._room_state(ROOM, "free")  # the 80th event waiting
    assert outbox_faults(agent) == [
        "unit: outbox: 80 of 100 events waiting for the server (80 % full)"
    ]

    for _ in range(20):
        agent._room_state(ROOM, "occupied")
    assert agent.outbox.pending == agent.outbox.pending_count() == 100
    agent._room_state(ROOM, "free")  # shed
    agent._room_state(ROOM, "occupied")  # shed
    refused = agent.badge(DOOR, UID)  # a card is always recorded
    assert refused.seq == 101 and agent.outbox.pending_count() == 101
    assert outbox_faults(agent)[-1] == "unit: outbox full: 2 room changes not recorded"

    agent.outbox.ack(range(1, 51))  # the server took half: room changes are recorded again
    assert agent.outbox.pending == 51
    agent._room_state(ROOM, "free")
    assert agent.outbox.pending_count() == 52
