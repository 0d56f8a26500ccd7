"""Badge → door → event → server → live count, on real parts.

A private mosquitto on loopback, the real FastAPI app with its SQLite file, and the real
edge agent: gpiozero on MockFactory pins, and for the first test the real mfrc522 library
against the register-level simulated chip.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable

import paho.mqtt.client as mqtt
import pytest
from fastapi.testclient import TestClient

from edge.agent import EdgeAgent
from edge.hardware.fakes import FakeCardReader
from edge.hardware.simchip import SimulatedMfrc522, install
from protocol import topics
from protocol.badges import badge_hash
from protocol.messages import ACTIVE, Command, Event, encode
from server.broker import LocalBroker
from tests.conftest import wait_until
from tests.edge.support import RELAY_PIN

ALICE = bytes.fromhex("04a1b2c3")
STRANGER = bytes.fromhex("0badcafe")


def enrol(client: TestClient, name: str, uid: bytes) -> dict:
    member = client.post("/api/members", json={"name": name}).json()
    badge = client.post(f"/api/members/{member['id']}/badges", json={"uid": uid.hex(":")})
    assert badge.status_code == 201, badge.text
    return member


def runtime(client: TestClient):  # noqa: ANN201 - the app's Runtime
    return client.app.state.runtime  # type: ignore[attr-defined]


def wait_for_list_with(agent: EdgeAgent, key: bytes, uid: bytes, present: bool = True) -> None:
    hashed = badge_hash(key, uid)

    def listed() -> bool:
        entry = agent.access.entry(hashed)
        return (entry is not None and entry.state == ACTIVE) == present

    wait_until(listed, what="the unit's access list to follow the change")


def relay_history(agent: EdgeAgent) -> list[bool]:
    """Energised (True) or not, since the relay was set up; the board is active-low."""
    pin = agent.hardware.pin_factory.pin(RELAY_PIN)
    return [not s.state for s in pin.states[1:]]  # states[0] is the pin before gpiozero


def connected_client(broker: LocalBroker) -> mqtt.Client:
    """A plain MQTT client, returned once the broker has accepted it."""
    client = broker.client()
    ready = threading.Event()
    client.on_connect = lambda *args: ready.set()
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    assert ready.wait(5), "the test client could not connect"
    return client


def centre_count(client: TestClient, centre_id: str = "boitron") -> int:
    (entry,) = [c for c in client.get("/api/occupancy").json() if c["centre_id"] == centre_id]
    return entry["present"]


def test_enrolled_member_badges_on_the_real_mfrc522_path(
    server: TestClient, make_unit: Callable[..., EdgeAgent], badge_key: bytes
) -> None:
    chip = SimulatedMfrc522()
    with install(chip) as fakes:
        unit = make_unit(reader="mfrc522")
        enrol(server, "Alice Martin", ALICE)
        wait_for_list_with(unit, badge_key, ALICE)
        lock = unit.hardware.locks["entree"]
        assert not lock.is_unlocked

        chip.present_card(ALICE)
        wait_until(lambda: lock.is_unlocked, timeout=2, what="the strike to be energised")
        chip.remove_card()
        wait_until(lambda: not lock.is_unlocked, timeout=3, what="the strike to relock")
        assert fakes.gpio.cleanups == []  # the relay pin was never released by the library

    assert relay_history(unit) == [False, True, False]  # off at start, on, off again
    off = unit.hardware.pin_factory.pin(RELAY_PIN).states[-1]
    assert off.timestamp >= 0.45  # seconds since energised: held for the window, then relocked

    events = wait_until(
        lambda: server.get("/api/events", params={"centre": "boitron", "kind": "access"}).json()[
            "items"
        ],
        what="the event on the server",
    )
    assert events[0]["granted"] is True and events[0]["direction"] == "in"
    assert events[0]["member_name"] == "Alice Martin"
    assert events[0]["badge_hash"] == badge_hash(badge_key, ALICE)
    assert centre_count(server) == 1
    people = server.get("/api/occupancy").json()[0]["people"]
    assert [p["name"] for p in people] == ["Alice Martin"]


def test_unknown_card_keeps_the_door_shut_and_is_listed(
    server: TestClient, make_unit: Callable[..., EdgeAgent], badge_key: bytes
) -> None:
    unit = make_unit()
    wait_until(lambda: unit.access.version is not None, what="the first access list")
    event = unit.badge("entree", STRANGER)

    assert event.granted is False and event.reason == "unknown_card"
    assert relay_history(unit) == [False]  # the relay never moved
    cards = wait_until(
        lambda: server.get("/api/unknown-cards").json()["items"], what="unknown card"
    )
    assert cards[0]["badge_hash"] == badge_hash(badge_key, STRANGER)
    assert (cards[0]["device_id"], cards[0]["door"], cards[0]["centre_id"]) == (
        "boitron-01",
        "entree",
        "boitron",
    )

    # The central team enrols the tapped card; the next tap opens the door.
    member = server.post("/api/members", json={"name": "Nouveau membre"}).json()
    enrolled = server.post(
        f"/api/members/{member['id']}/badges", json={"badge_hash": cards[0]["badge_hash"]}
    )
    assert enrolled.status_code == 201
    assert server.get("/api/unknown-cards").json()["items"] == []
    wait_for_list_with(unit, badge_key, STRANGER)
    assert unit.badge("entree", STRANGER).granted is True


def test_card_enrolled_after_the_last_list_is_granted_online(
    server: TestClient, make_unit: Callable[..., EdgeAgent], badge_key: bytes
) -> None:
    unit = make_unit()
    wait_until(lambda: unit.access.version is not None, what="the first access list")
    rt = runtime(server)
    rt.bridge.lists.stop()  # lists stop flowing: only the online question can know the card
    enrol(server, "Day Pass", ALICE)

    event = unit.badge("entree", ALICE)
    assert event.granted is True and event.reason == "granted"


def test_revoked_member_is_denied_at_the_next_badge(
    server: TestClient, make_unit: Callable[..., EdgeAgent], badge_key: bytes
) -> None:
    unit = make_unit()
    member = enrol(server, "Alice Martin", ALICE)
    wait_for_list_with(unit, badge_key, ALICE)
    assert unit.badge("entree", ALICE).granted is True

    response = server.patch(f"/api/members/{member['id']}", json={"active": False})
    assert response.status_code == 200 and response.json()["active"] is False
    wait_for_list_with(unit, badge_key, ALICE, present=False)

    event = unit.badge("entree", ALICE)
    assert event.granted is False and event.reason == "suspended"


def test_badges_during_a_broker_outage_all_reach_the_server_once(
    server: TestClient,
    broker: LocalBroker,
    make_unit: Callable[..., EdgeAgent],
    badge_key: bytes,
) -> None:
    unit = make_unit()
    members = [(f"Membre {i}", bytes([0x04, i, 0x10, 0x20])) for i in range(10)]
    for name, uid in members:
        enrol(server, name, uid)
    for _, uid in members:
        wait_for_list_with(unit, badge_key, uid)

    broker.stop()
    wait_until(lambda: not unit.link.connected.is_set(), what="the unit to see the outage")
    decisions = [unit.badge("entree", members[i % 10][1]) for i in range(200)]
    assert all(e.granted for e in decisions)  # the doors kept deciding, offline
    assert unit.outbox.pending_count() == 200

    broker.start()
    wait_until(lambda: unit.outbox.pending_count() == 0, timeout=30, what="the outbox to drain")
    body = server.get("/api/events", params={"kind": "access", "limit": 1000}).json()
    assert body["total"] == 200
    assert len({e["seq"] for e in body["items"]}) == 200
    assert all(e["historical"] for e in body["items"])
    # Ten members toggled twenty times each: everyone ends outside.
    assert centre_count(server) == 0


def test_malformed_and_wrong_version_payloads_are_rejected_and_the_service_goes_on(
    server: TestClient,
    broker: LocalBroker,
    make_unit: Callable[..., EdgeAgent],
    caplog: pytest.LogCaptureFixture,
) -> None:
    unit = make_unit()
    wait_until(
        lambda: server.get("/api/devices/boitron-01").json().get("state") == "online",
        what="the unit subscribed and online",
    )
    rogue = connected_client(broker)
    try:
        good = unit.badge("entree", STRANGER)
        wrong_version = encode(good).replace(b'"v":2', b'"v":1')
        with caplog.at_level(logging.WARNING):
            for payload in (b"{not json", wrong_version):
                rogue.publish(
                    topics.topic(topics.EVENT, "boitron-01"), payload, qos=1
                ).wait_for_publish(5)
            rogue.publish(
                topics.topic(topics.ACK, "boitron-01"), b'{"v":2,"seqs":"all"}', qos=1
            ).wait_for_publish(5)
            wait_until(
                lambda: runtime(server).bridge.stats()["rejected"] >= 2,
                what="the server to reject both payloads",
            )
            wait_until(lambda: unit.rejected["unsigned"] == 1, what="the unit to refuse the ack")
        assert runtime(server).bridge.rejected == {"malformed": 1, "bad_version": 1}
        reasons = " ".join(r.getMessage() for r in caplog.records)
        assert "v: schema version 1 is not supported" in reasons

        # Both sides still serve: a new badge is decided, stored and acknowledged.
        after = unit.badge("entree", STRANGER)
        wait_until(lambda: unit.outbox.pending_count() == 0, what="the ack of later events")
        seqs = [e["seq"] for e in server.get("/api/events").json()["items"]]
        assert after.seq in seqs and good.seq in seqs
        health = server.get("/healthz").json()
        assert health["ok"] is True and health["mqtt"]["rejected"] == 2
    finally:
        rogue.loop_stop()
        rogue.disconnect()


def test_an_event_claiming_another_unit_is_rejected(
    server: TestClient,
    broker: LocalBroker,
) -> None:
    rogue = connected_client(broker)
    try:
        forged = Event(
            event_id=str(uuid.uuid4()),
            device_id="other-01",
            epoch="0" * 32,
            seq=1,
            kind="room",
            ts=1.0,
            clock_synced=False,
            room="visio",
            room_state="occupied",
        )
        rogue.publish(
            topics.topic(topics.EVENT, "boitron-01"), encode(forged), qos=1
        ).wait_for_publish(5)
        stats = wait_until(lambda: runtime(server).bridge.stats()["rejected"] or None)
        assert stats == 1
        assert runtime(server).bridge.rejected == {"device_mismatch": 1}
        assert server.get("/api/events").json()["total"] == 0
    finally:
        rogue.loop_stop()
        rogue.disconnect()


def test_fake_reader_path_counts_a_badge_once_while_the_card_is_held(
    server: TestClient, make_unit: Callable[..., EdgeAgent], badge_key: bytes
) -> None:
    unit = make_unit()
    enrol(server, "Alice Martin", ALICE)
    wait_for_list_with(unit, badge_key, ALICE)
    reader = unit.hardware.readers["entree"]
    assert isinstance(reader, FakeCardReader)
    reader.present(ALICE)
    wait_until(lambda: server.get("/api/events", params={"kind": "access"}).json()["total"] == 1)
    wait_until(lambda: unit.outbox.pending_count() == 0)
    reader.remove()
    assert server.get("/api/events", params={"kind": "access"}).json()["total"] == 1
    assert centre_count(server) == 1


def test_remote_unlock_opens_the_door_for_its_window_and_is_recorded(
    server: TestClient, make_unit: Callable[..., EdgeAgent]
) -> None:
    unit = make_unit()
    wait_until(lambda: server.get("/api/devices/boitron-01").json().get("state") == "online")
    response = server.post("/api/devices/boitron-01/unlock", json={"door": "entree"})
    assert response.status_code == 200, response.text
    assert response.json()["result"] == "executed"
    lock = unit.hardware.locks["entree"]
    wait_until(lambda: not lock.is_unlocked, what="the timer to relock")
    assert relay_history(unit) == [False, True, False]
    events = wait_until(
        lambda: server.get("/api/events", params={"kind": "unlock"}).json()["items"]
    )
    assert (events[0]["door"], events[0]["reason"]) == ("entree", "remote")


def test_an_expired_unlock_command_is_refused_and_the_refusal_recorded(
    server: TestClient,
    make_unit: Callable[..., EdgeAgent],
) -> None:
    unit = make_unit()
    wait_until(
        lambda: server.get("/api/devices/boitron-01").json().get("state") == "online",
        what="the unit subscribed and online",
    )
    now = time.time()
    stale = Command(
        command_id=str(uuid.uuid4()),
        device_id="boitron-01",
        action="unlock",
        door="entree",
        issued_at=now - 70,
        expires_at=now - 60,
    )
    rt = runtime(server)
    rt.store.create_command(stale)
    assert rt.bridge.send_command(stale)
    command = wait_until(
        lambda: (
            server.get(f"/api/commands/{stale.command_id}").json().get("result")
            and (server.get(f"/api/commands/{stale.command_id}").json())
        ),
        what="the unit's refusal recorded",
    )
    assert (command["result"], command["result_reason"]) == ("refused", "expired")
    assert unit.rejected["expired"] == 1
    assert relay_history(unit) == [False]
    assert server.get("/api/events", params={"kind": "unlock"}).json()["total"] == 0
