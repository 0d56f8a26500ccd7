"""The edge agent: a badge becomes a decision, a door movement and a durable event.

The door decides from the local access list; the network is never in the grant path for a
known card. A card the list does not know is asked of the server with a short deadline
(deny when it passes). Every event goes to the outbox before the door moves, and leaves
it only on the server's acknowledgement.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from edge import __version__
from edge.access import Decision, LocalAccess
from edge.clock import clock_synced
from edge.config import ConfigError, EdgeConfig
from edge.door import Door
from edge.hardware.build import Hardware
from edge.link import MqttLink
from edge.outbox import Outbox
from edge.poller import CardPoller
from edge.rooms import Room, RoomState
from protocol import topics
from protocol.badges import badge_hash, parse_key
from protocol.messages import (
    AccessList,
    AccessRequest,
    AccessResponse,
    Ack,
    Command,
    Event,
    ProtocolError,
    RoomInfo,
    Status,
    decode,
    encode,
)

log = logging.getLogger(__name__)

# Nobody stays longer: a member who never badged out counts as gone after this.
MAX_STAY_S = 14 * 3600
OUTBOX_BATCH = 500


@dataclass
class _Waiting:
    done: threading.Event
    response: AccessResponse | None = None


class EdgeAgent:
    """Everything a unit does, wired from its config and its hardware."""

    def __init__(
        self,
        config: EdgeConfig,
        hardware: Hardware,
        *,
        clock: Callable[[], float] = time.time,
        synced: Callable[[], bool] = clock_synced,
    ) -> None:
        self.config = config
        self.hardware = hardware
        self._clock = clock
        self._synced = synced
        self.key = _read_key(config)
        self.outbox = Outbox(config.outbox_path)
        self.access = LocalAccess()
        self._access_lock = threading.Lock()
        cached = self.outbox.load_access_list()
        if cached is not None:
            self.access.replace(cached)
        self.rejected_messages = 0
        self.faults: dict[str, str] = {}
        self._waiting: dict[str, _Waiting] = {}
        self._stop = threading.Event()
        self._wake = threading.Event()

        self.doors = {
            d.id: Door(d, hardware.locks[d.id], hardware.contacts.get(d.id), on_alarm=self._alarm)
            for d in config.doors
        }
        self.rooms = {
            r.id: Room(r, hardware.sensors[r.id], on_state=self._room_state) for r in config.rooms
        }
        self.pollers = [
            CardPoller(
                hardware.readers[d.id],
                partial(self.badge, d.id),
                poll_interval_ms=d.reader.poll_interval_ms,
                repeat_ms=d.reader.repeat_ms,
                on_fault=partial(self._reader_fault, d.id),
                name=f"reader-{d.id}",
            )
            for d in config.doors
        ]
        self.link = MqttLink(
            config,
            on_message=self._on_message,
            birth=self.status,
            on_connected=self._on_connected,
        )
        self._publisher = threading.Thread(target=self._publish_loop, name="publisher", daemon=True)

    # -- life cycle ----------------------------------------------------------------------------

    def start(self) -> None:
        self.outbox.forget_presence_before(self._clock() - MAX_STAY_S)
        for room in self.rooms.values():  # the server learns each room's state at boot
            self._room_state(room.id, room.state)
        self.link.start()
        self._publisher.start()
        for poller in self.pollers:
            poller.start()

    def stop(self) -> None:
        """Lock every door, stop reading, say offline and close the outbox (once)."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._wake.set()
        for poller in self.pollers:
            poller.stop()
        for poller in self.pollers:
            if poller.is_alive():
                poller.join(timeout=2)
        for door in self.doors.values():
            door.close()
        for room in self.rooms.values():
            room.close()
        for reader in self.hardware.readers.values():
            reader.close()
        if self._publisher.is_alive():
            self._publisher.join(timeout=2)
        self.link.stop()
        self.outbox.close()

    def status(self) -> Status:
        return Status(
            device_id=self.config.device_id,
            state="online",
            ts=self._clock(),
            software_version=__version__,
            config_hash=self.config.config_hash,
            access_list_version=self.access.version,
            clock_synced=self._synced(),
            outbox_pending=self.outbox.pending_count(),
            faults=[f"{door}: {msg}" for door, msg in sorted(self.faults.items())] or None,
            doors=[d.id for d in self.config.doors],
            rooms=[RoomInfo(r.id, r.name) for r in self.config.rooms],
        )

    # -- the badge path ------------------------------------------------------------------------

    def badge(self, door_id: str, uid: bytes) -> Event:
        """A card was presented at ``door_id``: decide, record, open. Returns the event."""
        door = self.doors[door_id]
        hashed = badge_hash(self.key, uid)
        now = self._clock()
        with self._access_lock:
            decision = self.access.decide(hashed, now)
        if decision.needs_server:
            decision = self._ask_server(hashed, door_id)
        direction = None
        presence = None
        if decision.granted and decision.member_id is not None:
            direction = self._direction(door.config.direction, decision.member_id, now)
            presence = (decision.member_id, direction == "in", now)
        event = self._record(
            now=now,
            presence=presence,
            kind="access",
            door=door_id,
            badge_hash=hashed,
            granted=decision.granted,
            reason=decision.reason,
            direction=direction,
            member_id=decision.member_id,
        )
        if decision.granted:
            door.open_for()
        log.info(
            "door %s: %s (%s)",
            door_id,
            "granted" if decision.granted else "denied",
            decision.reason,
        )
        return event

    def _direction(self, door_direction: str, member_id: int, now: float) -> str:
        if door_direction != "toggle":
            return door_direction
        since = self.outbox.inside_since(member_id)
        return "out" if since is not None and now - since < MAX_STAY_S else "in"

    def _ask_server(self, hashed: str, door_id: str) -> Decision:
        if not self.link.connected.is_set():
            return Decision(False, "server_timeout")
        request_id = str(uuid.uuid4())
        waiting = _Waiting(threading.Event())
        self._waiting[request_id] = waiting
        try:
            request = AccessRequest(request_id, hashed, door_id, self._clock())
            if self.link.publish(topics.ACCESS_REQUEST, encode(request)):
                waiting.done.wait(self.config.online_deadline_ms / 1000)
        finally:
            self._waiting.pop(request_id, None)
        response = waiting.response
        if response is None:
            log.warning("server did not answer within %d ms", self.config.online_deadline_ms)
            return Decision(False, "server_timeout")
        if response.granted and response.grant is not None:
            with self._access_lock:
                self.access.learn(response.grant)
            return Decision(True, "granted", response.grant.member_id)
        return Decision(False, response.reason if response.reason else "server_denied")

    # -- other events --------------------------------------------------------------------------

    def _record(
        self,
        *,
        now: float | None = None,
        presence: tuple[int, bool, float] | None = None,
        **fields: Any,
    ) -> Event:
        """Put an event in the outbox (with its presence change) and wake the publisher."""
        ts = self._clock() if now is None else now
        synced = self._synced()
        event = self.outbox.record(
            lambda seq: Event(
                event_id=str(uuid.uuid4()),
                device_id=self.config.device_id,
                seq=seq,
                ts=ts,
                clock_synced=synced,
                **fields,
            ),
            offline=not self.link.connected.is_set(),
            presence=presence,
        )
        self._wake.set()
        return event

    def _alarm(self, door_id: str, kind: str) -> None:
        self._record(kind=kind, door=door_id)

    def _room_state(self, room_id: str, state: RoomState) -> None:
        self._record(kind="room", room=room_id, room_state=state)

    def _reader_fault(self, door_id: str, message: str | None) -> None:
        if message is None:
            self.faults.pop(door_id, None)
        else:
            self.faults[door_id] = f"card reader: {message}"
        self.link.publish_status()

    # -- MQTT ----------------------------------------------------------------------------------

    def _on_connected(self) -> None:
        self.outbox.resend_all()
        self._wake.set()

    def _on_message(self, parsed: topics.ParsedTopic, payload: bytes) -> None:
        """Runs on paho's thread: decode, hand over, never block."""
        spec = parsed.spec
        try:
            if spec is topics.ACK:
                ack = decode(Ack, payload)
                self.outbox.ack(ack.seqs)
            elif spec is topics.ACCESS_LIST:
                self._install_list(decode(AccessList, payload))
            elif spec is topics.ACCESS_RESPONSE:
                response = decode(AccessResponse, payload)
                waiting = self._waiting.get(response.request_id)
                if waiting is not None:
                    waiting.response = response
                    waiting.done.set()
            elif spec is topics.COMMAND:
                self._command(decode(Command, payload))
            else:
                raise ProtocolError(f"topic leaf {spec.leaf!r} is not for a unit")
        except ProtocolError as exc:
            self.rejected_messages += 1
            log.warning("rejected message on %s: %s", spec.leaf, exc)

    def _install_list(self, access_list: AccessList) -> None:
        with self._access_lock:
            installed = self.access.replace(access_list)
        if not installed:
            return
        self.outbox.save_access_list(access_list)
        log.info(
            "access list v%d installed (%d badges)", access_list.version, len(access_list.grants)
        )
        self.link.publish_status()

    def _command(self, command: Command) -> None:
        if command.expires_at < self.access.trusted_now(self._clock()):
            log.warning("ignored expired command %s (%s)", command.command_id, command.action)
            return
        door = self.doors.get(command.door)
        if door is None:
            raise ProtocolError(f"door: no door {command.door!r} on this unit")
        self._record(kind="unlock", door=command.door, reason="remote")
        door.open_for()

    def _publish_loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(1.0)
            self._wake.clear()
            if not self.link.connected.is_set():
                continue
            now = time.monotonic()
            due = self.outbox.due(
                now=now, ack_timeout_s=self.config.ack_timeout_s, limit=OUTBOX_BATCH
            )
            sent = []
            for pending in due:
                if not self.link.publish(topics.EVENT, pending.payload()):
                    break
                sent.append(pending.seq)
            if sent:
                self.outbox.mark_sent(sent, now)
                if len(sent) == len(due) == OUTBOX_BATCH:
                    self._wake.set()  # more are waiting behind this batch


def _read_key(config: EdgeConfig) -> bytes:
    try:
        return parse_key(config.badge_key_file.read_text())
    except OSError as exc:
        raise ConfigError(
            f"badge_key_file: cannot read {config.badge_key_file} ({exc.strerror})"
        ) from None
    except ValueError as exc:
        raise ConfigError(f"badge_key_file: {config.badge_key_file}: {exc}") from None
