"""The server's MQTT transport: connect, subscribe, publish, hand each message over.

paho's thread only parses the topic and puts the message on the handler worker's queue
(``server.mqtt.handlers``); decoding, store reads and writes happen there. The bridge also
says whether the server is up: a retained ``ServerStatus`` online at each connect, with a
new ``instance`` per start, and the same message offline as its last will and at a clean
stop.

Access requests excepted: a member waits at the door (``Handlers.put`` answers them).

The units' events come on a second connection, in a process of their own
(``server.mqtt.receiver``), unless ``ingest_process`` is off or the broker refuses that
process's account; they are handed over the same way. Acks leave on that connection too,
signed there, when the broker lets its account publish them; on this one otherwise.
"""

from __future__ import annotations

import contextlib
import logging
import math
import ssl
import threading
import time
import uuid
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from protocol import topics
from protocol.messages import Command, ServerStatus, encode
from protocol.mqtt import (
    NetworkLoop,
    describe_connect_error,
    describe_refusal,
    make_client,
    record_connect_errors,
)
from protocol.signing import Signer
from protocol.workers import Worker
from server.domain import broker_access
from server.metrics import ServerMetrics
from server.mqtt import scaleout
from server.mqtt.handlers import Handlers, Rejections
from server.mqtt.lists import AccessListPublisher
from server.mqtt.receiver import EventReceiver, ReceiverConfig
from server.settings import Settings, SettingsError
from server.store import Store
from server.store.postgres.leader import Leadership, LiveNotices

log = logging.getLogger(__name__)

SESSION_EXPIRY_S = 7 * 24 * 3600
SUBSCRIBED = (
    topics.STATUS,
    topics.HEALTH,
    topics.EVENT,
    topics.ACCESS_REQUEST,
    topics.COMMAND_RESULT,
)


