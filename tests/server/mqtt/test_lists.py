"""Each unit's retained access list follows members and badges, on a real broker."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator

import paho.mqtt.client as mqtt
import pytest
from fastapi.testclient import TestClient

from edge.agent import EdgeAgent
from protocol import topics
from protocol.badges import badge_hash
from protocol.messages import AccessList, decode
from protocol.mqtt import make_client
from server.broker import LocalBroker
from tests.conftest import wait_until


class ListWatcher:
    """A bystander subscribed to one unit's access-list topic."""

    def __init__(self, port: int, device_id: str) -> None:
        self.lists: list[AccessList] = []
        self.retained: list[bool] = []
        self._subscribed = threading.Event()
        self._lock = threading.Lock()
        self._topic = topics.topic(topics.ACCESS_LIST, device_id)
        self._client, props = make_client(f"watcher-{uuid.uuid4().hex[:8]}", session_expiry_s=0)
        self._client.on_connect = lambda c, *_: c.subscribe(self._topic, qos=1)
        self._client.on_subscribe = lambda *_: self._subscribed.set()
        self._client.on_message = self._on_message
        self._client.connect("127.0.0.1", port, clean_start=True, properties=props)
        self._client.loop_start()
        assert self._subscribed.wait(10), "the watcher could not subscribe"

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.lists.append(decode(AccessList, msg.payload))
            self.retained.append(bool(msg.retain))

    def latest(self) -> AccessList | None:
        with self._lock:
            return self.lists[-1] if self.lists else None

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


@pytest.fixture
def watch(broker: LocalBroker) -> Iterator[Callable[[str], ListWatcher]]:
    watchers: list[ListWatcher] = []

    def make(device_id: str) -> ListWatcher:
        watchers.append(ListWatcher(broker.port, device_id))
        return watchers[-1]

    yield make
    for watcher in watchers:
        watcher.close()


def record_lists(agent: EdgeAgent) -> list[int]:
    """Every list version the (not yet started) unit receives, installed or not."""
    seen: list[int] = []
    install = agent._install_list

    def recording(access_list: AccessList) -> None:
        seen.append(access_list.version)
        install(access_list)

    agent._install_list = recording  # type: ignore[method-assign]
    return seen


def enrol(client: TestClient, name: str, uid: bytes, **fields: object) -> int:
    member = client.post("/api/members", json={"name": name, **fields})
    assert member.status_code == 201, member.text
    badge = client.post(f"/api/members/{member.json()['id']}/badges", json={"uid": uid.hex()})
    assert badge.status_code == 201, badge.text
    return member.json()["id"]


def hashes(access_list: AccessList | None) -> set[str]:
    return set() if access_list is None else {g.badge_hash for g in access_list.grants}


def test_an_assigned_unit_gets_its_retained_list(
    server: TestClient, make_unit: Callable[..., EdgeAgent], watch: Callable[[str], ListWatcher]
) -> None:
    unit = make_unit()
    wait_until(lambda: unit.access.access_list is not None, what="boitron-01's list")
    assert unit.access.access_list is not None and unit.access.access_list.centre == "boitron"

    early = watch("boitron-02")  # listening before the unit is assigned
    assert early.lists == []
    assigned = server.put("/api/devices/boitron-02", json={"centre_id": "boitron"})
    assert assigned.status_code == 200, assigned.text
    first = wait_until(early.latest, what="boitron-02's list")
    assert first.centre == "boitron" and first.grants == []

    late = watch("boitron-02")  # a unit arriving later finds the list kept on the broker
    wait_until(late.latest, what="the retained list")
    assert late.retained[0] is True
    assert late.lists[0].version == early.latest().version  # type: ignore[union-attr]


def test_a_member_of_another_centre_is_not_in_the_list(
    server: TestClient, make_unit: Callable[..., EdgeAgent], badge_key: bytes
) -> None:
    assert server.post("/api/centres", json={"id": "belleme", "name": "Bellême"}).status_code == 201
    unit = make_unit()
    elsewhere = bytes.fromhex("0b0b0b0b")
    everywhere = bytes.fromhex("0e0e0e0e")
    here_too = bytes.fromhex("0c0c0c0c")
    enrol(server, "Bellême only", elsewhere, centres=["belleme"])
    enrol(server, "Both", here_too, centres=["belleme", "boitron"])
    enrol(server, "Everywhere", everywhere)  # enrolled last: its list saw the others

    wanted = {badge_hash(badge_key, everywhere), badge_hash(badge_key, here_too)}
    wait_until(lambda: wanted <= hashes(unit.access.access_list), what="the new list")
    assert badge_hash(badge_key, elsewhere) not in hashes(unit.access.access_list)
    assert len(hashes(unit.access.access_list)) == 2


def test_a_burst_of_enrolments_ends_in_one_complete_list(
    server: TestClient, make_unit: Callable[..., EdgeAgent], badge_key: bytes
) -> None:
    unit = make_unit(start=False)
    seen = record_lists(unit)
    unit.start()
    wait_until(lambda: seen, what="the first list")

    member = server.post("/api/members", json={"name": "Équipe"}).json()
    uids = [bytes([4, 0xB0, i, 0x5E]) for i in range(20)]
    for uid in uids:
        badge = server.post(f"/api/members/{member['id']}/badges", json={"uid": uid.hex()})
        assert badge.status_code == 201, badge.text

    wanted = {badge_hash(badge_key, uid) for uid in uids}
    wait_until(lambda: hashes(unit.access.access_list) == wanted, what="a list with all 20")
    versions = list(seen)
    assert all(a < b for a, b in zip(versions, versions[1:], strict=False)), versions
    assert unit.access.version in versions


def test_a_unit_connecting_later_gets_the_published_list(
    server: TestClient,
    make_unit: Callable[..., EdgeAgent],
    watch: Callable[[str], ListWatcher],
    badge_key: bytes,
) -> None:
    alice = bytes.fromhex("04a1b2c3")
    watcher = watch("boitron-01")
    enrol(server, "Alice", alice)
    hashed = badge_hash(badge_key, alice)
    published = wait_until(
        lambda: (latest := watcher.latest()) is not None and hashed in hashes(latest) and latest,
        what="the list with Alice on the broker",
    )

    unit = make_unit(start=False)  # installed after the list went out
    seen = record_lists(unit)
    unit.start()
    wait_until(lambda: hashed in hashes(unit.access.access_list), what="the unit to know Alice")
    versions = list(seen)
    assert versions[0] == published.version  # the retained copy, before any republish
    assert all(a < b for a, b in zip(versions, versions[1:], strict=False)), versions
