"""Access lists v2 on real parts: the server's centre lists on mosquitto, a real unit.

Enrolments reach the unit and decide offline; a revocation made while the unit was cut off
is denied once the broker is back; a change for one centre publishes nothing to another;
25,000 badges arrive in segments and a revocation still lands within seconds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from functools import partial

import paho.mqtt.client as mqtt
from fastapi.testclient import TestClient

from edge.agent import EdgeAgent
from protocol import topics
from protocol.badges import badge_hash
from protocol.lists import SEGMENT_ENTRIES
from protocol.messages import ACTIVE, REVOKED
from server.broker import LocalBroker
from tests.conftest import wait_until

ALICE = bytes.fromhex("04a1b2c3")


def runtime(client: TestClient):  # noqa: ANN201 - the app's Runtime
    return client.app.state.runtime  # type: ignore[attr-defined]


def enrol(client: TestClient, name: str, uid: bytes, **fields: object) -> dict:
    member = client.post("/api/members", json={"name": name, **fields})
    assert member.status_code == 201, member.text
    badge = client.post(f"/api/members/{member.json()['id']}/badges", json={"uid": uid.hex()})
    assert badge.status_code == 201, badge.text
    return badge.json()


def state_of(unit: EdgeAgent, hashed: str) -> int | None:
    entry = unit.access.entry(hashed)
    return None if entry is None else entry.state


def test_an_enrolled_card_opens_offline_and_a_revocation_in_a_partition_lands_after(
    server: TestClient, make_unit: Callable[..., EdgeAgent], broker: LocalBroker, badge_key: bytes
) -> None:
    unit = make_unit()
    badge = enrol(server, "Alice Martin", ALICE)
    hashed = badge_hash(badge_key, ALICE)
    wait_until(lambda: state_of(unit, hashed) == ACTIVE, what="Alice in the unit's list")

    broker.stop()  # the unit is cut off: it decides from its list alone
    wait_until(lambda: not unit.link.connected.is_set(), what="the unit to see the outage")
    event = unit.badge("entree", ALICE)
    assert event.granted is True and event.reason == "granted"

    revoked = server.post(f"/api/badges/{badge['id']}/revoke")  # while nothing is reachable
    assert revoked.status_code == 200, revoked.text
    assert unit.badge("entree", ALICE).granted is True  # it cannot know yet

    broker.start()  # same port, no retained messages left: the server sends its lists again
    wait_until(
        lambda: state_of(unit, hashed) == REVOKED, timeout=40, what="the revocation at the unit"
    )
    event = unit.badge("entree", ALICE)
    assert event.granted is False and event.reason == "revoked"


class CentreWatcher:
    """A bystander subscribed to everything under one centre's list topics."""

    def __init__(self, broker: LocalBroker, centre: str) -> None:
        self.messages: list[tuple[str, bool]] = []  # (topic, retained)
        self._subscribed = threading.Event()
        wildcard = f"{topics.BASE}/{topics.CENTRE_PREFIX}/{centre}/#"
        self._client = broker.client()
        self._client.on_connect = lambda c, *_: c.subscribe(wildcard, qos=1)
        self._client.on_subscribe = lambda *_: self._subscribed.set()
        self._client.on_message = self._on_message
        self._client.connect("127.0.0.1", broker.port, clean_start=True)
        self._client.loop_start()
        assert self._subscribed.wait(10), "the watcher could not subscribe"

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        self.messages.append((msg.topic, bool(msg.retain)))

    def live(self) -> list[str]:
        """Messages published since the subscription (not retained copies)."""
        return [name for name, retained in self.messages if not retained]

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


def has_all(watcher: CentreWatcher, names: set[str]) -> bool:
    return names <= {name for name, _ in watcher.messages}


def test_a_change_for_one_centre_publishes_nothing_to_another(
    server: TestClient, make_unit: Callable[..., EdgeAgent], broker: LocalBroker, badge_key: bytes
) -> None:
    assert server.post("/api/centres", json={"id": "belleme", "name": "Bellême"}).status_code == 201
    unit = make_unit()
    belleme = CentreWatcher(broker, "belleme")
    boitron = CentreWatcher(broker, "boitron")
    try:
        # Each centre has its list: its head and delta are there (retained, or live when
        # its first publication came after the watcher subscribed).
        for centre, watcher in (("belleme", belleme), ("boitron", boitron)):
            first = {
                topics.topic(topics.LIST_HEAD, centre),
                topics.topic(topics.LIST_DELTA, centre),
            }
            wait_until(partial(has_all, watcher, first), what=f"{centre}'s list")
        before = {"belleme": len(belleme.messages), "boitron": len(boitron.messages)}
        enrol(server, "Boitron only", ALICE, centres=["boitron"])
        hashed = badge_hash(badge_key, ALICE)
        wait_until(lambda: state_of(unit, hashed) == ACTIVE, what="the card at boitron's unit")
        wait_until(lambda: boitron.messages[before["boitron"] :], what="boitron's delta")
        # A pass for every centre after it: nothing changed anywhere else either.
        runtime(server).access_changed(None)
        lists = runtime(server).bridge.lists
        passes = lists.passes
        wait_until(lambda: lists.passes > passes, what="a publisher pass over every centre")
        assert belleme.messages[before["belleme"] :] == []
        assert boitron.messages[before["boitron"] :] == [
            (topics.topic(topics.LIST_DELTA, "boitron"), False)
        ]
    finally:
        belleme.close()
        boitron.close()


def test_250000_badges_install_in_segments_and_a_revocation_follows_in_seconds(
    server: TestClient, make_unit: Callable[..., EdgeAgent], badge_key: bytes
) -> None:
    count = 250_000  # past the 54,000 badges where a v1 list stopped reaching the units
    uids = [(0x20000000 + i).to_bytes(4, "big") for i in range(count)]
    rt = runtime(server)
    rt.store.import_members(
        {"name": f"Membre {i}", "centres": ["boitron"], "badge_hash": badge_hash(badge_key, uid)}
        for i, uid in enumerate(uids)
    )
    unit = make_unit()
    t0 = time.perf_counter()
    rt.access_changed(["boitron"])
    wait_until(lambda: len(unit.access) == count, timeout=60, what="the 250,000-badge snapshot")
    installed = time.perf_counter() - t0
    head = rt.bridge.lists.state("boitron")
    assert head is not None and head.segments == -(-count // SEGMENT_ENTRIES)
    assert unit.badge("entree", uids[12_345]).granted is True

    victim = badge_hash(badge_key, uids[200_000])
    member = rt.store.member_by_badge_hash(victim)
    t0 = time.perf_counter()
    assert server.post(f"/api/badges/{member['badges'][0]['id']}/revoke").status_code == 200
    wait_until(lambda: state_of(unit, victim) == REVOKED, timeout=30, what="the revocation")
    revoked = time.perf_counter() - t0
    event = unit.badge("entree", uids[200_000])
    assert event.granted is False and event.reason == "revoked"
    print(f"250,000 badges installed in {installed:.2f} s; revoked at the unit in {revoked:.2f} s")
    assert unit.access.snapshot_version == head.snapshot_version  # a delta, not a new snapshot
