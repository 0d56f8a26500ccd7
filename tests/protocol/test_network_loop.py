"""The server's MQTT network loop (``protocol.mqtt.NetworkLoop``) against a real mosquitto:
what it queues itself and what other threads queue goes out, it comes back after the broker
does, and a stop is a clean disconnect."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from protocol.mqtt import NetworkLoop
from server.broker import LocalBroker
from tests.conftest import wait_until
from tests.server.mqtt.support import Listener

# Longer than any wait below: a message that went out did so because the loop was woken
# or wrote it in its own turn, never because the idle wait ran out.
IDLE_S = 60.0


class Looped:
    """A paho client on a ``NetworkLoop``: answers every ``ping/…`` with ``pong/…``."""

    def __init__(self, broker: LocalBroker, *, will: str | None = None) -> None:
        self.client = broker.client()
        self.connects = 0
        self.received: list[str] = []
        self.fail_next = False
        if will:
            self.client.will_set(will, b"gone", qos=1)
        self.subscribed = threading.Event()  # set at each SUBACK: pings are heard
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *args: self.subscribed.set()
        self.client.on_message = self._on_message
        self.loop = NetworkLoop(self.client, "test-network", min_delay_s=0.1, max_delay_s=0.5)
        self.loop.idle_s = IDLE_S
        self.client.connect_async("127.0.0.1", broker.port, clean_start=True)
        self.loop.start()
        assert self.subscribed.wait(10), "no SUBACK after the first connection"

    def _on_connect(self, client: mqtt.Client, *args: Any) -> None:
        self.subscribed.clear()
        client.subscribe("ping/#", qos=1)
        self.connects += 1

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("a handler bug")
        self.received.append(msg.topic)
        # Queued on the loop's own thread: it must go out without a wake-up.
        client.publish("pong/" + msg.topic.split("/", 1)[1], msg.payload, qos=1)


@pytest.fixture
def looped(broker: LocalBroker) -> Iterator[Looped]:
    peer = Looped(broker)
    yield peer
    peer.loop.stop()


def test_a_message_is_answered_from_the_loops_own_thread_and_acknowledged(
    broker: LocalBroker, looped: Looped
) -> None:
    peer = Listener(broker, "pong/#")
    try:
        for n in range(2, 40):
            peer.publish(f"ping/{n}", b"x")  # QoS 1: returns once the broker has it
        wait_until(lambda: len(peer.on("pong/39")) == 1, what="the answer to the last ping")
        answered = {m.topic for m in peer.messages}
        assert {f"pong/{n}" for n in range(2, 40)} <= answered
    finally:
        peer.close()


def test_a_publish_from_another_thread_wakes_the_loop(broker: LocalBroker, looped: Looped) -> None:
    peer = Listener(broker, "news/#")
    try:
        for n in range(20):
            info = looped.client.publish(f"news/{n}", b"x", qos=1)
            info.wait_for_publish(timeout=10)  # the broker's PUBACK came back
            assert info.is_published(), f"news/{n} was not sent"
        wait_until(lambda: len(peer.messages) == 20, what="every message from the other thread")
        done = threading.Event()
        threading.Thread(
            target=lambda: (looped.client.publish("news/last", b"x", qos=0), done.set())
        ).start()
        assert done.wait(5)
        wait_until(lambda: peer.on("news/last"), what="a QoS 0 publish from a short thread")
    finally:
        peer.close()


def test_the_loop_comes_back_after_the_broker_and_survives_a_callback_error(
    broker: LocalBroker, looped: Looped
) -> None:
    broker.restart()
    wait_until(
        lambda: looped.connects >= 2 and looped.subscribed.is_set(),
        timeout=20,
        what="the reconnection and its SUBACK",
    )
    peer = Listener(broker, "pong/#")
    try:
        looped.fail_next = True
        peer.publish("ping/a", b"x")  # the handler raises on this one
        peer.publish("ping/b", b"x")
        wait_until(lambda: peer.on("pong/b"), what="an answer after the callback's error")
        assert looped.loop.alive()
        # The message whose handler failed was handled again, not lost, and before the next.
        assert looped.received[-2:] == ["ping/a", "ping/b"]
    finally:
        peer.close()


def test_stop_disconnects_cleanly_so_the_last_will_is_not_sent(broker: LocalBroker) -> None:
    watcher = Listener(broker, "wills/#")
    try:
        peer = Looped(broker, will="wills/looped")
        peer.loop.stop()
        assert not peer.loop.alive()
        # An unclean end of another client publishes its will: the watcher would see it.
        other = Looped(broker, will="wills/other")
        sock = other.client.socket()
        assert sock is not None
        sock.shutdown(socket.SHUT_RDWR)  # the connection drops without a DISCONNECT
        wait_until(lambda: watcher.on("wills/other"), what="the will of the unclean client")
        other.loop.stop()
        assert watcher.on("wills/looped") == []
    finally:
        watcher.close()
