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


def test_a_burst_waiting_on_the_socket_is_read_in_one_turn(broker: LocalBroker) -> None:
    """Messages that are there at once are read, acknowledged and handed on (``after_turn``)
    together, up to ``READS`` a turn, not in a turn each: the events receiver hands the
    server one frame a turn."""
    held = threading.Event()
    received: list[str] = []
    turns: list[int] = []  # how many messages had been read at the end of each turn
    subscribed = threading.Event()

    def on_message(client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        received.append(msg.topic)
        if msg.topic == "burst/0":
            held.wait(10)  # the loop's thread is busy while the others arrive

    client = broker.client()
    client.on_connect = lambda c, *args: c.subscribe("burst/#", qos=1)
    client.on_subscribe = lambda *args: subscribed.set()
    client.on_message = on_message
    loop = NetworkLoop(
        client,
        "test-burst",
        min_delay_s=0.1,
        max_delay_s=0.5,
        after_turn=lambda: turns.append(len(received)),
    )
    loop.idle_s = IDLE_S
    client.connect_async("127.0.0.1", broker.port, clean_start=True)
    loop.start()
    peer = Listener(broker, "barrier/#")
    try:
        assert subscribed.wait(10), "no SUBACK"
        peer.publish("burst/0", b"x")
        wait_until(lambda: received == ["burst/0"], what="the first message")
        for n in range(1, 40):
            peer.publish(f"burst/{n}", b"x")
        # The broker handles its clients' messages in order: once the peer has this one
        # back, the burst (as much as the broker's in-flight window of 20 allows) has been
        # written to the loop's socket.
        peer.publish("barrier/0", b"x")
        wait_until(lambda: peer.on("barrier/0"), what="the barrier")
        held.set()
        wait_until(lambda: len(received) == 40, what="every message of the burst")
    finally:
        held.set()
        peer.close()
        loop.stop()
    per_turn = [after - before for before, after in zip([0, *turns], turns, strict=False)]
    assert max(per_turn) >= NetworkLoop.READS - 1, per_turn


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


def _no_will_after_an_unclean_peer(broker: LocalBroker, watcher: Listener, will: str) -> None:
    """Close what is left of the stopped client's connection (as its process ending would),
    then end another client uncleanly: once its will is in, the stopped client's would be."""
    other = Looped(broker, will="wills/other")
    sock = other.client.socket()
    assert sock is not None
    sock.shutdown(socket.SHUT_RDWR)
    wait_until(lambda: watcher.on("wills/other"), what="the will of the unclean client")
    other.loop.stop()
    assert watcher.on(will) == [], "the broker published the stopped client's last will"


def _close_what_is_left(looped: Looped) -> None:
    sock = looped.client.socket()
    if sock is not None:
        sock.close()


def test_a_stop_the_loop_sees_at_once_still_writes_the_disconnect(broker: LocalBroker) -> None:
    """``stop()`` queues the DISCONNECT before the loop can see the stop: even when the loop
    sees it at once and ends, the DISCONNECT was written."""
    watcher = Listener(broker, "wills/#")
    try:
        peer = Looped(broker, will="wills/raced")
        loop = peer.loop
        original = peer.client.disconnect

        def disconnect_after_the_loop_had_its_chance(*args: Any, **kwargs: Any) -> Any:
            loop._wake()  # the loop turns: a stop already visible would end it now
            assert loop._thread is not None
            loop._thread.join(0.5)
            return original(*args, **kwargs)

        peer.client.disconnect = disconnect_after_the_loop_had_its_chance  # type: ignore[method-assign]
        loop.stop()
        assert not loop.alive()
        _close_what_is_left(peer)
        _no_will_after_an_unclean_peer(broker, watcher, "wills/raced")
    finally:
        watcher.close()


def test_a_disconnect_queued_after_the_loops_last_write_is_flushed(broker: LocalBroker) -> None:
    """The DISCONNECT queued just after the loop's turn wrote, and the stop seen before the
    next turn: the loop writes what is left as it ends."""
    watcher = Listener(broker, "wills/#")
    try:
        peer = Looped(broker, will="wills/flushed")
        held, release = threading.Event(), threading.Event()
        original = peer.client.loop_misc

        def loop_misc_held_once() -> Any:  # the end of a turn, after its write
            if not held.is_set():
                held.set()
                release.wait(10)
            return original()

        peer.client.loop_misc = loop_misc_held_once  # type: ignore[method-assign]
        peer.loop._wake()
        assert held.wait(10), "the loop did not turn"
        stopper = threading.Thread(target=peer.loop.stop)
        stopper.start()
        wait_until(lambda: peer.loop._stopping.is_set(), what="the stop")
        assert peer.client.want_write(), "the DISCONNECT is queued, not written yet"
        release.set()
        stopper.join(10)
        assert not peer.loop.alive()
        _close_what_is_left(peer)
        _no_will_after_an_unclean_peer(broker, watcher, "wills/flushed")
    finally:
        watcher.close()


def test_the_loop_does_not_reconnect_after_the_stops_disconnect(broker: LocalBroker) -> None:
    """The DISCONNECT written and the connection closed before the stop is visible: the loop
    does not take the closed connection for a lost one and open it again."""
    peer = Looped(broker)
    reconnected = threading.Event()
    first_on_connect = peer.client.on_connect

    def on_connect(*args: Any) -> None:
        first_on_connect(*args)
        reconnected.set()

    peer.client.on_connect = on_connect
    original = peer.client.disconnect

    def disconnect_then_linger(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        wait_until(lambda: peer.client.socket() is None, what="the DISCONNECT written")
        # Ten times the loop's wait before a new attempt (0.1 s), the stop not yet visible.
        reconnected.wait(1.0)
        return result

    peer.client.disconnect = disconnect_then_linger  # type: ignore[method-assign]
    peer.loop.stop()
    assert not reconnected.is_set(), "the loop connected again after stop() disconnected"
    assert peer.connects == 1
    assert not peer.loop.alive()
