"""The units' events received in a process of their own (``server.mqtt.receiver``), on a
real mosquitto with the production ACL: stored and acked as before, a crash of that process
loses nothing, a broker without its account falls back, and it never outlives the server."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from protocol import topics
from protocol.messages import Ack
from protocol.signing import Verifier
from server.app import create_app
from server.broker import LocalBroker
from server.domain import broker_access
from server.domain.broker_access import Grant
from server.mqtt.receiver import EventReceiver, ReceiverConfig, _read_frame
from server.runtime import Runtime
from server.settings import Settings
from tests.conftest import TEST_UNITS, as_admin, wait_until
from tests.server.mqtt.support import Listener, event_payload

EVENT = topics.topic(topics.EVENT, "boitron-01")
ACK = topics.topic(topics.ACK, "boitron-01")
EPOCH = "e" * 32


def runtime(client: TestClient) -> Runtime:
    return client.app.state.runtime  # type: ignore[attr-defined]


@pytest.fixture
def unit(broker: LocalBroker) -> Iterator[Listener]:
    """Publishes as a unit (an observer account: every topic) and reads the acks."""
    listener = Listener(broker, "telecentre/+/ack")
    yield listener
    listener.close()


def acked(listener: Listener, verifier: Verifier) -> set[int]:
    return {s for m in listener.on(ACK) for s in verifier.open(Ack, m.payload).seqs}


def server_settings(
    broker: LocalBroker, tmp_path: Path, key_file: Path, signing_key_file: Path, **overrides: Any
) -> Settings:
    """A server of its own on ``broker`` (the ``server`` fixture's, without its seeding)."""
    return Settings(
        data_dir=tmp_path / "server",
        badge_key_file=key_file,
        signing_key_file=signing_key_file,
        **broker.server_settings(),  # type: ignore[arg-type]
        **overrides,
    )


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A child that exited but is not reaped yet is a zombie: not running any more.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:  # reaped meanwhile
        return False


def test_events_come_through_the_receiver_process_and_are_acked(
    server: TestClient, unit: Listener, server_key: str
) -> None:
    rt = runtime(server)
    receiver = rt.bridge.receiver
    assert receiver is not None and receiver.pid not in (None, os.getpid())
    assert alive(receiver.pid)
    for seq in range(1, 6):
        unit.publish(EVENT, event_payload("boitron-01", EPOCH, seq))
    verifier = Verifier([server_key])
    wait_until(lambda: acked(unit, verifier) == {1, 2, 3, 4, 5}, what="five signed acks")
    assert rt.store.event_count() == 5
    assert receiver.received == 5  # the events came through the child, not the server's link
    # ... and their acks went out through it, signed there with the server's key.
    acker = rt.bridge.handlers.acker
    assert acker.forwarded >= 1 and acker.forwarded == acker.sent
    health = server.get("/healthz").json()
    assert health["ok"] is True
    assert health["mqtt"]["receiving"] is True
    assert health["mqtt"]["receiver"]["pid"] == receiver.pid
    assert health["mqtt"]["receiver"]["acks"] is True


def test_a_killed_receiver_is_started_again_and_what_came_meanwhile_is_stored_once(
    server: TestClient, unit: Listener, server_key: str
) -> None:
    rt = runtime(server)
    receiver = rt.bridge.receiver
    assert receiver is not None
    first = receiver.pid
    assert first is not None
    unit.publish(EVENT, event_payload("boitron-01", EPOCH, 1))
    verifier = Verifier([server_key])
    wait_until(lambda: acked(unit, verifier) == {1}, what="the first ack")

    os.kill(first, signal.SIGKILL)
    wait_until(lambda: not receiver.listening.is_set(), what="the server to see it gone")
    # Sent while no receiver runs: its persistent session keeps them for the next one.
    for seq in (2, 3):
        unit.publish(EVENT, event_payload("boitron-01", EPOCH, seq))
    wait_until(receiver.listening.is_set, timeout=15, what="the receiver started again")
    assert receiver.pid != first and receiver.starts == 2
    wait_until(lambda: acked(unit, verifier) == {1, 2, 3}, what="the events sent meanwhile")
    assert rt.store.event_count() == 3
    assert server.get("/healthz").json()["ok"] is True


def test_the_receiver_leaves_with_the_server(
    broker: LocalBroker, tmp_path: Path, key_file: Path, signing_key_file: Path
) -> None:
    settings = server_settings(broker, tmp_path, key_file, signing_key_file)
    with TestClient(create_app(settings)) as client:
        receiver = runtime(client).bridge.receiver
        assert receiver is not None
        wait_until(receiver.listening.is_set, what="the receiver subscribed")
        pid = receiver.pid
        assert pid is not None and alive(pid)
    assert not alive(pid)
    assert receiver.returncode == 0  # it left when told, it was not killed


def test_the_child_leaves_when_the_server_dies(broker: LocalBroker) -> None:
    """A server killed outright cannot stop its receiver: its end of the pipe closes."""
    config = ReceiverConfig(
        host="127.0.0.1",
        port=broker.port,
        username=broker_access.ingest_username(broker.server_username),
        password=broker.passwords[broker.server_username],
        tls=True,
        ca_file=str(broker.ca_file),
        subscription=topics.subscription(topics.EVENT),
        session_expiry_s=0,
    )
    child = subprocess.Popen(
        [sys.executable, "-m", "server.mqtt.receiver"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert child.stdin is not None and child.stdout is not None
        child.stdin.write(json.dumps(config.__dict__).encode() + b"\n")
        child.stdin.flush()
        assert _read_frame(child.stdout) == ("state", {"listening": True})
        child.stdin.close()  # what the kernel does when the server dies
        assert child.wait(10) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


@contextlib.contextmanager
def own_server(
    broker_class: type[LocalBroker], tmp_path: Path, key_file: Path, signing_key_file: Path
) -> Iterator[tuple[LocalBroker, TestClient, EventReceiver]]:
    """A broker of ``broker_class`` and a server of its own on it, with its receiver."""
    with broker_class(units=TEST_UNITS) as broker:
        settings = server_settings(broker, tmp_path, key_file, signing_key_file)
        with TestClient(create_app(settings)) as client:
            receiver = runtime(client).bridge.receiver
            assert receiver is not None
            yield broker, client, receiver


def send_and_get_acks(
    client: TestClient, broker: LocalBroker, server_key: str, seqs: list[int]
) -> None:
    """Register boitron-01 on a server of its own (no seeding), send its events ``seqs`` as
    the unit and wait for their signed acks."""
    as_admin(client)
    assert client.post("/api/centres", json={"id": "boitron", "name": "B"}).is_success
    assert client.put("/api/devices/boitron-01", json={"centre_id": "boitron"}).is_success
    unit = Listener(broker, "telecentre/+/ack")
    try:
        for seq in seqs:
            unit.publish(EVENT, event_payload("boitron-01", EPOCH, seq))
        verifier = Verifier([server_key])
        wait_until(lambda: acked(unit, verifier) == set(seqs), what="the signed acks")
    finally:
        unit.close()


class BrokerBeforeTheReceiver(LocalBroker):
    """A broker whose password file and ACL were written before the receiver's account."""

    def grants(self) -> list[Grant]:
        return [g for g in super().grants() if not g.username.endswith(broker_access.INGEST_SUFFIX)]


def test_a_broker_without_the_receivers_account_still_gets_the_events_stored(
    tmp_path: Path,
    key_file: Path,
    signing_key_file: Path,
    server_key: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="server.mqtt.bridge")
    with own_server(BrokerBeforeTheReceiver, tmp_path, key_file, signing_key_file) as (
        broker,
        client,
        receiver,
    ):
        rt = runtime(client)
        wait_until(lambda: receiver.refused is not None, what="the account refused")
        wait_until(rt.bridge.receiving, what="the events received by the server itself")
        send_and_get_acks(client, broker, server_key, [1])
        assert rt.store.event_count() == 1
        health = client.get("/healthz").json()
        assert health["ok"] is True
        assert health["mqtt"]["receiver"]["process"] is False
        assert "not authorised" in health["mqtt"]["receiver"]["error"]
        wait_until(lambda: receiver.pid is None or not alive(receiver.pid), what="exit")
        assert "telecentre-server broker sync" in caplog.text
        assert broker_access.ingest_username(broker.server_username) in caplog.text


class BrokerBeforeTheReceiversAcks(LocalBroker):
    """A broker whose ACL gave the receiver's account the events alone, not the acks."""

    def grants(self) -> list[Grant]:
        return [
            replace(g, write=()) if g.username.endswith(broker_access.INGEST_SUFFIX) else g
            for g in super().grants()
        ]


def test_a_broker_refusing_the_receivers_acks_gets_them_from_the_server(
    tmp_path: Path,
    key_file: Path,
    signing_key_file: Path,
    server_key: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="server.mqtt.receiver")
    with own_server(BrokerBeforeTheReceiversAcks, tmp_path, key_file, signing_key_file) as (
        broker,
        client,
        receiver,
    ):
        rt = runtime(client)
        wait_until(lambda: receiver.acks_refused is not None, what="the probe refused")
        send_and_get_acks(client, broker, server_key, [1, 2])
        assert receiver.received == 2  # the events still come through the child
        assert rt.bridge.handlers.acker.forwarded == 0
        health = client.get("/healthz").json()
        assert health["ok"] is True
        assert health["mqtt"]["receiver"]["acks"] is False
        assert "authori" in health["mqtt"]["receiver"]["acks_error"].lower()
        assert "telecentre-server broker sync" in caplog.text


def test_a_receiver_that_takes_no_acks_is_replaced_and_the_acks_sent_here(
    broker: LocalBroker,
) -> None:
    """A child that stops reading its pipe (frozen) never holds the acks up for long."""
    receiver = EventReceiver(
        ReceiverConfig("127.0.0.1", broker.port, "x", "y", False, None, "t", 0),
        deliver=lambda batch: None,
        on_refused=lambda message: None,
    )
    frozen = subprocess.Popen(
        [sys.executable, "-c", "import threading; threading.Event().wait(60)"],
        stdin=subprocess.PIPE,
    )
    try:
        assert frozen.stdin is not None
        os.set_blocking(frozen.stdin.fileno(), False)
        receiver._proc, receiver._stdin_fd = frozen, frozen.stdin.fileno()
        receiver.acking.set()
        orders = [(f"unit-{i}", EPOCH, list(range(1, 200)), []) for i in range(400)]
        assert receiver.forward_acks(orders) is False  # far more than the pipe holds
        assert frozen.wait(10) == -signal.SIGKILL
        assert not receiver.acking.is_set()
        assert receiver.forward_acks(orders[:1]) is False  # until a new child says it can
    finally:
        if frozen.poll() is None:
            frozen.kill()
        frozen.wait()


def test_without_the_setting_the_server_receives_events_itself(
    broker: LocalBroker,
    tmp_path: Path,
    key_file: Path,
    signing_key_file: Path,
    server_key: str,
    unit: Listener,
) -> None:
    settings = server_settings(broker, tmp_path, key_file, signing_key_file, ingest_process=False)
    with TestClient(create_app(settings)) as client:
        rt = runtime(client)
        assert rt.bridge.receiver is None
        wait_until(rt.bridge.receiving, what="the server subscribed")
        unit.publish(EVENT, event_payload("boitron-01", EPOCH, 1))
        wait_until(lambda: acked(unit, Verifier([server_key])) == {1}, what="the ack")
        assert rt.bridge.stats()["receiver"] is None
