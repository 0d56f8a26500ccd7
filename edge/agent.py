"""The edge agent: a badge becomes a decision, a door movement and a durable event.

The door decides from the local access list; the network is never in the grant path for a
known card. A card the list does not know is asked of the server with a short deadline
(deny when it passes). Every event goes to the outbox before the door moves, and leaves
it only on the server's acknowledgement.

A unit obeys only its server: every server -> unit message (acks, online answers,
commands, list heads, segments and deltas) is opened with the server's public key(s) from
the config, and refused (counted by reason, logged) when unsigned, badly signed, or meant
for another unit or centre. Commands follow the rules of the wire contract (retained,
replayed, too long, expired or unplaceable in time: refused) and each gets a
CommandResult.

Inputs besides the readers: a door's request-to-exit button opens it without a badge (an
``exit`` event), tamper switches raise ``tamper`` and ``tamper_cleared``, and an optional
second reader inside a door reads the way out. Every one of them goes through the outbox,
online or not. The lights and buzzer at each reader (``edge.feedback``) say how a card was
decided and show the unit's state: locked down, a reader fault, offline.

Lockdown (by command): only lockdown-exempt badges open the doors, every other card is
refused ``lockdown``; exit buttons and remote unlocks still work. The state is kept in the
outbox database with the event that changed it, so it survives a restart.

Threads: paho's network thread only parses topics and hands payloads over (online answers
excepted: a member is waiting at the door). The list installer, the inbox (acks, commands,
server status), the publisher, the card pollers and the feedback player are
``protocol.workers.Worker``s.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import sqlite3
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import msgspec

from edge import __version__
from edge.access import Decision, LocalAccess, decide_entry
from edge.clock import CachedSync, TrustedClock
from edge.config import ConfigError, EdgeConfig
from edge.door import Door
from edge.feedback import Feedback, for_access
from edge.hardware.build import Hardware
from edge.health import cpu_temp_c, degraded_reasons, disk_free_mb, door_health
from edge.link import IN_FLIGHT_LIMIT, MqttLink
from edge.lists import ListSync
from edge.outbox import AckTimer, Outbox, OutboxWriteError
from edge.poller import CardPoller
from edge.rooms import Room, RoomState
from protocol import topics
from protocol.badges import badge_hash, parse_key
from protocol.errors import REJECT_REASONS, ProtocolError
from protocol.messages import (
    DENY_REASONS,
    AccessRequest,
    AccessResponse,
    Ack,
    Command,
    CommandResult,
    Event,
    Health,
    RoomInfo,
    ServerStatus,
    Status,
    Uuid,
    WorkerInfo,
    decode,
    encode,
    new_event_id,
)
from protocol.signing import Envelope, SigningKeyError, Verifier
from protocol.workers import Worker, freeze_startup_objects

log = logging.getLogger(__name__)

# Nobody stays longer: a member who never badged out counts as gone after this.
MAX_STAY_S = 14 * 3600
# At this share of outbox_max_events the status reports the outbox filling.
OUTBOX_ALARM_SHARE = 0.8
OUTBOX_BATCH = 500
# A command issued this far ahead of a synchronised clock is not valid yet.
COMMAND_FUTURE_S = 60.0
# Ids of executed commands are kept this long after their expiry.
COMMAND_ID_MARGIN_S = 3600.0
# ServerStatus is small JSON.
SERVER_STATUS_LIMIT = 4096
# The outbox setting that keeps the lockdown across restarts ("1" locked down).
LOCKDOWN = "lockdown"

_LIST_SPECS = (topics.LIST_HEAD, topics.LIST_SEGMENT, topics.LIST_DELTA)


@dataclass
class _Waiting:
    badge_hash: str
    done: threading.Event
    response: AccessResponse | None = None


class _CommandId(msgspec.Struct):
    command_id: Uuid


_command_id_decoder = msgspec.msgpack.Decoder(_CommandId)
_envelope_decoder = msgspec.msgpack.Decoder(Envelope)


def peek_command_id(payload: bytes) -> str | None:
    """The command_id of a payload that cannot be trusted, to say which one was refused."""
    # msgspec raises UnicodeDecodeError for a string that is not UTF-8.
    unreadable = (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError)
    body = payload
    with contextlib.suppress(*unreadable):
        body = _envelope_decoder.decode(payload).body
    try:
        return _command_id_decoder.decode(body).command_id
    except unreadable:
        return None


class RejectCounter:
    """Refused messages by ``ProtocolError.reason``: a fixed set of keys, thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def add(self, reason: str) -> None:
        if reason not in REJECT_REASONS:  # never grow with names a sender chose
            reason = "malformed"
        with self._lock:
            self._counts[reason] += 1

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def __getitem__(self, reason: str) -> int:
        with self._lock:
            return self._counts[reason]


