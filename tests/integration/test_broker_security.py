"""The production broker config on a real mosquitto, with generated certificates and the
ACL generated from the registry: who may connect, publish and subscribe to what."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from fastapi.testclient import TestClient

from edge.agent import EdgeAgent
from protocol import topics
from protocol.mqtt import make_client
from server.broker import LocalBroker
from server.broker.files import write_access_files
from server.cli import main as server_cli
from server.domain import broker_access
from server.store import Store
from tests.conftest import wait_until

NOT_AUTHORISED = 135
BAD_CREDENTIALS = 134
SUCCESS = (0, 16)  # PUBACK: success, or success with no subscriber
A, B = "boitron-01", "boitron-02"


class Probe:
    """A paho v5 client that records its CONNACK, PUBACK and SUBACK reason codes."""

    def __init__(self, broker: LocalBroker, client: mqtt.Client) -> None:
        self.broker = broker
        self.client = client
        self.connack: int | None = None
        self.pubacks: dict[int, int] = {}
        self.subacks: dict[int, list[int]] = {}
        self.disconnected = threading.Event()
        self.received: list[str] = []
        self._connack = threading.Event()
        client.on_message = lambda c, u, msg: self.received.append(msg.topic)
        client.on_connect = self._on_connect
        client.on_publish = self._on_publish
        client.on_subscribe = self._on_subscribe
        client.on_disconnect = lambda *a: self.disconnected.set()

    def _on_connect(self, c: Any, u: Any, flags: Any, reason: Any, props: Any) -> None:
        self.connack = reason.value
        self._connack.set()

    def _on_publish(self, c: Any, u: Any, mid: int, reason: Any, props: Any) -> None:
        self.pubacks[mid] = reason.value

    def _on_subscribe(self, c: Any, u: Any, mid: int, reasons: Any, props: Any) -> None:
        self.subacks[mid] = [r.value for r in reasons]

    def connect(self) -> int:
        self.client.connect("127.0.0.1", self.broker.port, clean_start=True)
        self.client.loop_start()
        assert self._connack.wait(5), "no CONNACK"
        assert self.connack is not None
        return self.connack

    def publish(self, topic: str, payload: bytes = b"x") -> int:
        info = self.client.publish(topic, payload, qos=1)
        wait_until(lambda: info.mid in self.pubacks, timeout=5, what=f"PUBACK for {topic}")
        return self.pubacks[info.mid]

    def subscribe(self, topic: str) -> int:
        _, mid = self.client.subscribe(topic, qos=1)
        wait_until(lambda: mid in self.subacks, timeout=5, what=f"SUBACK for {topic}")
        return self.subacks[mid][0]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def probes(broker: LocalBroker) -> Iterator[Callable[..., Probe]]:
    made: list[Probe] = []

    def make(username: str | None, *, client_id: str = "", password: str | None = None) -> Probe:
        client, _ = make_client(client_id or f"probe-{len(made)}", session_expiry_s=0)
        if username is not None:
            client.username_pw_set(username, password or broker.passwords[username])
        client.tls_set(ca_certs=str(broker.ca_file))
        probe = Probe(broker, client)
        made.append(probe)
        return probe

    yield make
    for probe in made:
        probe.close()


def test_an_anonymous_client_is_refused(probes: Callable[..., Probe]) -> None:
    assert probes(None).connect() == NOT_AUTHORISED


def test_a_wrong_password_is_refused(probes: Callable[..., Probe]) -> None:
    assert probes(A, password="not-the-password").connect() in (BAD_CREDENTIALS, NOT_AUTHORISED)


def test_plain_text_is_refused_on_the_tls_listener(broker: LocalBroker) -> None:
    # A valid MQTT v5 CONNECT for the server's own account, sent without TLS.
    user, password = broker.server_username.encode(), broker.passwords["telecentre-server"]

    def field(b: bytes) -> bytes:
        return len(b).to_bytes(2, "big") + b

    body = (
        field(b"MQTT")
        + bytes([5, 0xC2])  # v5; user name, password, clean start
        + (30).to_bytes(2, "big")
        + b"\x00"  # no properties
        + field(b"plain")
        + field(user)
        + field(password.encode())
    )
    packet = bytes([0x10, len(body)]) + body
    with socket.create_connection(("127.0.0.1", broker.port), timeout=5) as sock:
        sock.sendall(packet)
        try:
            answer = sock.recv(4)
        except ConnectionResetError:
            answer = b""
    assert not answer.startswith(b"\x20")  # never a CONNACK: the broker closed the socket


def test_a_unit_cannot_publish_or_subscribe_outside_its_own_leaves(
    server: TestClient, probes: Callable[..., Probe]
) -> None:
    bridge = server.app.state.runtime.bridge  # type: ignore[attr-defined]
    unit_a = probes(A)
    assert unit_a.connect() == 0
    before = bridge.received

    # Unit B's edge -> server leaves: the server must never see these as B's.
    for spec in (topics.EVENT, topics.STATUS, topics.ACCESS_REQUEST, topics.COMMAND_RESULT):
        assert unit_a.publish(topics.topic(spec, B)) == NOT_AUTHORISED, spec.leaf
    # Its own server -> edge leaves and the centre's list: only the server writes them.
    for spec in (topics.ACK, topics.ACCESS_RESPONSE, topics.COMMAND):
        assert unit_a.publish(topics.topic(spec, A)) == NOT_AUTHORISED, spec.leaf
    assert unit_a.publish(topics.topic(topics.LIST_DELTA, "boitron")) == NOT_AUTHORISED
    assert unit_a.publish(topics.topic(topics.SERVER_STATUS)) == NOT_AUTHORISED
    # What it may do is allowed.
    assert unit_a.subscribe(topics.topic(topics.COMMAND, A)) == 0x01  # granted QoS 1
    assert unit_a.subscribe(topics.segment_subscription("boitron")) == 0x01
    assert unit_a.publish(topics.topic(topics.EVENT, A), b"not msgpack") in SUCCESS
    assert unit_a.publish(topics.topic(topics.COMMAND_RESULT, A), b"not msgpack") in SUCCESS

    # Only the last two, allowed publishes reached the server (rejected there as malformed).
    # The broker delivers one client's messages to a subscriber in order: had any refused one
    # gone through, it would have arrived before the allowed one of the same connection
    # (events to the server's events receiver, the other leaves to the server's own).
    wait_until(lambda: bridge.received >= before + 2, what="the allowed publishes")
    assert bridge.received == before + 2
    assert bridge.rejected.get("malformed") == 2


def test_a_unit_reads_nothing_of_another_units_or_centres_topics(
    broker: LocalBroker, probes: Callable[..., Probe]
) -> None:
    # mosquitto 2.0's acl_file does not refuse a SUBSCRIBE (the SUBACK grants it): the
    # read ACL is applied to every message delivered instead. Checked on the messages.
    unit_a = probes(A)
    assert unit_a.connect() == 0
    others = [
        topics.topic(topics.COMMAND, B),
        topics.topic(topics.ACK, B),
        topics.topic(topics.LIST_HEAD, "belleme"),
        topics.topic(topics.EVENT, B),
    ]
    for name in [*others, f"{topics.BASE}/#", topics.topic(topics.COMMAND, A)]:
        unit_a.subscribe(name)
    sender = probes(broker.observer())
    assert sender.connect() == 0
    for name in others:
        assert sender.publish(name) in SUCCESS
    assert sender.publish(topics.topic(topics.COMMAND, A)) == 0  # A's own: delivered
    # Published last by the same sender: anything delivered before it is already here.
    wait_until(lambda: unit_a.received, what="A's own command")
    assert set(unit_a.received) == {topics.topic(topics.COMMAND, A)}


def test_a_unit_cannot_take_over_another_units_session(probes: Callable[..., Probe]) -> None:
    unit_b = probes(B, client_id=B)
    assert unit_b.connect() == 0
    # Unit A connects with B's client id: the broker uses A's user name as its client id.
    unit_a = probes(A, client_id=B)
    assert unit_a.connect() == 0
    # A takeover closes B's connection before A gets its CONNACK; a round trip on B's
    # connection afterwards shows it is still open.
    assert unit_b.subscribe(topics.topic(topics.COMMAND, B)) == 0x01  # B still works
    assert not unit_b.disconnected.is_set(), "B was thrown off by A"
    # A kept its own identity: B's leaves stay closed to it.
    assert unit_a.publish(topics.topic(topics.EVENT, B)) == NOT_AUTHORISED
    assert unit_a.publish(topics.topic(topics.EVENT, A), b"x") in SUCCESS


def test_the_server_connects_over_tls_and_a_badge_reaches_the_store(
    server: TestClient, make_unit: Callable[..., EdgeAgent]
) -> None:
    runtime = server.app.state.runtime  # type: ignore[attr-defined]
    assert runtime.settings.mqtt_tls and runtime.settings.mqtt_username == "telecentre-server"
    health = server.get("/healthz").json()
    assert health["mqtt"]["connected"] is True and health["mqtt"]["error"] is None
    unit = make_unit()
    wait_until(lambda: unit.access.version is not None, what="the first access list")
    event = unit.badge("entree", bytes.fromhex("deadbeef"))
    assert event.granted is False
    wait_until(lambda: runtime.store.event_count() == 1, what="the event stored")
    (card,) = wait_until(lambda: runtime.store.unknown_cards("boitron"), what="unknown card")
    assert card["device_id"] == "boitron-01"


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalBroker]:
    """A broker whose password file and ACL only `telecentre-server device` writes, with the
    TELECENTRE_* settings of a site pointing at it."""
    broker = LocalBroker(workdir=tmp_path / "broker", observers=0, manage_files=False)
    paths = broker.paths()
    env = {
        "DATA_DIR": tmp_path / "data",
        "BROKER_PASSWORD_FILE": paths.password_file,
        "BROKER_ACL_FILE": paths.acl_file,
        "BROKER_PID_FILE": paths.pid_file,
        **{k.upper(): v for k, v in broker.server_settings().items()},
    }
    for name, value in env.items():
        monkeypatch.setenv(f"TELECENTRE_{name}", str(value))
    store = Store(tmp_path / "data" / "telecentre.db")
    store.create_centre("boitron", "Boitron")
    store.close()
    with broker:
        yield broker


def test_device_add_lets_a_unit_in_and_device_revoke_shuts_it_out(
    site: LocalBroker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    creds_file = tmp_path / "boitron-07.json"
    assert server_cli(["device", "add", "boitron-07", "--centre", "boitron",
                       "--credentials-file", str(creds_file)]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "reloaded" in out and str(creds_file) in out
    assert creds_file.stat().st_mode & 0o777 == 0o600
    creds = json.loads(creds_file.read_text())
    assert creds["mqtt_password"] not in out  # written, not printed

    def connect() -> Probe:
        client, _ = make_client("edge-boitron-07", session_expiry_s=0)
        client.username_pw_set("boitron-07", creds["mqtt_password"])
        client.tls_set(ca_certs=str(site.ca_file))
        return Probe(site, client)

    unit = connect()
    assert unit.connect() == 0
    assert unit.publish(topics.topic(topics.EVENT, "boitron-07"), b"x") in SUCCESS
    assert unit.publish(topics.topic(topics.EVENT, "boitron-01")) == NOT_AUTHORISED

    assert server_cli(["device", "revoke", "boitron-07"]) == 0
    assert "broker account removed" in capsys.readouterr().out
    # mosquitto re-checks connected clients on reload: the revoked unit is thrown off...
    assert unit.disconnected.wait(5), "the revoked unit stayed connected"
    unit.close()
    # ...and cannot come back.
    again = connect()
    assert again.connect() in (BAD_CREDENTIALS, NOT_AUTHORISED)
    again.close()

    assert server_cli(["device", "list"]) == 0
    assert "boitron-07" in capsys.readouterr().out


def test_device_add_names_an_unknown_centre(
    site: LocalBroker, capsys: pytest.CaptureFixture[str]
) -> None:
    assert server_cli(["device", "add", "nowhere-01", "--centre", "nowhere"]) == 1
    err = capsys.readouterr().err
    assert "no centre 'nowhere'" in err and "boitron" in err


def test_worker_add_lets_another_server_worker_in_and_the_units_files_keep_it(
    site: LocalBroker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name, password_file = "telecentre-server-2", tmp_path / "worker-2.password"
    assert server_cli(["worker", "add", name, "--password-file", str(password_file)]) == 0
    out = capsys.readouterr().out
    assert "reloaded" in out and f"TELECENTRE_MQTT_USERNAME={name}" in out
    assert password_file.stat().st_mode & 0o777 == 0o600
    password = password_file.read_text().strip()
    assert password not in out  # written, not printed

    def connect(username: str, secret: str) -> Probe:
        client, _ = make_client(username, session_expiry_s=0)
        client.username_pw_set(username, secret)
        client.tls_set(ca_certs=str(site.ca_file))
        return Probe(site, client)

    worker = connect(name, password)
    assert worker.connect() == 0
    # A server's rights: the units' events through a share group, the server -> unit leaves.
    assert worker.subscribe(f"$share/workers/{topics.subscription(topics.EVENT)}") == 0x01
    assert worker.publish(topics.topic(topics.ACK, "boitron-01")) in SUCCESS
    worker.close()

    # A unit added later writes the files again: the worker's account is still in them.
    unit_file = tmp_path / "boitron-07.json"
    assert server_cli(["device", "add", "boitron-07", "--centre", "boitron",
                       "--credentials-file", str(unit_file)]) == 0  # fmt: skip
    unit = connect("boitron-07", json.loads(unit_file.read_text())["mqtt_password"])
    assert unit.connect() == 0  # the reload is done: the unit's account is new in it
    unit.close()
    again = connect(name, password)
    assert again.connect() == 0
    again.close()

    # Added again: a new password, and the old one is refused once the broker has reloaded.
    assert server_cli(["worker", "add", name, "--password-file", str(password_file)]) == 0
    assert "the old one no longer works" in capsys.readouterr().out
    renewed = password_file.read_text().strip()
    assert renewed != password
    again = connect(name, renewed)
    assert again.connect() == 0  # once the new password works, the reload is done
    stale = connect(name, password)
    assert stale.connect() in (BAD_CREDENTIALS, NOT_AUTHORISED)
    stale.close()

    # Neither name can be taken by the other kind of account.
    assert server_cli(["device", "add", name, "--centre", "boitron"]) == 1
    assert "server's broker account" in capsys.readouterr().err
    other_file = tmp_path / "other.password"
    assert server_cli(["worker", "add", "boitron-07", "--password-file", str(other_file)]) == 1
    assert "unit's id" in capsys.readouterr().err
    assert not other_file.exists(), "a password was written for an account refused"
    assert server_cli(["worker", "list"]) == 0
    assert name in capsys.readouterr().out

    assert server_cli(["worker", "remove", name]) == 0
    assert "broker account removed" in capsys.readouterr().out
    assert again.disconnected.wait(5), "the removed worker stayed connected"
    again.close()
    gone = connect(name, renewed)
    assert gone.connect() in (BAD_CREDENTIALS, NOT_AUTHORISED)
    gone.close()
    assert server_cli(["worker", "remove", name]) == 1
    assert f"no server worker account {name!r}" in capsys.readouterr().err


def test_broker_sync_gives_an_older_broker_the_events_receivers_account(
    site: LocalBroker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    receiver_name = broker_access.ingest_username(site.server_username)
    paths = site.paths()
    # Files written before the receiver existed: its account is not in them.
    older = [g for g in site.grants() if g.username != receiver_name]
    write_access_files(older, paths.password_file, paths.acl_file)
    site.reload()
    password = site.passwords[site.server_username]  # the receiver's is the server's

    def connect() -> Probe:
        client, _ = make_client(receiver_name, session_expiry_s=0)
        client.username_pw_set(receiver_name, password)
        client.tls_set(ca_certs=str(site.ca_file))
        return Probe(site, client)

    before = connect()
    assert before.connect() in (BAD_CREDENTIALS, NOT_AUTHORISED)
    before.close()

    assert server_cli(["broker", "sync"]) == 0
    out = capsys.readouterr().out
    assert "reloaded" in out and receiver_name in out
    receiver = connect()
    assert receiver.connect() == 0
    # The units' events to read and their acks to write, nothing else.
    assert receiver.subscribe(topics.subscription(topics.EVENT)) == 0x01
    assert receiver.publish(topics.topic(topics.ACK, "boitron-01")) in SUCCESS
    for spec in (topics.COMMAND, topics.ACCESS_RESPONSE, topics.EVENT):
        assert receiver.publish(topics.topic(spec, "boitron-01")) == NOT_AUTHORISED, spec
    assert receiver.publish(topics.topic(topics.LIST_HEAD, "boitron")) == NOT_AUTHORISED
    receiver.close()

    # A worker cannot take a name of that form.
    password_file = tmp_path / "w.password"
    assert server_cli(["worker", "add", "w.ingest", "--password-file", str(password_file)]) == 1
    assert "'.ingest'" in capsys.readouterr().err
    assert not password_file.exists()