class Bridge:
    """The server's MQTT client (and its events receiver), its access-list publisher and its
    message handlers."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        signer: Signer,
        *,
        metrics: ServerMetrics | None = None,
        badge_key_fp: str | None = None,
        leadership: Leadership | None = None,
    ) -> None:
        self.settings = settings
        self.badge_key_fp = badge_key_fp  # told to the units in the server status
        # Several workers (server.mqtt.scaleout): None for a single server, which leads.
        self.leadership = leadership
        self.signer = signer
        self.store = store
        self.instance = str(uuid.uuid4())  # this run of the server
        self.connected = threading.Event()
        self._received_here = 0  # messages on this process's own connection
        self.connects = 0
        self.connected_at: float | None = None  # when the broker last accepted us
        self.rejections = Rejections()
        self.handlers = Handlers(store, signer, self.publish, self.rejections, metrics)
        self.lists: Any = AccessListPublisher(store, signer, self.publish)
        self.live_notices: LiveNotices | None = None
        if leadership is not None:
            self.lists = scaleout.ListRelay(
                lambda: AccessListPublisher(store, signer, self.publish), leadership, store
            )
            leadership.on_change = self._leader_changed
            leadership.on_notice = self.lists.notice
            # Each worker serves its own live streams: the others' commits push them too.
            self.live_notices = LiveNotices(leadership)
            store.share_changes(self.live_notices.changed)
            leadership.on_live = store.announce_change
        self.handlers.on_credit = lambda member_ids: self.lists.invalidate(None, member_ids)
        # A worker of a share group keeps no session: the broker would go on handing a
        # stopped worker its share of the units' events, queued until it came back (the
        # units resend what a worker took but never acked, to the workers still there).
        self._persistent = not settings.mqtt_share_group
        self._client, self._props = make_client(
            settings.mqtt_client_id, session_expiry_s=SESSION_EXPIRY_S if self._persistent else 0
        )
        c = self._client
        self.error: str | None = "not connected yet"
        # The units' events, received in a process of their own (server.mqtt.receiver).
        self.receiver: EventReceiver | None = None
        self._subscribing = threading.Lock()  # who subscribes to the events, if refused
        if settings.mqtt_username:
            password = None
            if settings.mqtt_password_file:
                try:
                    password = settings.mqtt_password_file.read_text().strip()
                except OSError as exc:
                    raise SettingsError(
                        f"mqtt_password_file: cannot read {settings.mqtt_password_file} "
                        f"({exc.strerror})"
                    ) from None
            c.username_pw_set(settings.mqtt_username, password)
            if settings.ingest_process and password:
                self.receiver = EventReceiver(
                    self._receiver_config(password),
                    self._deliver,
                    self._receiver_refused,
                    self.store.announce_change,
                )
                self.handlers.acker.forward = self.receiver.forward_acks
        if settings.mqtt_tls:
            ca = settings.mqtt_ca_file
            if ca is not None and not ca.is_file():
                raise SettingsError(f"mqtt_ca_file: {ca} does not exist")
            c.tls_set(ca_certs=str(ca) if ca else None, tls_version=ssl.PROTOCOL_TLS_CLIENT)
        record_connect_errors(c, self._on_connect_error)
        if leadership is None:
            self._set_will()
        self._loop = NetworkLoop(c, "mqtt-network", min_delay_s=1, max_delay_s=15)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message

    def _receiver_config(self, password: str) -> ReceiverConfig:
        settings = self.settings
        assert settings.mqtt_username is not None
        ca = settings.mqtt_ca_file
        return ReceiverConfig(
            host=settings.mqtt_host,
            port=settings.mqtt_port,
            username=broker_access.ingest_username(settings.mqtt_username),
            password=password,
            tls=settings.mqtt_tls,
            ca_file=str(ca) if ca else None,
            subscription=self._events_filter(),
            session_expiry_s=SESSION_EXPIRY_S if self._persistent else 0,
            signing_key=self.signer.private_bytes().hex(),
        )

    def _events_filter(self) -> str:
        group = self.settings.mqtt_share_group
        return scaleout.shared(group, topics.EVENT) if group else topics.subscription(topics.EVENT)

    @property
    def events_here(self) -> bool:
        """Whether this process's own connection receives the units' events: no receiver
        process, or the broker refused its account."""
        return self.receiver is None or self.receiver.refused is not None

    def receiving(self) -> bool:
        """Whether the units' events reach this server now."""
        if self.events_here:
            return self.connected.is_set()
        assert self.receiver is not None
        return self.receiver.listening.is_set()

    def _deliver(self, batch: list[tuple[str, bytes, bool]]) -> None:
        """The receiver's batch, on its pump's thread (which counts them)."""
        for topic, payload, retain in batch:
            self._received(topic, payload, retain)

    def _receiver_refused(self, message: str) -> None:
        assert self.receiver is not None
        log.error(
            "the broker refused the events receiver's account %s (%s): the units' events are "
            "received in this process instead; `telecentre-server broker sync` gives the "
            "broker that account (then restart the server)",
            self.receiver.config.username,
            message,
        )
        with self._subscribing:  # else ``_on_connect`` subscribes, seeing ``events_here``
            if self._client.is_connected():
                self._client.subscribe(self._events_filter(), qos=topics.EVENT.qos)
        self.store.announce_change()

    def _set_will(self) -> None:
        self._client.will_set(**self._status_message("offline"))

    def _status_message(self, state: str) -> dict[str, Any]:
        """The server's retained status, as publish and will_set take it."""
        return {
            "topic": topics.topic(topics.SERVER_STATUS),
            "payload": self._server_status(state),
            "qos": topics.SERVER_STATUS.qos,
            "retain": True,
        }

    @property
    def leader(self) -> bool:
        """Whether this worker publishes lists and the server's status (a single server does)."""
        return self.leadership is None or self.leadership.is_leader.is_set()

    def _leader_changed(self, leader: bool) -> None:
        self.lists.lead(leader)
        if not self.connected.is_set():
            return
        if leader:  # a take-over: the units' status, and the server's with a new instance
            self._client.subscribe([(f, topics.STATUS.qos) for f in scaleout.leader_only()])
            self._publish_online()
            self.lists.republish()
        else:
            self._client.unsubscribe(scaleout.leader_only())

    def _publish_online(self) -> None:
        self._client.publish(**self._status_message("online"))

    @property
    def received(self) -> int:
        """Messages received, on this process's connection and the receiver's."""
        return self._received_here + (self.receiver.received if self.receiver else 0)

    @property
    def rejected(self) -> dict[str, int]:
        return self.rejections.snapshot()

    @property
    def acks_sent(self) -> int:
        return self.handlers.acker.sent

    @property
    def workers(self) -> list[Worker]:
        found = list(self.handlers.workers)
        if self.receiver is not None:
            found.append(self.receiver.worker)
        if isinstance(self.lists, Worker):
            found.append(self.lists)
        found.extend(getattr(self.lists, "workers", []))
        if self.live_notices is not None:
            found.append(self.live_notices)
        return found

    def start(self) -> None:
        self.handlers.start()
        if self.receiver is not None:
            self.receiver.start()
        if self.leadership is not None:
            if self.leadership.elect():  # known before connecting: the leader has the will
                self._set_will()
            self.leadership.start()
        if self.live_notices is not None:
            self.live_notices.start()
        self.lists.start()
        self._client.connect_async(
            self.settings.mqtt_host,
            self.settings.mqtt_port,
            keepalive=30,
            clean_start=not self._persistent,
            properties=self._props,
        )
        self._loop.start()

    def stop(self) -> None:
        if self.receiver is not None:  # first: no event comes in that could not be acked
            self.receiver.stop()
        if self.live_notices is not None:  # before the leadership closes its connections
            self.live_notices.stop()
        self.lists.stop()
        self.handlers.stop()
        if self.connected.is_set() and self.leader:
            info = self._client.publish(**self._status_message("offline"))
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(timeout=2)
        self._loop.stop()
        self.connected.clear()

    def stats(self) -> dict[str, Any]:
        rejected = self.rejections.snapshot()
        return {
            "connected": self.connected.is_set(),
            "broker": f"{self.settings.mqtt_host}:{self.settings.mqtt_port}",
            "error": None if self.connected.is_set() else self.error,
            "instance": self.instance,
            "connects": self.connects,
            "received": self.received,
            "backlog": self.handlers.backlog,
            "rejected": sum(rejected.values()),
            "rejected_by_reason": rejected,
            "acks_sent": self.acks_sent,
            "receiving": self.receiving(),
            "receiver": self.receiver.stats() if self.receiver is not None else None,
        }

    def publish(
        self,
        spec: topics.TopicSpec,
        owner: str,
        payload: bytes,
        *,
        index: int | None = None,
        expiry_s: int | None = None,
    ) -> bool:
        """Send on ``spec``'s topic of ``owner`` (a unit or a centre), with its QoS and retain
        flag; False when the broker is away (nothing is queued)."""
        if not self.connected.is_set():
            return False
        props = None
        if expiry_s is not None:
            props = Properties(PacketTypes.PUBLISH)
            props.MessageExpiryInterval = expiry_s
        info = self._client.publish(
            topics.topic(spec, owner, index),
            payload,
            qos=spec.qos,
            retain=spec.retain,
            properties=props,
        )
        return info.rc == mqtt.MQTT_ERR_SUCCESS

    def send_command(self, command: Command) -> bool:
        """Publish a signed command: QoS 1, never retained, expiring with the command."""
        ttl = max(1, math.ceil(command.expires_at - command.issued_at))
        return self.publish(
            topics.COMMAND, command.device_id, self.signer.sign(command), expiry_s=ttl
        )

    def _server_status(self, state: str) -> bytes:
        online = state == "online"
        status = ServerStatus(
            state=state,  # type: ignore[arg-type]
            instance=self.instance,
            ts=time.time() if online else None,
            badge_key_fp=self.badge_key_fp if online else None,
        )
        return encode(status)

    # -- paho callbacks (paho's thread: hand over, never block) -------------------------------

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        if reason.is_failure:
            self._set_error(
                describe_refusal(reason, "mqtt_username", "mqtt_password_file"), logging.ERROR
            )
            return
        self.error = None
        with self._subscribing:
            self._subscribe(client)
        if self.leader:
            self._publish_online()
        self.connects += 1
        self.connected_at = time.time()
        self.connected.set()
        self.store.announce_change()  # the live views show the link
        log.info(
            "bridge connected to %s:%s as instance %s",
            self.settings.mqtt_host,
            self.settings.mqtt_port,
            self.instance,
        )
        # The broker may have restarted without its retained messages.
        self.lists.republish()

    def _subscribe(self, client: mqtt.Client) -> None:
        group = self.settings.mqtt_share_group
        events = self.events_here
        if group:
            leader = self.leader
            client.subscribe(scaleout.subscriptions(group, leader=leader, events=events))
            if not leader:  # a session kept from when it led still holds them
                client.unsubscribe(scaleout.leader_only())
        else:
            client.subscribe(
                [
                    (topics.subscription(spec), spec.qos)
                    for spec in SUBSCRIBED
                    if events or spec is not topics.EVENT
                ]
            )
        if not events:  # the receiver's: a session kept from before it may still hold it
            client.unsubscribe(self._events_filter())

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        if self.connected.is_set():
            log.warning("bridge lost the broker: %s", reason)
            self.error = f"lost the broker at {self._where()}: {reason}"
        self.connected.clear()
        self.store.announce_change()

    def _on_connect_error(self, exc: OSError) -> None:
        host, port = self.settings.mqtt_host, self.settings.mqtt_port
        self._set_error(describe_connect_error(exc, host, port), logging.ERROR)

    def _set_error(self, message: str, level: int) -> None:
        """Log a broker problem once per change (a retry every few seconds says nothing new)."""
        if message != self.error:
            log.log(level, "MQTT: %s", message)
        self.error = message

    def _where(self) -> str:
        return f"{self.settings.mqtt_host}:{self.settings.mqtt_port}"

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self._received_here += 1  # the receiver counts its own
        self._received(msg.topic, msg.payload, bool(msg.retain))

    def _received(self, topic: str, payload: bytes, retain: bool) -> None:
        """A message from this process's connection or from the events receiver's."""
        try:
            parsed = topics.parse(topic)
        except topics.TopicError as exc:
            self.rejections.add("bad_topic", topic, str(exc))
            return
        if parsed.spec.scope is not topics.Scope.DEVICE:
            return  # our own status (telecentre/+/status matches telecentre/_server/status)
        if parsed.spec.direction is not topics.Direction.EDGE_TO_SERVER:
            self.rejections.add("bad_topic", topic, "a server -> unit leaf")
            return
        self.handlers.put(parsed.spec, parsed.owner, payload, retain)
