"""A server outage longer than the broker's queue: every event arrives once, with back-off.

mosquitto keeps at most ``max_queued_messages`` QoS 1 messages for the server's session
and drops the rest silently; the unit's outbox is what makes delivery whole again, and its
per-event back-off keeps it from flooding the broker meanwhile.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from gpiozero.pins.mock import MockFactory

from edge import config as edge_config
from edge.agent import EdgeAgent
from edge.hardware.build import build
from protocol import topics
from protocol.messages import ServerStatus, decode
from server.app import create_app
from server.broker import LocalBroker
from server.settings import Settings
from tests.conftest import TEST_UNITS, as_admin, unit_toml, wait_until
from tests.edge.support import CONTACT_PIN
from tests.server.mqtt.support import Listener

QUEUE = 5
EVENTS = 20
ACK_TIMEOUT_S = 0.5


class SmallQueueBroker(LocalBroker):
    """mosquitto keeping only ``QUEUE`` messages for an absent persistent session."""

    def config(self) -> str:
        text = (
            super().config().replace("max_queued_messages 100000", f"max_queued_messages {QUEUE}")
        )
        return text + "log_type notice\n"


@pytest.fixture
def broker() -> Iterator[LocalBroker]:
    with SmallQueueBroker(units=TEST_UNITS) as running:
        yield running


@pytest.fixture
def unit(
    tmp_path: Path, broker: LocalBroker, key_file: Path, server_key: str
) -> Iterator[EdgeAgent]:
    conf = tmp_path / "unit.toml"
    text = unit_toml(
        broker=broker, key_file=key_file, server_key=server_key, data_dir=tmp_path / "unit"
    )
    conf.write_text(text.replace("ack_timeout_s = 2", f"ack_timeout_s = {ACK_TIMEOUT_S}"))
    cfg = edge_config.load(conf)
    assert cfg.ack_timeout_s == ACK_TIMEOUT_S
    factory = MockFactory()
    factory.pin(CONTACT_PIN).drive_low()
    agent = EdgeAgent(cfg, build(cfg, pin_factory=factory), synced=lambda: True)
    yield agent
    agent.stop()


def min_attempts(agent: EdgeAgent) -> int:
    with agent.outbox._lock:
        row = agent.outbox._db.execute("SELECT MIN(attempts) FROM outbox").fetchone()
    return row[0] or 0


def test_events_made_during_an_outage_longer_than_the_broker_queue_arrive_once(
    broker: LocalBroker,
    tmp_path: Path,
    key_file: Path,
    signing_key_file: Path,
    unit: EdgeAgent,
) -> None:
    settings = Settings(
        data_dir=tmp_path / "server",
        badge_key_file=key_file,
        signing_key_file=signing_key_file,
        **broker.server_settings(),
    )
    presence = Listener(broker, topics.topic(topics.SERVER_STATUS))
    counter = Listener(broker, topics.topic(topics.EVENT, "boitron-01"))
    try:
        with TestClient(create_app(settings)) as client:
            as_admin(client)
            first = client.app.state.runtime.bridge.instance  # type: ignore[attr-defined]
            client.post("/api/centres", json={"id": "boitron", "name": "Boitron"})
            client.put("/api/devices/boitron-01", json={"centre_id": "boitron"})
            unit.start()
            wait_until(
                lambda: client.get("/api/devices/boitron-01").json().get("state") == "online"
            )
            wait_until(lambda: unit.outbox.pending_count() == 0, what="the boot events acked")
            before = client.get("/api/events").json()["total"]

        # The server is down; its broker session stays and queues at most QUEUE messages.
        sent_before = len(counter.messages)
        started = time.monotonic()
        made = [unit._record(kind="door_forced", door="entree") for _ in range(EVENTS)]
        wait_until(lambda: min_attempts(unit) >= 5, timeout=30, what="each event sent five times")
        outage = time.monotonic() - started
        # A send is counted by the unit when paho has it; the listener sees it a moment later.
        wait_until(
            lambda: len(counter.messages) - sent_before >= EVENTS * 5,
            timeout=5,
            what="the listener to receive the sends the unit counted",
        )
        publishes = len(counter.messages) - sent_before
        without_backoff = EVENTS * outage / ACK_TIMEOUT_S
        assert EVENTS * 5 <= publishes < without_backoff / 2.5, (publishes, outage)

        with TestClient(create_app(settings)) as client:
            as_admin(client)
            second = client.app.state.runtime.bridge.instance  # type: ignore[attr-defined]
            assert second != first
            wait_until(
                lambda: unit.outbox.pending_count() == 0, timeout=20, what="the outbox to drain"
            )
            body = client.get("/api/events", params={"kind": "door_forced", "limit": 1000}).json()
            assert body["total"] == EVENTS  # every one, once
            assert sorted(e["seq"] for e in body["items"]) == sorted(e.seq for e in made)
            assert {e["event_id"] for e in body["items"]} == {e.event_id for e in made}
            assert client.get("/api/events").json()["total"] == before + EVENTS

        log = broker.log_path.read_text()
        assert "dropped" in log  # the broker did drop messages for the server's session
        states = [
            (s.state, s.instance)
            for s in (decode(ServerStatus, m.payload) for m in presence.messages)
        ]
        assert states == [
            ("online", first),
            ("offline", first),  # a clean stop says so at once
            ("online", second),  # a new instance: the unit resends everything pending now
            ("offline", second),
        ]
    finally:
        presence.close()
        counter.close()
