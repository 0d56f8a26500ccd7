"""The server's MQTT side on a real mosquitto: acks, rejections, status, answers, presence."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlite_utils import Database

from edge.agent import EdgeAgent
from protocol import topics
from protocol.errors import REJECT_REASONS
from protocol.messages import (
    AccessRequest,
    AccessResponse,
    Ack,
    RoomInfo,
    ServerStatus,
    Status,
    decode,
    encode,
)
from protocol.signing import Signer, Verifier
from server.broker import LocalBroker
from server.runtime import Runtime
from tests.conftest import wait_until
from tests.server.mqtt.support import Listener, event, event_payload

EVENT = topics.topic(topics.EVENT, "boitron-01")
ACK = topics.topic(topics.ACK, "boitron-01")
EPOCH_A = "a" * 32
EPOCH_B = "b" * 32


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str | None:
    """The ingest and ack path on both engines."""
    if request.param == "sqlite":
        return None
    return request.getfixturevalue("postgres_cluster").database()


def runtime(client: TestClient) -> Runtime:
    return client.app.state.runtime  # type: ignore[attr-defined]


@pytest.fixture
def rogue(broker: LocalBroker) -> Iterator[Listener]:
    """A client that publishes as any unit (the ACL is off in tests) and reads acks."""
    listener = Listener(broker, "telecentre/+/ack", "telecentre/+/access/response")
    yield listener
    listener.close()


def acks(listener: Listener, verifier: Verifier, topic: str = ACK) -> list[Ack]:
    return [verifier.open(Ack, m.payload) for m in listener.on(topic)]


def acked(listener: Listener, verifier: Verifier, epoch: str) -> set[int]:
    return {s for a in acks(listener, verifier) if a.epoch == epoch for s in a.seqs}


def rejected(listener: Listener, verifier: Verifier, epoch: str) -> dict[int, str]:
    return {
        r.seq: r.reason for a in acks(listener, verifier) if a.epoch == epoch for r in a.rejected
    }


def test_events_are_acked_signed_and_only_after_their_commit(
    server: TestClient, rogue: Listener, server_key: str
) -> None:
    rt = runtime(server)
    verifier = Verifier([server_key])
    started, release = threading.Event(), threading.Event()

    def hold(db: Database) -> None:
        started.set()
        release.wait(10)

    held = rt.store._writer.submit(hold)
    assert started.wait(10)
    handled = rt.bridge.handlers.handled
    rogue.publish(EVENT, event_payload("boitron-01", EPOCH_A, 1))
    wait_until(lambda: rt.bridge.handlers.handled > handled, what="the event handed to the writer")
    assert rogue.on(ACK) == []  # handled, queued for the writer, not committed: no ack
    assert rt.store.event_count() == 0

    release.set()
    held.result(timeout=10)
    wait_until(lambda: acked(rogue, verifier, EPOCH_A) == {1}, what="the signed ack")
    assert rt.store.event_count() == 1
    (ack,) = acks(rogue, verifier)
    assert ack.device_id == "boitron-01" and ack.rejected == []
    assert abs(ack.issued_at - time.time()) < 10
    with pytest.raises(Exception, match="not trusted"):
        Verifier([Signer.generate().public_hex]).open(Ack, rogue.on(ACK)[0].payload)

    rogue.publish(EVENT, event_payload("boitron-01", EPOCH_A, 1))  # same seq, new event_id
    wait_until(lambda: len(rogue.on(ACK)) == 2, what="the resent event acked again")
    assert rt.store.event_count() == 2  # a new event_id: another event with the same seq


def test_acks_name_the_epoch_of_their_events(
    server: TestClient, rogue: Listener, server_key: str
) -> None:
    verifier = Verifier([server_key])
    first = event("boitron-01", EPOCH_A, 1)
    for e in (first, event("boitron-01", EPOCH_A, 2), event("boitron-01", EPOCH_B, 1)):
        rogue.publish(EVENT, encode(e))
    wait_until(
        lambda: (
            acked(rogue, verifier, EPOCH_A) == {1, 2} and acked(rogue, verifier, EPOCH_B) == {1}
        ),
        what="acks for both epochs",
    )
    for ack in acks(rogue, verifier):  # never one ack mixing the epochs
        assert ack.epoch in (EPOCH_A, EPOCH_B)
    assert runtime(server).store.event_count() == 3

    rogue.publish(EVENT, encode(first))  # the very same event again: acked, stored once
    wait_until(lambda: len(rogue.on(ACK)) >= 3, what="the duplicate acked")
    assert runtime(server).store.event_count() == 3


def test_a_unit_ignores_an_ack_of_another_epoch(
    server: TestClient, make_unit: Callable[..., EdgeAgent]
) -> None:
    unit = make_unit()
    wait_until(
        lambda: server.get("/api/devices/boitron-01").json().get("state") == "online",
        what="the unit subscribed and online",
    )
    wait_until(lambda: unit.outbox.pending_count() == 0, what="the boot events acked")
    unit.link.connected.clear()  # hold the unit's events back: nothing is sent for now
    recorded = unit.badge("entree", bytes.fromhex("0badcafe"))
    pending = unit.outbox.pending_count()
    assert pending == 1
    other_epoch = "0" * 32 if unit.outbox.epoch != "0" * 32 else "1" * 32
    stale = Ack(
        device_id="boitron-01", epoch=other_epoch, seqs=[recorded.seq], issued_at=time.time()
    )
    bridge = runtime(server).bridge
    assert bridge.publish(topics.ACK, "boitron-01", bridge.signer.sign(stale))
    wait_until(lambda: unit.rejected["stale"] == 1, what="the unit to refuse the stale ack")
    assert unit.outbox.pending_count() == pending  # nothing forgotten

    unit.link.connected.set()
    unit._wake.set()
    wait_until(lambda: unit.outbox.pending_count() == 0, what="the real ack of its epoch")


def test_a_malformed_event_with_a_readable_header_is_rejected_by_seq_and_not_stored(
    server: TestClient, rogue: Listener, server_key: str
) -> None:
    verifier = Verifier([server_key])
    rt = runtime(server)
    good = event("boitron-01", EPOCH_A, 3)
    broken = encode(good).replace(b'"kind":"door_forced"', b'"kind":"party"')
    mismatch = event_payload("belleme-01", EPOCH_A, 4)  # claims another unit
    nameless = b'{"v":2,"epoch":"' + EPOCH_A.encode() + b'","seq":"five"}'
    for payload in (broken, mismatch, nameless):
        rogue.publish(EVENT, payload)
    wait_until(
        lambda: rejected(rogue, verifier, EPOCH_A) == {3: "malformed", 4: "device_mismatch"},
        what="both events rejected by seq",
    )
    wait_until(lambda: rt.bridge.stats()["rejected"] == 3, what="all three counted")
    assert rt.bridge.rejected == {"malformed": 2, "device_mismatch": 1}
    assert acked(rogue, verifier, EPOCH_A) == set()
    assert rt.store.event_count() == 0
    health = server.get("/healthz").json()
    assert health["rejected_by_reason"] == {"malformed": 2, "device_mismatch": 1}


def test_a_status_from_a_unit_missing_from_the_registry_creates_nothing(
    server: TestClient, rogue: Listener
) -> None:
    stray = Status(device_id="stray-01", state="online", rooms=[RoomInfo(id="visio", name="V")])
    rogue.publish(topics.topic(topics.STATUS, "stray-01"), encode(stray))
    rt = runtime(server)
    wait_until(lambda: rt.bridge.rejected.get("unknown_device") == 1, what="unknown_device")
    assert [d["device_id"] for d in server.get("/api/devices").json()["items"]] == ["boitron-01"]
    assert rt.store.db["rooms"].count == 0

    # Its events are still kept (never lost), without a device row.
    rogue.publish(topics.topic(topics.EVENT, "stray-01"), event_payload("stray-01", EPOCH_A, 1))
    wait_until(lambda: rt.store.event_count() == 1, what="the stray unit's event stored")
    assert server.get("/api/devices/stray-01").status_code == 404


def test_a_room_held_by_another_unit_of_the_centre_is_refused(
    server: TestClient, rogue: Listener
) -> None:
    assert server.put("/api/devices/boitron-02", json={"centre_id": "boitron"}).status_code == 200
    rt = runtime(server)

    def announce(device_id: str, *rooms: str) -> None:
        status = Status(
            device_id=device_id,
            state="online",
            rooms=[RoomInfo(id=r, name=r.title()) for r in rooms],
        )
        rogue.publish(topics.topic(topics.STATUS, device_id), encode(status))

    def rooms() -> dict[str, tuple[str, str]]:
        (boitron,) = server.get("/api/occupancy").json()
        return {r["room_id"]: (r["name"], r["state"]) for r in boitron["rooms"]}

    announce("boitron-01", "visio")
    wait_until(lambda: "visio" in rooms(), what="boitron-01's room")
    announce("boitron-02", "visio", "bureau")
    wait_until(lambda: rt.bridge.rejected.get("room_taken") == 1, what="room_taken counted")
    wait_until(lambda: "bureau" in rooms(), what="boitron-02's other room kept")
    holders = {r["room_id"]: r["device_id"] for r in rt.store.db["rooms"].rows}
    assert holders == {"visio": "boitron-01", "bureau": "boitron-02"}

    rogue.publish(
        topics.topic(topics.EVENT, "boitron-02"),
        event_payload(
            "boitron-02",
            EPOCH_B,
            1,
            kind="room",
            door=None,
            room="visio",
            room_state="occupied",
            ts=time.time(),
        ),
    )
    rogue.publish(
        EVENT,
        event_payload(
            "boitron-01",
            EPOCH_A,
            1,
            kind="room",
            door=None,
            room="visio",
            room_state="free",
            ts=time.time(),
        ),
    )
    wait_until(lambda: rt.store.event_count() == 2, what="both room events stored")
    assert rooms()["visio"] == ("Visio", "free")  # boitron-02's report did not move it


def test_rejection_counters_are_keyed_by_fixed_reasons_only(
    server: TestClient, rogue: Listener
) -> None:
    rt = runtime(server)
    base = encode(Status(device_id="boitron-01", state="online"))[:-1]
    leaves = (topics.STATUS, topics.EVENT, topics.ACCESS_REQUEST, topics.COMMAND_RESULT)
    for i in range(100):
        field = secrets.token_hex(8)
        payload = base + b',"' + field.encode() + b'":1}'
        rogue.client.publish(topics.topic(leaves[i % 4], "boitron-01"), payload, qos=1)
    rogue.publish(topics.topic(topics.STATUS, "boitron-01"), b"\xff" * 10)
    wait_until(lambda: rt.bridge.stats()["rejected"] == 101, what="101 rejections")
    assert set(rt.bridge.rejected) <= set(REJECT_REASONS)
    assert set(server.get("/healthz").json()["rejected_by_reason"]) <= set(REJECT_REASONS)


def test_the_handler_worker_survives_a_failing_handler(
    server: TestClient, rogue: Listener, monkeypatch: pytest.MonkeyPatch
) -> None:
    rt = runtime(server)
    handlers = rt.bridge.handlers
    real = handlers.status
    calls = []

    def fails_once(device_id: str, payload: bytes, retain: bool = False) -> None:
        calls.append(device_id)
        if len(calls) == 1:
            raise RuntimeError("a bug in a handler")
        real(device_id, payload, retain)

    monkeypatch.setattr(handlers, "status", fails_once)
    online = encode(Status(device_id="boitron-01", state="online", software_version="9.9"))
    rogue.publish(topics.topic(topics.STATUS, "boitron-01"), online)
    wait_until(lambda: handlers.worker.errors == 1, what="the failure counted")
    rogue.publish(topics.topic(topics.STATUS, "boitron-01"), online)
    wait_until(
        lambda: server.get("/api/devices/boitron-01").json().get("software_version") == "9.9",
        what="the next message handled",
    )
    health = server.get("/healthz").json()
    (worker,) = [w for w in health["workers"] if w["name"] == "mqtt-handler"]
    assert worker["alive"] is True and worker["errors"] == 1
    assert "a bug in a handler" in worker["last_error"]
    assert health["ok"] is True


def test_an_access_request_is_answered_signed_with_the_badge_entry(
    server: TestClient, rogue: Listener, server_key: str
) -> None:
    verifier = Verifier([server_key])
    member = server.post("/api/members", json={"name": "Alice", "valid_until": 2e9}).json()
    hashed = "ab" * 32
    server.post(f"/api/members/{member['id']}/badges", json={"badge_hash": hashed})
    topic = topics.topic(topics.ACCESS_REQUEST, "boitron-01")
    answers = topics.topic(topics.ACCESS_RESPONSE, "boitron-01")
    ids = ["11111111-1111-4111-8111-111111111111", "22222222-2222-4222-8222-222222222222"]
    for request_id, badge in zip(ids, (hashed, "cd" * 32), strict=True):
        request = AccessRequest(request_id=request_id, badge_hash=badge, door="entree", ts=1.0)
        rogue.publish(topic, encode(request))
    wait_until(lambda: len(rogue.on(answers)) == 2, what="two answers")
    got = {
        r.request_id: r
        for r in (verifier.open(AccessResponse, m.payload) for m in rogue.on(answers))
    }
    yes, no = got[ids[0]], got[ids[1]]
    assert (yes.granted, yes.reason, yes.device_id) == (True, "granted", "boitron-01")
    assert yes.entry is not None and yes.entry.badge == bytes.fromhex(hashed)
    assert (yes.entry.member_id, yes.entry.state, yes.entry.valid_until) == (member["id"], 0, 2e9)
    assert (no.granted, no.reason, no.entry) == (False, "unknown_card", None)


def test_an_access_request_is_answered_while_the_handler_worker_is_busy(
    server: TestClient, rogue: Listener, server_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A member at the door does not wait behind the messages queued before their card."""
    rt = runtime(server)
    handlers = rt.bridge.handlers
    verifier = Verifier([server_key])
    member = server.post("/api/members", json={"name": "Alice"}).json()
    hashed = "ab" * 32
    server.post(f"/api/members/{member['id']}/badges", json={"badge_hash": hashed})
    busy, release = threading.Event(), threading.Event()
    real = handlers.status

    def slow_status(device_id: str, payload: bytes, retain: bool = False) -> None:
        busy.set()
        release.wait(30)
        real(device_id, payload, retain)

    monkeypatch.setattr(handlers, "status", slow_status)
    answers = topics.topic(topics.ACCESS_RESPONSE, "boitron-01")
    try:
        online = encode(Status(device_id="boitron-01", state="online", software_version="9.9"))
        rogue.publish(topics.topic(topics.STATUS, "boitron-01"), online)
        wait_until(busy.is_set, what="the handler worker busy with a status")
        rogue.publish(EVENT, event_payload("boitron-01", EPOCH_A, 1))  # queued behind it
        request_id = "33333333-3333-4333-8333-333333333333"
        request = AccessRequest(request_id=request_id, badge_hash=hashed, door="entree", ts=1.0)
        rogue.publish(topics.topic(topics.ACCESS_REQUEST, "boitron-01"), encode(request))
        (message,) = wait_until(lambda: rogue.on(answers), what="the answer")
        answer = verifier.open(AccessResponse, message.payload)
        assert (answer.request_id, answer.granted, answer.reason) == (request_id, True, "granted")
        assert rt.store.event_count() == 0  # the event is still waiting behind the status
    finally:
        release.set()
    wait_until(lambda: rt.store.event_count() == 1, what="the queued event stored")
    device = server.get("/api/devices/boitron-01").json()
    assert device["software_version"] == "9.9"


