"""A card asked of the server over a slow rural link, while the unit sends a backlog.

Units sit behind 4G and ADSL lines with 100 ms and more of round trip, and the moment a
unit has most to send is just after an outage, when members arrive too. A relay on
loopback (the reliability suite's ``Proxy`` with a ``delay_s``) holds each chunk of bytes
for a fixed delay each way.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient

from edge.agent import OUTBOX_BATCH, EdgeAgent
from edge.link import IN_FLIGHT_LIMIT
from protocol import topics
from protocol.messages import Event, decode
from server.broker import LocalBroker
from tests.conftest import wait_until
from tests.integration.test_end_to_end import enrol, runtime
from tests.reliability.harness import Proxy

ALICE = bytes.fromhex("04a1b2c3")
DELAY_S = 0.06  # each way: a 120 ms round trip


@pytest.fixture
def slow_link(broker: LocalBroker, request: pytest.FixtureRequest) -> Iterator[Proxy]:
    """``DELAY_S`` each way, or the test's own (``parametrize(..., indirect=True)``)."""
    link = Proxy(broker.port, delay_s=getattr(request, "param", DELAY_S))
    yield link
    link.close()


@pytest.fixture
def slow_unit(slow_link: Proxy, make_unit: Callable[..., EdgeAgent]) -> EdgeAgent:
    """A unit (not started) that reaches the broker through ``slow_link``."""
    return make_unit(start=False, port=slow_link.port)


@pytest.mark.parametrize("slow_link", [0.2], indirect=True)  # a 400 ms round trip
def test_a_card_asked_online_is_answered_in_time_while_a_backlog_goes_out(
    server: TestClient, slow_unit: EdgeAgent
) -> None:
    runtime(server).bridge.lists.stop()  # the card is known to the server only
    enrol(server, "Nouvelle Membre", ALICE)
    backlog = 2 * IN_FLIGHT_LIMIT  # room changes recorded during an outage
    for _ in range(backlog):
        slow_unit._record(kind="room", room="visio", room_state="occupied")

    slow_unit.start()
    wait_until(slow_unit.link.connected.is_set, what="the unit to connect through the link")
    wait_until(
        lambda: slow_unit.link.in_flight() >= IN_FLIGHT_LIMIT,
        what="the backlog to fill the MQTT client's queue",
    )

    asked = time.monotonic()
    event = slow_unit.badge("entree", ALICE)
    waited = time.monotonic() - asked

    # The question does not queue behind the events the broker has yet to acknowledge.
    assert (event.granted, event.reason) == (True, "granted"), f"after {waited:.2f} s"
    wait_until(lambda: slow_unit.outbox.pending_count() == 0, timeout=60, what="the backlog")


def test_a_backlog_goes_out_about_once_and_a_remote_unlock_is_answered_meanwhile(
    server: TestClient, slow_unit: EdgeAgent
) -> None:
    backlog = 3 * OUTBOX_BATCH
    for _ in range(backlog):
        slow_unit._record(kind="room", room="visio", room_state="occupied")
    sends: list[int] = []
    publish = slow_unit.link.publish

    def counted(spec: topics.TopicSpec, payload: bytes) -> bool:
        if spec is topics.EVENT:
            sends.append(decode(Event, payload).seq)
        return publish(spec, payload)

    slow_unit.link.publish = counted  # type: ignore[method-assign]
    slow_unit.start()
    wait_until(
        lambda: server.get("/api/devices/boitron-01").json().get("state") == "online",
        what="the unit online",
    )
    assert slow_unit.outbox.pending_count() > backlog // 2

    # The command's result is not held behind the events waiting for their turn.
    response = server.post("/api/devices/boitron-01/unlock", json={"door": "entree"})
    assert response.status_code == 200, response.text
    assert response.json()["result"] == "executed"

    wait_until(lambda: slow_unit.outbox.pending_count() == 0, timeout=120, what="the backlog")
    # Handed to paho as the broker takes them, each event is sent once; without the
    # limit, a 120 ms round trip and a 2 s ack timeout, each was sent three times.
    assert len(sends) < 1.1 * (backlog + 1), f"{len(sends)} sends for {backlog + 1} events"
