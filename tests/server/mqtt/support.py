"""Plain MQTT clients for the server's MQTT tests: a listener and a rogue publisher."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import paho.mqtt.client as mqtt

from protocol.messages import Event, encode
from server.broker import LocalBroker


class Listener:
    """A v5 client subscribed to ``topics`` (SUBACK awaited), collecting what arrives."""

    def __init__(self, broker: LocalBroker, *topics: str) -> None:
        self.messages: list[mqtt.MQTTMessage] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = broker.client()
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *args: self._subscribed.set()
        ready = threading.Event()
        self.client.on_connect = lambda *args: ready.set()
        self.client.connect("127.0.0.1", broker.port, clean_start=True)
        self.client.loop_start()
        assert ready.wait(5), "the test client could not connect"
        if topics:
            self.client.subscribe([(t, 1) for t in topics])
            assert self._subscribed.wait(5), "no SUBACK"

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append(msg)

    def on(self, topic: str) -> list[mqtt.MQTTMessage]:
        with self._lock:
            return [m for m in self.messages if m.topic == topic]

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def event(device_id: str, epoch: str, seq: int, **fields: Any) -> Event:
    values: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "device_id": device_id,
        "epoch": epoch,
        "seq": seq,
        "kind": "door_forced",
        "ts": 1_750_000_000.0,
        "clock_synced": True,
        "door": "entree",
    }
    values.update(fields)
    return Event(**values)


def event_payload(device_id: str, epoch: str, seq: int, **fields: Any) -> bytes:
    return encode(event(device_id, epoch, seq, **fields))