@pytest.mark.parametrize("database_url", [None], ids=["sqlite"])  # paho answers: SQLite
def test_an_access_request_that_fails_on_the_network_thread_is_answered_by_the_worker(
    server: TestClient, rogue: Listener, server_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    rt = runtime(server)
    assert rt.bridge.handlers.answer_at_once
    verifier = Verifier([server_key])
    member = server.post("/api/members", json={"name": "Alice"}).json()
    hashed = "ab" * 32
    server.post(f"/api/members/{member['id']}/badges", json={"badge_hash": hashed})
    real = rt.store.asked_card
    threads: list[str] = []

    def fails_on_first_call(*args: Any) -> Any:
        threads.append(threading.current_thread().name)
        if len(threads) == 1:
            raise RuntimeError("a read that failed once")
        return real(*args)

    monkeypatch.setattr(rt.store, "asked_card", fails_on_first_call)
    answers = topics.topic(topics.ACCESS_RESPONSE, "boitron-01")
    request_id = "44444444-4444-4444-8444-444444444444"
    request = AccessRequest(request_id=request_id, badge_hash=hashed, door="entree", ts=1.0)
    rogue.publish(topics.topic(topics.ACCESS_REQUEST, "boitron-01"), encode(request))
    (message,) = wait_until(lambda: rogue.on(answers), what="the answer")
    answer = verifier.open(AccessResponse, message.payload)
    assert (answer.request_id, answer.granted) == (request_id, True)
    assert threads[1] == "mqtt-handler"  # the second attempt, on the worker
    assert threads[0] != "mqtt-handler"
    assert rt.bridge.handlers.worker.errors == 0


def test_the_server_announces_itself_retained_with_a_new_instance_per_start(
    server: TestClient, broker: LocalBroker
) -> None:
    status_topic = topics.topic(topics.SERVER_STATUS)
    rt = runtime(server)
    first = Listener(broker, status_topic)
    try:
        msgs = wait_until(lambda: first.on(status_topic), what="the retained server status")
        assert msgs[0].retain
        online = decode(ServerStatus, msgs[0].payload)
        assert (online.state, online.instance) == ("online", rt.bridge.instance)

        # An unclean loss of the connection: the broker publishes the last will.
        sock = rt.bridge._client.socket()
        assert sock is not None
        sock.close()

        def states() -> list[tuple[str, str]]:
            return [
                (s.state, s.instance)
                for s in (decode(ServerStatus, m.payload) for m in first.on(status_topic))
            ]

        wait_until(
            lambda: ("offline", rt.bridge.instance) in states(), timeout=15, what="the last will"
        )
        wait_until(lambda: states()[-1] == ("online", rt.bridge.instance), timeout=15)
        assert rt.bridge.stats()["rejected"] == 0  # its own status is not a unit's
    finally:
        first.close()
