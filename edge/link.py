"""The unit's MQTT link: connection, birth and will, subscriptions, raw publish.

Transport only. What to publish and what a message means is the agent's business; this
module hands incoming messages over through ``on_message(parsed, payload, retained)``
(called on paho's thread, so the callee must not block). ``retained`` is the MQTT retain
flag: a command delivered as a retained message is never obeyed.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt

from edge.config import ConfigError, EdgeConfig, MqttConfig
from protocol import topics
from protocol.messages import Status, encode
from protocol.mqtt import (
    describe_connect_error,
    describe_refusal,
    make_client,
    record_connect_errors,
)

log = logging.getLogger(__name__)

SESSION_EXPIRY_S = 24 * 3600

# QoS 1 messages handed to paho and not yet acknowledged by the broker, past which the
# publisher waits (``in_flight``). paho sends 20 at a time and queues the rest: a backlog
# handed over whole would hold a command's result or a status behind it, and be resent
# while it still waits there.
IN_FLIGHT_LIMIT = 60
# A message paho has not seen acknowledged in this long no longer counts as in flight.
IN_FLIGHT_FORGET_S = 120.0


def log_in(client: mqtt.Client, mq: MqttConfig) -> None:
    """Give ``client`` the unit's broker account and TLS settings (``[mqtt]``)."""
    if mq.username:
        password = None
        if mq.password_file is not None:
            try:
                password = mq.password_file.read_text().strip()
            except OSError as exc:
                raise ConfigError(
                    f"mqtt.password_file: cannot read {mq.password_file} ({exc.strerror})"
                ) from None
        client.username_pw_set(mq.username, password)
    if mq.tls:
        try:
            client.tls_set(
                ca_certs=str(mq.ca_file) if mq.ca_file else None,
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"mqtt.ca_file: cannot load {mq.ca_file} ({exc})") from None


class MqttLink:
    """One persistent MQTT v5 session for a unit, reconnecting by itself."""

    def __init__(
        self,
        config: EdgeConfig,
        *,
        on_message: Callable[[topics.ParsedTopic, bytes, bool], None],
        birth: Callable[[], Status],
        on_connected: Callable[[], None] = lambda: None,
    ) -> None:
        self.config = config
        self.connected = threading.Event()
        self._on_message_cb = on_message
        self._birth = birth
        self._on_connected_cb = on_connected
        self._client, self._connect_props = make_client(
            f"edge-{config.device_id}", session_expiry_s=SESSION_EXPIRY_S
        )
        c = self._client
        log_in(c, config.mqtt)
        self.error: str | None = "not connected yet"
        record_connect_errors(c, self._on_connect_error)
        c.will_set(
            topics.topic(topics.STATUS, config.device_id),
            encode(Status(device_id=config.device_id, state="offline")),
            qos=topics.STATUS.qos,
            retain=True,
        )
        c.reconnect_delay_set(min_delay=1, max_delay=30)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_publish = self._on_publish
        # QoS 1 messages paho holds, with when they were handed over (``in_flight``).
        self._unacked: deque[tuple[float, mqtt.MQTTMessageInfo]] = deque()
        self._unacked_lock = threading.Lock()
        self._acked_since_room = 0
        # Called on paho's thread when half the in-flight room has come free.
        self.on_room: Callable[[], None] = lambda: None

    def start(self) -> None:
        mq = self.config.mqtt
        self._client.connect_async(
            mq.host,
            mq.port,
            keepalive=mq.keepalive_s,
            clean_start=False,
            properties=self._connect_props,
        )
        self._client.loop_start()

    def stop(self) -> None:
        """Say goodbye (retained offline status) and close the session cleanly."""
        if self.connected.is_set():
            info = self._client.publish(
                topics.topic(topics.STATUS, self.config.device_id),
                encode(Status(device_id=self.config.device_id, state="offline")),
                qos=1,
                retain=True,
            )
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(timeout=2)
        self._client.disconnect()
        self._client.loop_stop()
        self.connected.clear()

    def publish(self, spec: topics.TopicSpec, payload: bytes) -> bool:
        """Queue a message on the unit's own subtree; False when the link is down."""
        if not self.connected.is_set():
            return False
        info = self._client.publish(
            topics.topic(spec, self.config.device_id), payload, qos=spec.qos, retain=spec.retain
        )
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            return False
        if spec.qos:
            with self._unacked_lock:
                self._unacked.append((time.monotonic(), info))
        return True

    def in_flight(self) -> int:
        """QoS 1 messages handed to paho that the broker has not acknowledged yet."""
        forget_before = time.monotonic() - IN_FLIGHT_FORGET_S
        with self._unacked_lock:
            self._unacked = deque(
                (at, info)
                for at, info in self._unacked
                if at >= forget_before and not _acknowledged(info)
            )
            return len(self._unacked)

    def subscribe(self, topic_name: str) -> None:
        """Subscribe now (if connected); ``on_connected`` is where to subscribe again."""
        if self.connected.is_set():
            self._client.subscribe(topic_name, qos=1)

    def unsubscribe(self, topic_name: str) -> None:
        if self.connected.is_set():
            self._client.unsubscribe(topic_name)

    def publish_status(self) -> None:
        self.publish(topics.STATUS, encode(self._birth()))

    # -- paho callbacks (paho's thread) -------------------------------------------------------

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        if reason.is_failure:
            self._set_error(describe_refusal(reason, "mqtt.username", "mqtt.password_file"))
            return
        self.error = None
        log.info("connected to %s:%s", self.config.mqtt.host, self.config.mqtt.port)
        # Subscribing on every connect is cheap and covers a broker that lost the session.
        client.subscribe(
            [(t, 1) for t in topics.device_subscriptions(self.config.device_id, self.config.centre)]
        )
        self.connected.set()
        self.publish_status()
        self._on_connected_cb()

    def _on_publish(
        self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, properties: Any
    ) -> None:
        # Counted, not looked up: paho's thread must not scan on every acknowledgement.
        self._acked_since_room += 1
        if self._acked_since_room >= IN_FLIGHT_LIMIT // 2:
            self._acked_since_room = 0
            self.on_room()

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        if self.connected.is_set():
            log.warning("disconnected from broker: %s", reason)
            self.error = f"lost the broker: {reason}"
        self.connected.clear()

    def _on_connect_error(self, exc: OSError) -> None:
        mq = self.config.mqtt
        self._set_error(describe_connect_error(exc, mq.host, mq.port))

    def _set_error(self, message: str) -> None:
        """Log a broker problem once per change, not at every retry."""
        if message != self.error:
            log.warning("MQTT: %s", message)
        self.error = message

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            parsed = topics.parse(msg.topic)
        except topics.TopicError as exc:
            log.warning("ignored message: %s", exc)
            return
        try:
            self._on_message_cb(parsed, msg.payload, bool(msg.retain))
        except Exception:  # a handler bug must not kill paho's network thread
            log.exception("handler failed for %s", msg.topic)


def _acknowledged(info: mqtt.MQTTMessageInfo) -> bool:
    try:
        return info.is_published()
    except (RuntimeError, ValueError):  # paho gave up on it: not in flight either
        return True
