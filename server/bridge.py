"""The server's MQTT side: units' events into the store, acks and access lists back out.

paho's thread only decodes and hands over: events go to the store's writer queue, and the
acknowledgement is published by the acker thread once the writer has committed them. A
payload that breaks the contract is logged with its reason and counted, never raised.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from concurrent.futures import Future
from typing import Any

import paho.mqtt.client as mqtt

from protocol import topics
from protocol.messages import (
    AccessRequest,
    AccessResponse,
    Ack,
    Event,
    ProtocolError,
    Status,
    decode,
    encode,
)
from protocol.mqtt import make_client
from server.access_lists import AccessListPublisher
from server.settings import Settings
from server.store import IngestResult, NotFound, Store

log = logging.getLogger(__name__)

SESSION_EXPIRY_S = 7 * 24 * 3600


class Bridge:
    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self.connected = threading.Event()
        self.received = 0
        self.rejected: Counter[str] = Counter()
        self.acks_sent = 0
        self._acks: queue.Queue[tuple[str, list[int]] | None] = queue.Queue()
        self._acker = threading.Thread(target=self._ack_loop, name="acker", daemon=True)
        self.lists = AccessListPublisher(store, self._publish_list)
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
        self._handlers = {
            topics.EVENT: self._handle_event,
            topics.STATUS: self._handle_status,
            topics.ACCESS_REQUEST: self._handle_access_request,
        }

    def start(self) -> None:
        self._acker.start()
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
        self._acks.put(None)
        self._acker.join(timeout=5)
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
        client.subscribe([(topics.subscription(spec), 1) for spec in self._handlers])
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
            handler = self._handlers.get(parsed.spec)
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

    # -- handlers (paho's thread) ----------------------------------------------------------------

    def _handle_event(self, device_id: str, payload: bytes) -> None:
        event = decode(Event, payload)
        if event.device_id != device_id:
            raise ProtocolError(f"device_id: {event.device_id!r} does not match the topic")
        future = self.store.ingest(device_id, [event], time.time())
        future.add_done_callback(self._committed)

    def _committed(self, future: Future[IngestResult]) -> None:
        """Writer thread: the events are on disk, the unit may forget them."""
        if future.exception() is not None:
            log.error("events not stored, the unit will resend: %s", future.exception())
            return
        result = future.result()
        self._acks.put((result.device_id, result.seqs))

    def _ack_loop(self) -> None:
        """Publishes acks, one message per unit for everything committed meanwhile."""
        stopping = False
        while not stopping:
            items = [self._acks.get()]
            while True:
                try:
                    items.append(self._acks.get_nowait())
                except queue.Empty:
                    break
            pending: dict[str, list[int]] = {}
            for item in items:
                if item is None:
                    stopping = True
                else:
                    pending.setdefault(item[0], []).extend(item[1])
            for device_id, seqs in pending.items():
                if self.publish(topics.ACK, device_id, encode(Ack(sorted(seqs)))):
                    self.acks_sent += 1

    def _handle_status(self, device_id: str, payload: bytes) -> None:
        if not payload:
            return  # a cleared retained status
        status = decode(Status, payload)
        if status.device_id != device_id:
            raise ProtocolError(f"device_id: {status.device_id!r} does not match the topic")
        future = self.store.record_status(status, time.time())
        published = self.lists.published.get(device_id)
        if status.state == "online" and (
            published is None or status.access_list_version != published
        ):
            future.add_done_callback(lambda _: self.lists.invalidate([device_id]))

    def _handle_access_request(self, device_id: str, payload: bytes) -> None:
        request = decode(AccessRequest, payload)
        try:
            centre_id = self.store.device(device_id)["centre_id"]
        except NotFound:
            centre_id = None
        grant, reason = self.store.lookup_grant(request.badge_hash, centre_id, time.time())
        response = AccessResponse(request.request_id, grant is not None, reason, grant)
        self.publish(topics.ACCESS_RESPONSE, device_id, encode(response))