class EdgeAgent:
    """Everything a unit does, wired from its config and its hardware."""

    def __init__(
        self,
        config: EdgeConfig,
        hardware: Hardware,
        *,
        clock: Callable[[], float] = time.time,
        synced: Callable[[], bool] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.hardware = hardware
        self._clock = clock
        # The kernel's word, asked at most once a second (edge.clock.CachedSync).
        synced = synced or CachedSync(monotonic=monotonic)
        self._synced = synced
        self._monotonic = monotonic
        self.clock = TrustedClock(wall=clock, synced=synced, monotonic=monotonic)
        self._started = monotonic()
        self.key = _read_key(config)
        self.verifier = make_verifier(config)
        self.outbox = Outbox(config.outbox_path)
        self.ack_timer = AckTimer(config.ack_timeout_s)  # stretched while acks come late
        self.access = LocalAccess()
        self.rejected = RejectCounter()
        self.faults: dict[str, str] = {}  # "<door or unit>: <device>" -> what is wrong
        self._reported_pending = 0  # outbox_pending of the last status built
        self.shed_room_changes = 0  # room changes not recorded: the outbox was full
        self._waiting: dict[str, _Waiting] = {}
        # Called with each event once it is in the outbox (simulate prints them); on the
        # thread that recorded it, so an observer must not block.
        self.observers: list[Callable[[Event], None]] = []
        self._server_instance: str | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._inbox: queue.Queue[tuple[topics.ParsedTopic, bytes, bool] | None] = queue.Queue()
        self._lists_in: queue.Queue[tuple[topics.ParsedTopic, bytes, bool] | None] = queue.Queue()

        self.doors = {
            d.id: Door(d, hardware.locks[d.id], hardware.contacts.get(d.id), on_alarm=self._alarm)
            for d in config.doors
        }
        self.rooms = {
            r.id: Room(r, hardware.sensors[r.id], on_state=self._room_state) for r in config.rooms
        }
        self.pollers = [
            CardPoller(
                hardware.exit_readers[d.id] if way == "exit" else hardware.readers[d.id],
                partial(self.badge, d.id, exit_reader=way == "exit"),
                poll_interval_ms=reader.poll_interval_ms,
                repeat_ms=reader.repeat_ms,
                on_fault=partial(self._reader_fault, d.id, way),
                name=f"{'exit-reader' if way == 'exit' else 'reader'}-{d.id}"[:32],
            )
            for d in config.doors
            for way, reader in d.readers.items()
        ]
        self.lockdown = self.outbox.setting(LOCKDOWN) == "1"
        self.feedback = Feedback(hardware.signals)
        self._shown_online: bool | None = None
        for door_id, button in hardware.exit_buttons.items():
            button.on_press(partial(self.exit_pressed, door_id))
        self._tampered: set[str | None] = set()
        for where, switch in hardware.tampers.items():
            switch.on_change(partial(self._tamper_changed, where))
        self.link = MqttLink(
            config,
            on_message=self._on_message,
            birth=self.status,
            on_connected=self._on_connected,
        )
        self.link.on_room = self._wake.set
        self.lists = ListSync(
            centre=config.centre,
            verifier=self.verifier,
            access=self.access,
            outbox=self.outbox,
            subscribe=self.link.subscribe,
            unsubscribe=self.link.unsubscribe,
            observe=self.clock.observe,
            on_installed=self._list_installed,
            monotonic=monotonic,
        )
        self.lists.load()
        # When the list in use arrived (at boot: the one kept on disk, from now on).
        self._list_since: float | None = monotonic() if self.access.version else None
        self._health_due = threading.Event()
        self.outbox.on_write_state = self._outbox_write_state  # the status says why
        self.publisher = Worker("publisher", self._publish_step)
        self.inbox = Worker("inbox", self._inbox_step)
        self.installer = Worker("lists", self._lists_step)
        self.heartbeat = Worker("heartbeat", self._heartbeat_step)

    @property
    def workers(self) -> list[Worker]:
        feedback = [self.feedback] if self.feedback.fitted else []
        own = [self.publisher, self.inbox, self.installer, self.heartbeat]
        return [*own, *self.pollers, *feedback]

    # -- life cycle ----------------------------------------------------------------------------

    def start(self) -> None:
        tune_for_latency()
        self.outbox.forget_presence_before(self.clock.now() - MAX_STAY_S)
        self.outbox.forget_commands_before(self.clock.now() - COMMAND_ID_MARGIN_S)
        for room in self.rooms.values():  # the server learns each room's state at boot
            self._room_state(room.id, room.state)
        for where, switch in self.hardware.tampers.items():  # opened while the unit was off
            if not switch.is_closed:
                self._tamper_changed(where, False)
        self.feedback.set_state("lockdown", self.lockdown)
        self._show_link()
        if self.feedback.fitted:
            self.feedback.start()
        self.link.start()
        for worker in (self.publisher, self.inbox, self.installer, self.heartbeat):
            worker.start()
        for poller in self.pollers:
            poller.start()

    def stop(self) -> None:
        """Lock every door, stop reading, say offline and close the outbox (once)."""
        if self._stop.is_set():
            return
        self._stop.set()
        for worker in self.workers:
            worker.stopping.set()
        self._wake.set()
        self._health_due.set()
        self._inbox.put(None)
        self._lists_in.put(None)
        for poller in self.pollers:
            poller.stop(timeout=2)
        for door in self.doors.values():
            door.close()
        for room in self.rooms.values():
            room.close()
        for reader in (*self.hardware.readers.values(), *self.hardware.exit_readers.values()):
            reader.close()
        self.feedback.close()
        self.hardware.close()
        for worker in (self.publisher, self.inbox, self.installer, self.heartbeat):
            worker.stop(timeout=2)
        self.link.stop()
        self.outbox.close()

    def status(self) -> Status:
        pending = self.outbox.pending_count()
        self._reported_pending = pending
        return Status(
            device_id=self.config.device_id,
            state="online",
            centre=self.config.centre,
            ts=self._clock(),
            software_version=__version__,
            config_hash=self.config.config_hash or None,
            list_version=self.access.version,
            clock_synced=self._synced(),
            outbox_pending=pending,
            outbox_rejected=self.outbox.rejected_count(),
            outbox_oldest_ts=self.outbox.oldest_pending_ts() if pending else None,
            faults=self._fault_lines() or None,
            doors=[d.id for d in self.config.doors],
            rooms=[RoomInfo(id=r.id, name=r.name) for r in self.config.rooms],
            workers=[
                WorkerInfo(name=w.name, alive=w.is_alive(), errors=w.errors) for w in self.workers
            ],
            rejected=self.rejected.snapshot() or None,
            lockdown=self.lockdown,
        )

    def health(self) -> Health:
        """The heartbeat: the unit's vital signs and whether it is degraded."""
        pending = self.outbox.pending  # kept by the outbox: no count every heartbeat
        oldest = self.outbox.oldest_pending_ts() if pending else None
        now = self._clock()
        mono = self._monotonic()
        list_age = None
        if self._list_since is not None and self.access.version is not None:
            list_age = round(max(0.0, mono - self._list_since), 3)
        workers = [
            WorkerInfo(name=w.name, alive=w.is_alive(), errors=w.errors) for w in self.workers
        ]
        free = disk_free_mb(self.config.data_dir)
        dead = [w.name for w in self.workers if w.ident is not None and not w.is_alive()]
        reasons = degraded_reasons(self._fault_lines(), dead, free)
        contacts = self.hardware.contacts
        return Health(
            device_id=self.config.device_id,
            ts=now,
            interval_s=self.config.health_interval_s,
            uptime_s=round(max(0.0, mono - self._started), 3),
            condition="degraded" if reasons else "ok",
            reasons=reasons or None,
            outbox_pending=pending,
            outbox_oldest_age_s=None if oldest is None else round(max(0.0, now - oldest), 3),
            list_version=self.access.version,
            list_age_s=list_age,
            cpu_temp_c=cpu_temp_c(),
            disk_free_mb=free,
            clock_synced=self._synced(),
            lockdown=self.lockdown,
            doors=[
                door_health(
                    d.id,
                    faults=self.faults,
                    has_exit_reader=d.exit_reader is not None,
                    unlocked=self.hardware.locks[d.id].is_unlocked,
                    closed=contacts[d.id].is_closed if d.id in contacts else None,
                )
                for d in self.config.doors
            ],
            workers=workers,
        )

    def publish_health(self) -> bool:
        return self.link.publish(topics.HEALTH, encode(self.health()))

    def _fault_lines(self) -> list[str]:
        """Every current fault, ``"<door or unit>: <device>: <what>"``."""
        return [
            *(f"{what}: {msg}"[:200] for what, msg in sorted(self.faults.items())),
            *self._outbox_faults(),
        ]

    def _outbox_write_state(self) -> None:
        """The outbox could not write (a full disk), or writes again: tell the server."""
        self.link.publish_status()
        self._health_due.set()

    def _list_installed(self) -> None:
        """A list was installed: remember when (its age is in the heartbeat), tell the server."""
        self._list_since = self._monotonic()
        self.link.publish_status()
        self.publish_health()

    # -- the badge path ------------------------------------------------------------------------

    def badge(self, door_id: str, uid: bytes, *, exit_reader: bool = False) -> Event:
        """A card was presented at ``door_id`` (at its exit reader: on the way out): decide,
        record, open, say so. Returns the event."""
        door = self.doors[door_id]
        hashed = badge_hash(self.key, uid)
        now = self._clock()  # the event's own time, told with clock_synced
        # Rules and presence read the trusted clock: after a boot in 1970 without an RTC,
        # the newest signed time the unit has seen, never the wrong wall clock.
        trusted = self.clock.now()
        entry = self.access.entry(hashed) if self.lockdown else None
        if self.lockdown and (entry is None or not entry.exempt):
            decision = Decision(False, "lockdown", entry.member_id if entry else None)
        else:
            decision = self.access.decide(hashed, trusted, self.outbox.credit_days)
            if decision.needs_server:
                decision = self._ask_server(hashed, door_id)
        direction = None
        presence = None
        passback = False
        if decision.granted and decision.member_id is not None:
            way = "out" if exit_reader else door.config.direction
            direction = self._direction(way, decision.member_id, trusted)
            presence = (decision.member_id, direction == "in", trusted)
            passback = direction == "in" and self._re_entry(decision.member_id, trusted)
        try:
            # Written before the door moves (a killed process keeps it), flushed to the disk
            # just after: the member does not wait for the disk (docs/protocol.md, Delivery).
            event = self._record(
                flush=False,
                now=now,
                presence=presence,
                kind="access",
                door=door_id,
                badge_hash=hashed,
                granted=decision.granted,
                reason=decision.reason,
                direction=direction,
                member_id=decision.member_id,
                credit_day=(
                    (decision.member_id, decision.credit_day)
                    if decision.credit_day is not None and decision.member_id is not None
                    else None
                ),
            )
        except OutboxWriteError:
            # Fail secure: a card whose record cannot be written (a full disk) does not
            # open the door, or the visit, the member's presence and day credits would go
            # unrecorded. The member hears a refusal; the status and heartbeat say why.
            self.feedback.play(door_id, "denied")
            log.error("door %s: card not decided, the outbox cannot record it", door_id)
            raise
        if decision.granted:
            door.open_for()
        if passback:  # soft: the door opens, the central team is told
            self._record(
                flush=False,
                now=now,
                kind="passback",
                door=door_id,
                badge_hash=hashed,
                member_id=decision.member_id,
            )
        self.feedback.play(door_id, for_access(decision.granted, decision.reason))
        self._flushed()
        log.info(
            "door %s%s: %s (%s)",
            door_id,
            " (exit reader)" if exit_reader else "",
            "granted" if decision.granted else "denied",
            decision.reason,
        )
        return event

    def exit_pressed(self, door_id: str) -> Event | None:
        """The request-to-exit button of ``door_id``: open without a badge (lockdown too).
        People must be able to leave: the door opens even when the outbox cannot record
        the event (a full disk; None then, and the status says why)."""
        try:
            event: Event | None = self._record(flush=False, kind="exit", door=door_id)
        except OutboxWriteError:
            event = None
        self.doors[door_id].open_for()
        self.feedback.play(door_id, "exit")
        self._flushed()
        log.info("door %s: opened by its exit button", door_id)
        return event

    def _flushed(self) -> None:
        """After the door moved: the events it recorded unflushed go to the disk, then to
        the publisher (woken only now, so that it never competes with the door's thread
        for the interpreter before the relay)."""
        self.outbox.flush()
        self._wake.set()

    def _re_entry(self, member_id: int, now: float) -> bool:
        """A card going in again within ``anti_passback_s`` of its last entry, with no exit
        seen in between (passed back to someone outside, or a tailgated way out)."""
        window = self.config.anti_passback_s
        if window <= 0:
            return False
        since = self.outbox.inside_since(member_id)
        return since is not None and 0 <= now - since < window

    def _direction(self, door_direction: str, member_id: int, now: float) -> str:
        if door_direction != "toggle":
            return door_direction
        since = self.outbox.inside_since(member_id)
        return "out" if since is not None and now - since < MAX_STAY_S else "in"

    def _ask_server(self, hashed: str, door_id: str) -> Decision:
        if not self.link.connected.is_set():
            return Decision(False, "server_timeout")
        request_id = str(uuid.uuid4())
        waiting = _Waiting(hashed, threading.Event())
        self._waiting[request_id] = waiting
        try:
            request = AccessRequest(
                request_id=request_id, badge_hash=hashed, door=door_id, ts=self._clock()
            )
            if self.link.publish(topics.ACCESS_REQUEST, encode(request)):
                waiting.done.wait(self.config.online_deadline_ms / 1000)
        finally:
            self._waiting.pop(request_id, None)
        response = waiting.response
        if response is None:
            log.warning("server did not answer within %d ms", self.config.online_deadline_ms)
            return Decision(False, "server_timeout")
        entry = response.entry
        if response.granted and entry is not None:
            # The server decided with the same policy; deciding the entry again here gives
            # the day credit this entry uses (and refuses a contradictory answer).
            decision = decide_entry(
                entry, self.access.calendar, self.clock.now(), self.outbox.credit_days
            )
            if decision.granted:
                self.access.learn(entry)
            return decision
        reason = response.reason if response.reason in DENY_REASONS else "server_denied"
        return Decision(False, reason, entry.member_id if entry is not None else None)

    # -- other events --------------------------------------------------------------------------

    def _record(
        self,
        *,
        now: float | None = None,
        presence: tuple[int, bool, float] | None = None,
        command: tuple[str, float] | None = None,
        credit_day: tuple[int, int] | None = None,
        setting: tuple[str, str] | None = None,
        flush: bool = True,
        **fields: Any,
    ) -> Event:
        """Put an event in the outbox (with its presence change) and wake the publisher
        (``flush=False``: the caller flushes it to the disk, see ``Outbox.record``)."""
        ts = self._clock() if now is None else now
        synced = self._synced()
        event = self.outbox.record(
            lambda seq: Event(
                event_id=new_event_id(),
                device_id=self.config.device_id,
                epoch=self.outbox.epoch,
                seq=seq,
                ts=ts,
                clock_synced=synced,
                **fields,
            ),
            offline=not self.link.connected.is_set(),
            presence=presence,
            command=command,
            credit_day=credit_day,
            setting=setting,
            flush=flush,
        )
        if flush:  # otherwise the caller wakes the publisher once it has flushed
            self._wake.set()
        for observe in self.observers:
            try:
                observe(event)
            except Exception:
                log.exception("event observer failed")
        return event

    def _alarm(self, door_id: str, kind: str) -> None:
        self._record(kind=kind, door=door_id)

    def _room_state(self, room_id: str, state: RoomState) -> None:
        if self.outbox.pending >= self.config.outbox_max_events:
            # Full: room changes (the least needed events) are shed, counted and reported;
            # the door's own record (cards, alarms, commands) is always written.
            self.shed_room_changes += 1
            if self.shed_room_changes == 1:
                log.error("outbox full: room changes are no longer recorded")
            return
        self._record(kind="room", room=room_id, room_state=state)

    def _outbox_faults(self) -> list[str]:
        """The outbox's state for the status: 80 % full, room changes shed, a damaged file
        set aside at boot, a write or a flush to the disk that failed."""
        found = [f"unit: {what}" for what in self.outbox.damaged]
        if self.outbox.write_failure is not None:
            found.append(
                f"unit: outbox: {self.outbox.write_failure} "
                f"({self.outbox.unwritten} events not recorded)"
            )
        if self.outbox.flush_failure is not None:
            found.append(f"unit: outbox: {self.outbox.flush_failure} (events kept, not sent)")
        pending, limit = self.outbox.pending, self.config.outbox_max_events
        if pending >= OUTBOX_ALARM_SHARE * limit:
            found.append(
                f"unit: outbox: {pending} of {limit} events waiting for the server "
                f"({100 * pending // limit} % full)"
            )
        if self.shed_room_changes:
            found.append(f"unit: outbox full: {self.shed_room_changes} room changes not recorded")
        return found

    def _tamper_changed(self, where: str | None, closed: bool) -> None:
        """A tamper switch (a door's reader's, or the unit's: None) opened or closed."""
        if closed == (where not in self._tampered):
            return  # no change (a bounce, or the state reported at boot)
        label = f"{where or 'unit'}: tamper switch"
        if closed:
            self._tampered.discard(where)
            self.faults.pop(label, None)
        else:
            self._tampered.add(where)
            self.faults[label] = "open"
            log.warning("tamper switch of %s opened", f"door {where}" if where else "the unit")
        self._record(kind="tamper_cleared" if closed else "tamper", door=where)
        self.link.publish_status()
        self._health_due.set()

    def _reader_fault(self, door_id: str, way: str, message: str | None) -> None:
        label = f"{door_id}: {'exit reader' if way == 'exit' else 'card reader'}"
        if message is None:
            self.faults.pop(label, None)
        else:
            self.faults[label] = message
        faulty = any(key.startswith(f"{door_id}: ") and "reader" in key for key in self.faults)
        self.feedback.set_state("reader_fault", faulty, [door_id])
        self.link.publish_status()
        self._health_due.set()  # the heartbeat tells the degraded condition at once

    def _set_lockdown(self, on: bool) -> None:
        self.lockdown = on
        self.feedback.set_state("lockdown", on)
        self.link.publish_status()
        self._health_due.set()

    def _show_link(self) -> None:
        """The lights show an unreachable server (cards still work)."""
        online = self.link.connected.is_set()
        if online != self._shown_online:
            self._shown_online = online
            self.feedback.set_state("offline", not online)

    # -- MQTT: paho's thread -------------------------------------------------------------------

    def _on_connected(self) -> None:
        self._show_link()
        self._health_due.set()
        self.outbox.resend_all()
        self._wake.set()
        self.lists.resubscribe()

    def _on_message(self, parsed: topics.ParsedTopic, payload: bytes, retained: bool) -> None:
        """Runs on paho's thread: hand over, never block."""
        if parsed.spec in _LIST_SPECS:
            self._lists_in.put((parsed, payload, retained))
        elif parsed.spec is topics.ACCESS_RESPONSE:
            self.handle(parsed, payload, retained)  # one signature check; a member waits
        else:
            self._inbox.put((parsed, payload, retained))

    # -- workers -------------------------------------------------------------------------------

    def _inbox_step(self) -> None:
        try:
            item = self._inbox.get(timeout=1.0)
        except queue.Empty:
            return
        if item is not None:
            self.handle(*item)

    def _lists_step(self) -> None:
        try:
            item = self._lists_in.get(timeout=1.0)
        except queue.Empty:
            item = None
        if item is not None:
            self.handle(*item)
        with self.lists.lock:
            self.lists.tick()

    def _heartbeat_step(self) -> None:
        """Every ``health_interval_s`` (and at once after a connect): the heartbeat."""
        if self.link.connected.is_set():
            self.publish_health()
        self._health_due.wait(self.config.health_interval_s)
        self._health_due.clear()

    def _publish_step(self) -> None:
        self._wake.wait(1.0)
        self._wake.clear()
        self._show_link()
        if self._stop.is_set() or not self.link.connected.is_set():
            return
        room = IN_FLIGHT_LIMIT - self.link.in_flight()
        if room <= 0:
            return  # the link wakes this step when the broker has acknowledged half of it
        limit = min(OUTBOX_BATCH, room)
        now = self._monotonic()
        due = self.outbox.due(now=now, limit=limit)
        sent = []
        for pending in due:
            if not self.link.publish(topics.EVENT, pending.payload()):
                break
            sent.append(pending.seq)
        gone = due[: len(sent)]
        self.ack_timer.sent(
            [p.seq for p in gone if p.attempts == 0], [p.seq for p in gone if p.attempts], now
        )
        self.outbox.mark_sent(sent, now=now, ack_timeout_s=self.ack_timer.timeout_s)
        if len(sent) == len(due) == limit:
            self._wake.set()  # more may wait behind this batch: the next step sees the room

    # -- what server messages mean (a worker's thread, or a test's) ----------------------------

    def handle(self, parsed: topics.ParsedTopic, payload: bytes, retained: bool = False) -> None:
        """Open, check and act on one server -> unit message; refusals are counted."""
        spec = parsed.spec
        try:
            if spec.scope is topics.Scope.DEVICE and parsed.owner != self.config.device_id:
                raise ProtocolError(f"topic of unit {parsed.owner!r}", "other_device")
            if spec.scope is topics.Scope.CENTRE and parsed.owner != self.config.centre:
                raise ProtocolError(f"topic of centre {parsed.owner!r}", "other_centre")
            if spec is topics.COMMAND:
                self._command(payload, retained)
            elif spec is topics.ACK:
                self._ack(payload)
            elif spec is topics.ACCESS_RESPONSE:
                self._access_response(payload)
            elif spec is topics.SERVER_STATUS:
                self._server_status(payload)
            elif spec in _LIST_SPECS:
                with self.lists.lock:
                    if spec is topics.LIST_HEAD:
                        self.lists.on_head(payload)
                    elif spec is topics.LIST_SEGMENT:
                        self.lists.on_segment(payload)
                    else:
                        self.lists.on_delta(payload)
            else:
                raise ProtocolError(f"topic leaf {spec.leaf!r} is not for a unit", "bad_topic")
        except ProtocolError as exc:
            self._reject(exc.reason, spec.leaf, str(exc))

    def _reject(self, reason: str, what: str, detail: str) -> None:
        self.rejected.add(reason)
        log.warning("refused %s (%s): %s", what, reason, detail)

    def _ack(self, payload: bytes) -> None:
        ack = self.verifier.open(Ack, payload)
        self.clock.observe(ack.issued_at)
        if ack.device_id != self.config.device_id:
            raise ProtocolError(f"device_id: ack for {ack.device_id!r}", "other_device")
        if ack.epoch != self.outbox.epoch:
            raise ProtocolError(f"epoch: ack for outbox {ack.epoch}, not this one", "stale")
        now = self._monotonic()
        # Where the server is in this unit's events moves the resends (edge.outbox.Outbox.ack).
        self.outbox.ack(ack.seqs, now=now, wait_s=self.config.ack_timeout_s)
        self.ack_timer.acked([*ack.seqs, *(r.seq for r in ack.rejected)], now)
        moved = 0
        if ack.rejected:
            moved = self.outbox.reject([(r.seq, r.reason) for r in ack.rejected])
            for r in ack.rejected:
                log.warning("server rejected event %d: %s", r.seq, r.reason)
        # The last status told of a backlog that is now gone: say so (fleet view, alarms).
        drained = self._reported_pending > 0 and self.outbox.pending_count() == 0
        if moved or drained:
            self.link.publish_status()

    def _access_response(self, payload: bytes) -> None:
        response = self.verifier.open(AccessResponse, payload)
        self.clock.observe(response.issued_at)
        if response.device_id != self.config.device_id:
            raise ProtocolError(f"device_id: answer for {response.device_id!r}", "other_device")
        waiting = self._waiting.get(response.request_id)
        if waiting is None:
            raise ProtocolError(f"request_id: {response.request_id} was not asked", "not_requested")
        if waiting.badge_hash != response.badge_hash:
            raise ProtocolError("badge_hash: not the badge asked about", "not_requested")
        waiting.response = response
        waiting.done.set()

    def _server_status(self, payload: bytes) -> None:
        status = decode(ServerStatus, payload, limit=SERVER_STATUS_LIMIT)
        if status.state != "online" or status.instance == self._server_instance:
            return
        self._server_instance = status.instance
        log.info("server %s online: sending every pending event now", status.instance)
        self.outbox.resend_all()
        self._wake.set()

    # -- commands ------------------------------------------------------------------------------

    def _command(self, payload: bytes, retained: bool) -> None:
        if retained:
            self._command_result(peek_command_id(payload), "retained", "a retained command")
            return
        try:
            command = self.verifier.open(Command, payload)
        except ProtocolError as exc:
            self._command_result(peek_command_id(payload), exc.reason, str(exc))
            return
        reason, detail = self._check_command(command)
        if reason is None:
            self.outbox.forget_commands_before(self.clock.now() - COMMAND_ID_MARGIN_S)
            try:
                self._execute(command)
            except sqlite3.IntegrityError:  # the same id, recorded meanwhile
                reason, detail = "replayed", "command id already executed"
        if command.device_id == self.config.device_id and reason != "ttl_too_long":
            self.clock.observe(command.issued_at)
        self._command_result(command.command_id, reason, detail)

    def _check_command(self, command: Command) -> tuple[str | None, str]:
        """(refusal reason or None, what is wrong): the contract's rules 3 to 7, in order."""
        if command.device_id != self.config.device_id:
            return "other_device", f"command for {command.device_id!r}"
        ttl_max = self.config.max_command_ttl_s
        if command.expires_at <= command.issued_at or (
            command.expires_at - command.issued_at > ttl_max
        ):
            return "ttl_too_long", f"valid {command.expires_at - command.issued_at:.0f} s"
        if self.outbox.command_seen(command.command_id):
            return "replayed", "command id already executed"
        if self._synced():
            now = self._clock()
            if now > command.expires_at:
                return "expired", f"expired {now - command.expires_at:.1f} s ago"
            if command.issued_at > now + COMMAND_FUTURE_S:
                return "not_yet_valid", f"issued {command.issued_at - now:.0f} s ahead"
        else:
            anchor = self.clock.anchor
            estimate = self.clock.estimate()
            if anchor is None or estimate is None:
                return "clock_unsynced", "no signed time received since boot"
            if command.issued_at < anchor - ttl_max:
                return "clock_unsynced", "issued before the newest signed message"
            if estimate > command.expires_at:
                return "expired", f"expired {estimate - command.expires_at:.1f} s ago"
        if command.door is not None and command.door not in self.doors:
            return "unknown_door", f"no door {command.door!r}"
        return None, ""

    def _execute(self, command: Command) -> None:
        """Carry out a command that passed every rule; its id is recorded as seen first
        (``sqlite3.IntegrityError`` when it already was)."""
        seen = (command.command_id, command.expires_at)
        who = command.requested_by or "server"
        if command.action == "unlock" and command.door is not None:
            self._record(
                command=seen,
                kind="unlock",
                door=command.door,
                reason="remote",
                command_id=command.command_id,
                requested_by=command.requested_by,
            )
            self.doors[command.door].open_for()
            log.info("door %s unlocked by command %s (%s)", command.door, command.command_id, who)
        elif command.action in ("lockdown", "release"):
            on = command.action == "lockdown"
            self._record(
                command=seen,
                setting=(LOCKDOWN, "1" if on else "0"),
                kind=command.action,
                command_id=command.command_id,
                requested_by=command.requested_by,
            )
            self._set_lockdown(on)
            log.warning("%s by command %s (%s)", command.action, command.command_id, who)
        else:
            if not self.outbox.remember_command(*seen):
                raise sqlite3.IntegrityError(command.command_id)
            if command.action == "send_status":
                self.link.publish_status()
            elif command.action == "refetch_list":
                with self.lists.lock:
                    self.lists.refetch()
            log.info("%s by command %s (%s)", command.action, command.command_id, who)

    def _command_result(self, command_id: str | None, reason: str | None, detail: str) -> None:
        if reason is not None:
            self._reject(reason, "command", f"{command_id or '(no id)'}: {detail}")
        if command_id is None:
            return
        result = CommandResult(
            command_id=command_id,
            device_id=self.config.device_id,
            result="executed" if reason is None else "refused",
            reason=reason,
            ts=self._clock(),
        )
        self.link.publish(topics.COMMAND_RESULT, encode(result))


def tune_for_latency() -> None:
    """Keep a card at the door from waiting behind a list install.

    Measured while a 253,000-badge snapshot installs: a full garbage collection walking
    every object of the process stalled other threads up to 48 ms, and the 5 ms interpreter
    switch interval made a decision wait up to that long behind the installer. Objects alive
    after start-up are frozen out of collections, and threads switch every millisecond:
    decision lateness p99 2.4 ms, max 3.1 ms.
    """
    freeze_startup_objects()
    sys.setswitchinterval(0.001)


def make_verifier(config: EdgeConfig) -> Verifier:
    try:
        return Verifier(config.server_public_keys)
    except SigningKeyError as exc:
        raise ConfigError(f"server_public_keys: {exc}") from None


def _read_key(config: EdgeConfig) -> bytes:
    try:
        return parse_key(config.badge_key_file.read_text())
    except OSError as exc:
        raise ConfigError(
            f"badge_key_file: cannot read {config.badge_key_file} ({exc.strerror})"
        ) from None
    except ValueError as exc:
        raise ConfigError(f"badge_key_file: {config.badge_key_file}: {exc}") from None
