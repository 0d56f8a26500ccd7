"""The server's MQTT transport: connect, subscribe, publish, hand each message over.

What a message means lives in ``server.mqtt.handlers``; the bridge only routes it through
the dispatch table. A payload that breaks the contract is logged with its reason and
counted, never raised, so one bad unit cannot stop the others.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from typing import Any

import paho.mqtt.client as mqtt

from protocol import topics
from protocol.messages import ProtocolError
from protocol.mqtt import make_client
from protocol.signing import Signer
from server.mqtt.handlers import Handlers
from server.mqtt.lists import AccessListPublisher
from server.settings import Settings
from server.store import Store

log = logging.getLogger(__name__)

SESSION_EXPIRY_S = 7 * 24 * 3600


class Bridge:
    """The server's one MQTT client, its access-list publisher and its message handlers."""

    def __init__(self, settings: Settings, store: Store, signer: Signer) -> None:
        self.settings = settings
        self.signer = signer
        self.store = store
        self.connected = threading.Event()
        self.received = 0
        self.rejected: Counter[str] = Counter()
        self.lists = AccessListPublisher(store, self._publish_list)
        self.handlers = Handlers(store, self.publish, self.lists)
        self._client, self._props = make_client(
            settings.mqtt_client_id, session_expiry_s=SESSION_EXPIRY_S
        )
        c = self._client
        if settings.mqtt_username:
            password = None
            if settings.mqtt_password_file:
                password = settings.mqtt_password_file.read_text().strip()
            c.username_pw_set(settings.mqtt_username, password)
        c.reconnect_delay_set(min_delay=1, max_delay=15)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        self._dispatch = self.handlers.table()

    @property
    def acks_sent(self) -> int:
        return self.handlers.acker.sent

    def start(self) -> None:
        self.handlers.acker.start()
        self.lists.start()
        self._client.connect_async(
            self.settings.mqtt_host,
            self.settings.mqtt_port,
            keepalive=30,
            clean_start=False,
            properties=self._props,
        )
        self._client.loop_start()

    def stop(self) -> None:
        self.lists.stop()
        self.handlers.acker.stop()
        self._client.disconnect()
        self._client.loop_stop()

    def stats(self) -> dict[str, Any]:
        return {
            "connected": self.connected.is_set(),
            "received": self.received,
            "rejected": sum(self.rejected.values()),
            "rejected_by_reason": dict(self.rejected),
            "acks_sent": self.acks_sent,
        }

    def publish(self, spec: topics.TopicSpec, device_id: str, payload: bytes) -> bool:
        """Send to a unit's topic; False when the broker is away (nothing is queued)."""
        if not self.connected.is_set():
            return False
        info = self._client.publish(
            topics.topic(spec, device_id), payload, qos=spec.qos, retain=spec.retain
        )
        return info.rc == mqtt.MQTT_ERR_SUCCESS

    def _publish_list(self, device_id: str, payload: bytes) -> bool:
        return self.publish(topics.ACCESS_LIST, device_id, payload)

    # -- paho callbacks --------------------------------------------------------------------------

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        if reason.is_failure:
            log.error("broker refused the server: %s", reason)
            return
        client.subscribe([(topics.subscription(spec), 1) for spec in self._dispatch])
        self.connected.set()
        log.info("bridge connected to %s:%s", self.settings.mqtt_host, self.settings.mqtt_port)
        # The broker may have restarted without its retained messages.
        self.lists.invalidate()

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        if self.connected.is_set():
            log.warning("bridge lost the broker: %s", reason)
        self.connected.clear()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self.received += 1
        try:
            parsed = topics.parse(msg.topic)
            handler = self._dispatch.get(parsed.spec)
            if handler is None:
                raise ProtocolError(f"topic {msg.topic!r} is not one the server reads")
            handler(parsed.device_id, msg.payload)
        except (ProtocolError, topics.TopicError) as exc:
            self._reject(msg.topic, str(exc))
        except Exception:  # a bug in a handler must not stop the bridge
            log.exception("failed to handle a message on %s", msg.topic)
            self.rejected["internal error"] += 1

    def _reject(self, topic_name: str, reason: str) -> None:
        field_name = reason.split(":", 1)[0]
        self.rejected[field_name] += 1
        log.warning("rejected message on %s: %s", topic_name, reason)
