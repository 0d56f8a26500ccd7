"""Two server workers on one PostgreSQL database sharing the units' messages through an
MQTT v5 shared subscription on a real mosquitto."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from protocol import topics
from protocol.messages import Ack, ListDelta, ListHead
from protocol.signing import Verifier
from server.app import create_app
from server.broker import LocalBroker
from server.routes.live import HEARTBEAT_S
from server.runtime import Runtime
from server.settings import Settings, SettingsError
from tests.conftest import as_admin, wait_until
from tests.server.mqtt.support import Listener, event_payload

UNITS = ("boitron-01", "boitron-02")
EPOCH = "e" * 32
EVENTS_PER_UNIT = 150
GROUP = "workers"


def runtime(client: TestClient) -> Runtime:
    return client.app.state.runtime  # type: ignore[attr-defined]


class AckWatch:
    """Reads every ack as it arrives and checks, there and then, that each event it names
    is already in the database (an ack must follow the commit)."""

    def __init__(self, broker: LocalBroker, verifier: Verifier, runtime: Runtime) -> None:
        self.verifier = verifier
        self.store = runtime.store
        self.acked: dict[str, set[int]] = {u: set() for u in UNITS}
        self.before_commit: list[tuple[str, int]] = []
        self._lock = threading.Lock()
        self.listener = Listener(broker, "telecentre/+/ack")
        self.listener.client.on_message = self._on_ack

    def _on_ack(self, client: Any, userdata: Any, msg: Any) -> None:
        ack = self.verifier.open(Ack, msg.payload)
        stored = {
            r[0]
            for r in self.store.db.execute(
                "SELECT seq FROM events WHERE device_id = ?", [ack.device_id]
            ).fetchall()
        }
        with self._lock:
            self.acked[ack.device_id].update(ack.seqs)
            self.before_commit += [(ack.device_id, s) for s in ack.seqs if s not in stored]

    def all_acked(self) -> bool:
        with self._lock:
            return all(len(s) == EVENTS_PER_UNIT for s in self.acked.values())


def worker_settings(
    broker: LocalBroker, tmp_path: Path, name: str, url: str, key_file: Path, signing: Path
) -> Settings:
    account = (
        {**broker.server_settings(), "mqtt_client_id": broker.server_username}
        if name == broker.server_username
        else broker.add_server_worker(name)
    )
    return Settings(
        data_dir=tmp_path / name,
        badge_key_file=key_file,
        signing_key_file=signing,
        database_url=url,
        mqtt_share_group=GROUP,
        **account,  # type: ignore[arg-type]
    )


@pytest.fixture
def workers(
    broker: LocalBroker,
    postgres_cluster: Any,
    tmp_path: Path,
    key_file: Path,
    signing_key_file: Path,
) -> Iterator[list[TestClient]]:
    url = postgres_cluster.database()
    names = [broker.server_username, "telecentre-server-2"]
    with ExitStack() as stack:
        clients = []
        for name in names:
            settings = worker_settings(broker, tmp_path, name, url, key_file, signing_key_file)
            clients.append(stack.enter_context(TestClient(create_app(settings))))
        for client in clients:
            wait_until(runtime(client).bridge.receiving, what="worker receiving")
        as_admin(clients[0])
        as_admin(clients[1])
        yield clients


def leader_and_other(workers: list[TestClient]) -> tuple[TestClient, TestClient]:
    leaders = [c for c in workers if runtime(c).bridge.leader]
    assert len(leaders) == 1, "exactly one worker leads"
    return leaders[0], next(c for c in workers if c is not leaders[0])


def test_two_workers_store_every_event_once_ack_after_commit_and_publish_lists_once(
    workers: list[TestClient], broker: LocalBroker, server_key: str, badge_key: bytes
) -> None:
    leader, other = leader_and_other(workers)
    lists = Listener(broker, "telecentre/_centre/+/list/#")
    # Set up through the worker that does not lead: the leader hears of it and publishes.
    assert other.post("/api/centres", json={"id": "boitron", "name": "Boitron"}).status_code == 201
    for unit in UNITS:
        assert other.put(f"/api/devices/{unit}", json={"centre_id": "boitron"}).status_code == 200
    member = other.post("/api/members", json={"name": "Zoé", "centres": ["boitron"]}).json()
    enrolled = other.post(
        f"/api/members/{member['id']}/badges", json={"uid": "04a1b2c3"}
    ).status_code
    assert enrolled == 201
    head = topics.topic(topics.LIST_HEAD, "boitron")
    verifier = Verifier([server_key])
    wait_until(lambda: lists.on(head), what="the centre's list published")

    def badge_listed() -> bool:  # the enrolment, made on the other worker, reached the list
        state = runtime(leader).store.list_state("boitron")
        return state is not None and len(state.snapshot) + len(state.upsert) == 1

    wait_until(badge_listed, what="the badge enrolled through the other worker listed")
    watch = AckWatch(broker, verifier, runtime(leader))
    rogue = Listener(broker)
    for seq in range(1, EVENTS_PER_UNIT + 1):
        for unit in UNITS:
            rogue.client.publish(
                topics.topic(topics.EVENT, unit), event_payload(unit, EPOCH, seq), qos=1
            )
    wait_until(watch.all_acked, timeout=60, what="every event acked")

    assert watch.before_commit == []  # no ack came before its event was stored
    store = runtime(leader).store
    assert store.event_count() == EVENTS_PER_UNIT * len(UNITS)  # each stored once
    received = [runtime(c).bridge.handlers.handled for c in (leader, other)]
    assert all(n > 0 for n in received), f"the broker shared the events: {received}"
    # The list: published by the leader alone (every list message on the broker is one the
    # leader's publisher counted), and the stored version is the newest one published.
    assert runtime(other).bridge.lists.publisher is None
    published = runtime(leader).bridge.lists.publisher
    heads = [verifier.open(ListHead, m.payload) for m in lists.on(head)]
    deltas = [
        verifier.open(ListDelta, m.payload)
        for m in lists.on(topics.topic(topics.LIST_DELTA, "boitron"))
    ]
    versions = [h.version for h in heads] + [d.version for d in deltas]
    assert published is not None and published.messages == len(lists.messages)
    state = store.list_state("boitron")
    assert state is not None and max(versions) == state.version
    lists.close()
    watch.listener.close()
    rogue.close()


def test_when_the_leader_stops_the_other_worker_takes_over(
    workers: list[TestClient], broker: LocalBroker, server_key: str
) -> None:
    leader, other = leader_and_other(workers)
    status = Listener(broker, topics.topic(topics.SERVER_STATUS))
    leader.__exit__(None, None, None)  # the leader's worker stops
    wait_until(lambda: runtime(other).bridge.leader, timeout=15, what="a new leader")
    instance = runtime(other).bridge.instance
    wait_until(
        lambda: any(instance.encode() in m.payload for m in status.messages),
        what="the new leader announces the server online",
    )
    assert other.post("/api/centres", json={"id": "boitron", "name": "Boitron"}).status_code == 201
    assert other.put("/api/devices/boitron-01", json={"centre_id": "boitron"}).status_code == 200
    assert runtime(other).bridge.lists.publisher is not None
    # The stopped worker left the group: every event now goes to the one still running.
    watch = AckWatch(broker, Verifier([server_key]), runtime(other))
    rogue = Listener(broker)
    for seq in range(1, 21):
        rogue.publish(
            topics.topic(topics.EVENT, "boitron-01"), event_payload("boitron-01", EPOCH, seq)
        )
    wait_until(lambda: len(watch.acked["boitron-01"]) == 20, what="every event acked")
    assert watch.before_commit == []
    status.close()
    watch.listener.close()
    rogue.close()


def test_a_workers_live_stream_is_pushed_for_what_the_other_worker_stored(
    workers: list[TestClient], broker: LocalBroker
) -> None:
    leader, other = leader_and_other(workers)
    assert other.post("/api/centres", json={"id": "boitron", "name": "Boitron"}).status_code == 201
    assert other.put("/api/devices/boitron-01", json={"centre_id": "boitron"}).status_code == 200
    members = [
        other.post("/api/members", json={"name": f"Membre {k}", "centres": ["boitron"]}).json()
        for k in range(6)
    ]
    pushes: list[int] = []  # the centre's count in each push of the leader's stream
    reading = threading.Thread(
        target=_read_counts, args=(leader, pushes, len(members)), daemon=True
    )
    reading.start()
    wait_until(lambda: pushes, what="the stream's first push")
    stored_by_other = runtime(other).bridge.handlers.handled
    unit = Listener(broker)
    try:
        for k, member in enumerate(members, start=1):
            payload = event_payload(
                "boitron-01",
                EPOCH,
                k,
                kind="access",
                ts=time.time(),
                badge_hash=f"{k:064x}",
                granted=True,
                reason="granted",
                direction="in",
                member_id=member["id"],
            )
            unit.publish(topics.topic(topics.EVENT, "boitron-01"), payload)
            # Well within the stream's heartbeat: pushed after the commit, whichever worker
            # stored the event.
            wait_until(lambda k=k: pushes[-1] == k, timeout=HEARTBEAT_S / 3, what=f"{k} in")
    finally:
        unit.close()
        reading.join(10)
    assert runtime(other).bridge.handlers.handled > stored_by_other, (
        "the broker gave the other worker none of the events: nothing was shown"
    )
    assert runtime(other).bridge.live_notices is not None
    assert runtime(other).bridge.live_notices.sent > 0


def _read_counts(client: TestClient, pushes: list[int], until: int) -> None:
    with client.stream("GET", "/api/occupancy/stream") as stream:
        for line in stream.iter_lines():
            if line.startswith("data:"):
                centres = json.loads(line.removeprefix("data:"))
                pushes.append(centres[0]["present"] if centres else 0)
                if pushes[-1] >= until:
                    return


def test_a_share_group_needs_postgresql(
    broker: LocalBroker, tmp_path: Path, key_file: Path, signing_key_file: Path
) -> None:
    settings = Settings(
        data_dir=tmp_path / "server",
        badge_key_file=key_file,
        signing_key_file=signing_key_file,
        mqtt_share_group=GROUP,
        **broker.server_settings(),  # type: ignore[arg-type]
    )
    with pytest.raises(SettingsError, match="database_url"), TestClient(create_app(settings)):
        pass
