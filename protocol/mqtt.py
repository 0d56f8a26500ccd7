"""paho-mqtt settings both sides must share: MQTT v5, callback API 2, no Nagle delay.

Neither mosquitto nor paho sets TCP_NODELAY by default; Nagle's algorithm meeting delayed
ACKs turned a 0.4 ms loopback round trip into 88 ms. Every client we ship sets it.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

log = logging.getLogger(__name__)


def make_client(client_id: str, *, session_expiry_s: int) -> tuple[mqtt.Client, Properties]:
    """A v5 client with a persistent session; returns it with its CONNECT properties."""
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5,
    )
    client.on_socket_open = _set_nodelay
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = session_expiry_s
    return client, props


def _set_nodelay(client: mqtt.Client, userdata: Any, sock: Any) -> None:
    # A websocket or TLS wrapper may not have the option.
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def describe_connect_error(exc: BaseException, host: str, port: int) -> str:
    """One sentence for a connection that did not open (socket or TLS), naming the fix."""
    where = f"{host}:{port}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (
            f"TLS to {where} refused: the broker's certificate did not verify "
            f"({exc.verify_message}): check the CA file and the host name"
        )
    if isinstance(exc, ssl.SSLError):
        return f"TLS to {where} failed ({exc.reason or exc}): is the port a TLS listener?"
    if isinstance(exc, ConnectionRefusedError):
        return f"cannot reach {where}: connection refused"
    if isinstance(exc, TimeoutError | socket.timeout):
        return f"cannot reach {where}: timed out"
    if isinstance(exc, socket.gaierror):
        return f"cannot reach {where}: unknown host ({exc.strerror})"
    if isinstance(exc, OSError) and exc.strerror:
        return f"cannot reach {where}: {exc.strerror.lower()}"
    return f"cannot reach {where}: {exc}"


def refused_account(reason: Any) -> bool:
    """Whether a CONNACK refused the account: bad user name or password, or not authorised
    (MQTT v5 codes 134 and 135, v3 codes 4 and 5)."""
    return getattr(reason, "value", reason) in (134, 135, 4, 5)


def describe_refusal(reason: Any, user_setting: str, password_setting: str) -> str:
    """One sentence for a CONNACK that refused us, naming the settings to check."""
    if refused_account(reason):
        return (
            f"not authorised ({reason}): check {user_setting} / {password_setting}"
            " and that the account exists on the broker"
        )
    return f"broker refused the connection: {reason}"


def record_connect_errors(client: mqtt.Client, on_error: Any) -> None:
    """Call ``on_error(exc)`` with the exception of every failed (re)connection attempt.

    paho's loop swallows it (it calls ``on_connect_fail`` without it): wrap ``reconnect``.
    """
    original = client.reconnect

    def reconnect() -> Any:
        try:
            return original()
        except OSError as exc:
            on_error(exc)
            raise

    client.reconnect = reconnect  # type: ignore[method-assign]


class NetworkLoop:
    """paho's network loop on a thread of ours, through paho's external-loop API.

    ``loop_start`` wakes its ``select()`` with a byte on a socket pair for every packet
    queued, from any thread, its own included: each PUBACK for a message received costs a
    send and a receive on that pair before the PUBACK itself goes out. Here the loop writes
    what it queued itself in the same turn, without waking anything; a publish from another
    thread wakes it once per burst (paho calls ``on_socket_register_write`` when its queue
    stops being empty). All socket I/O, TLS included, stays on the loop's thread.

    Call ``start()`` after ``connect_async()``. The first attempt does not wait; after a
    failed attempt the next waits ``min_delay_s``, doubling up to ``max_delay_s``; after a
    lost connection, ``min_delay_s``. ``stop()`` disconnects: the DISCONNECT is written
    before the thread ends. ``after_turn``, when given, is called on the loop's thread at
    the end of every turn (what the turn's callbacks gathered can leave in one piece).
    """

    IDLE_S = 1.0  # the longest wait between two checks of the keepalive
    # Packets read in one turn while more is there at once (bytes TLS decrypted, or the
    # socket readable): a burst is handled, acknowledged and handed on (``after_turn``)
    # in one piece, not one turn a packet.
    READS = 16

    def __init__(
        self,
        client: mqtt.Client,
        name: str,
        *,
        min_delay_s: float,
        max_delay_s: float,
        after_turn: Callable[[], None] | None = None,
    ) -> None:
        self._client = client
        self._after_turn = after_turn
        self._name = name
        self._min_delay_s = min_delay_s
        self._max_delay_s = max_delay_s
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._poller = select.poll()
        self._poller.register(self._wake_r, select.POLLIN)
        self._polled: tuple[int, int] | None = None  # the socket's number and its events
        self._stopping = threading.Event()
        self._leaving = False  # set by ``stop()`` before it disconnects
        self._thread: threading.Thread | None = None
        self.idle_s = self.IDLE_S
        client.on_socket_register_write = self._register_write

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Disconnect (the DISCONNECT is written first) and end the thread."""
        self._leaving = True  # a connection paho closes from now on is not opened again
        # Queued before the loop can see the stop: its current turn writes the DISCONNECT,
        # or ``_flush`` does once the loop has ended. Queued after, it would not be written
        # and the broker would publish the last will when the socket closed.
        self._client.disconnect()
        self._stopping.set()
        self._wake()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                log.warning("%s did not stop within %.0f s", self._name, timeout)
                return
        self._wake_r.close()
        self._wake_w.close()

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _register_write(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        # The loop's own packets go out in its current turn: only another thread wakes it.
        if threading.current_thread() is not self._thread:
            self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # full (a wake-up is waiting already) or closed
            self._wake_w.send(b"\0")

    def _run(self) -> None:
        delay_s = 0.0  # before the next attempt
        failing_s = 0.0  # the wait after a callback's error, doubling while they go on
        while not self._stopping.is_set():
            sock = self._client.socket()
            if sock is None:
                if self._leaving or self._stopping.wait(delay_s):
                    break
                delay_s = min(max(delay_s * 2, self._min_delay_s), self._max_delay_s)
                with contextlib.suppress(OSError):  # reported by ``record_connect_errors``
                    self._client.reconnect()
                continue
            if self._client.is_connected():
                delay_s = self._min_delay_s
            try:
                self._turn(sock)
                if self._after_turn is not None:
                    self._after_turn()
                failing_s = 0.0
            except Exception:
                # A callback's error: paho re-raises it, and keeps the message it was
                # handling for the next turn (a QoS 1 message is not acknowledged).
                failing_s = min(max(failing_s * 2, 0.1), 5.0)
                log.exception("%s: unexpected error; again in %.1f s", self._name, failing_s)
                self._stopping.wait(failing_s)
        self._flush()

    def _turn(self, sock: Any) -> None:
        """Wait for the socket or a wake-up; read, write, check the keepalive."""
        client = self._client
        pending = getattr(sock, "pending", None)  # TLS: bytes decrypted but not yet read
        fd = sock.fileno()
        if fd < 0:  # closed under paho: reading says so, and paho drops the connection
            client.loop_read()
            return
        polled = (fd, select.POLLIN | (select.POLLOUT if client.want_write() else 0))
        if self._polled != polled:
            if self._polled is not None and self._polled[0] != polled[0]:
                with contextlib.suppress(KeyError):
                    self._poller.unregister(self._polled[0])  # a closed socket's number
            self._poller.register(*polled)  # registers, or modifies
            self._polled = polled
        wait_ms = 0 if pending is not None and pending() else int(self.idle_s * 1000)
        readable = False
        for fd, _ in self._poller.poll(wait_ms):
            if fd == self._wake_r.fileno():
                with contextlib.suppress(BlockingIOError):
                    self._wake_r.recv(4096)
            else:
                readable = True
        if readable or wait_ms == 0:
            for _ in range(self.READS):
                if client.loop_read() != mqtt.MQTT_ERR_SUCCESS:
                    return  # the connection is gone: paho has closed it and said so
                if not ((pending is not None and pending()) or self._readable(fd)):
                    break
        if client.want_write() and client.loop_write() != mqtt.MQTT_ERR_SUCCESS:
            return
        client.loop_misc()

    def _readable(self, fd: int) -> bool:
        """Whether the socket has something to read now (or was closed: reading says so),
        asked of the turn's poller without waiting; its being writable does not count."""
        return any(f == fd and events & ~select.POLLOUT for f, events in self._poller.poll(0))

    def _flush(self) -> None:
        """At stop: write what is still queued while the socket lasts (a second at most)."""
        deadline = time.monotonic() + 1.0
        while self._client.socket() is not None and self._client.want_write():
            if time.monotonic() > deadline or self._client.loop_write() != mqtt.MQTT_ERR_SUCCESS:
                return
