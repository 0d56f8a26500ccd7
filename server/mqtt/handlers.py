"""What the server does with each message a unit sends: events, status, access requests and
command results.

paho's thread only parses the topic and puts (spec, owner, payload, retain) on the queue of
the handler worker (``Handlers.put``); decoding, store reads and writes all run on that
worker. Access requests excepted: a member waits at the door, so they never queue behind
the events of a busy step. On SQLite paho's thread answers them at once (a few indexed
reads on its own WAL read connection, which never waits for the writer); on PostgreSQL,
whose reads cross the network and could stall paho's loop, a worker of their own does.
Events go to the
store's writer; the ``Acker`` acknowledges them, signed, once they are committed. A payload
that breaks the contract is counted by its ``ProtocolError`` reason (a fixed set) and
logged with its text, never raised further.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from protocol import topics
from protocol.errors import REJECT_REASONS, ProtocolError
from protocol.messages import (
    MAX_EDGE_PAYLOAD_BYTES,
    AccessRequest,
    AccessResponse,
    CommandResult,
    Event,
    EventHeader,
    Health,
    Rejected,
    Status,
    decode,
)
from protocol.signing import Signer
from protocol.workers import Worker
from server.domain.access import answer
from server.metrics import ServerMetrics
from server.mqtt.acks import AckOrder, signed_acks
from server.store import IngestResult, Store
from server.store.records import StatusResult

log = logging.getLogger(__name__)

M = TypeVar("M")

WAIT_S = 0.5  # how long a worker step waits for input before looking at ``stopping``
MAX_DRAIN = 2000  # messages one step takes from the queue: their events go in one write


class Publish(Protocol):
    def __call__(
        self,
        spec: topics.TopicSpec,
        owner: str,
        payload: bytes,
        *,
        index: int | None = None,
        expiry_s: int | None = None,
    ) -> bool: ...


Handler = Callable[[str, bytes, bool], None]
HANDLED = {  # each topic a unit publishes on, and the Handlers method that reads it
    topics.STATUS: "status",
    topics.HEALTH: "health",
    topics.EVENT: "event",
    topics.ACCESS_REQUEST: "access_request",
    topics.COMMAND_RESULT: "command_result",
}
UnitEvents = list[tuple[str, list[Event], float]]  # (device_id, its events, received_at)


class Rejections:
    """Messages refused, counted by ``ProtocolError.reason`` and nothing else."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def add(self, reason: str, where: str, text: str) -> None:
        if reason not in REJECT_REASONS:  # never a key a sender chose
            reason = "malformed"
        with self._lock:
            self._counts[reason] += 1
        log.warning("rejected message on %s (%s): %s", where, reason, text)

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def total(self) -> int:
        with self._lock:
            return sum(self._counts.values())


class Acker:
    """Publishes signed acks, one per (unit, epoch) for everything committed meanwhile.

    Acks wait for the commit (the unit forgets what is acked); a worker of its own keeps
    the writer from ever waiting on the network. ``forward``, when given, is offered each
    step's orders first (the events receiver's process signs and publishes them there, off
    this process's interpreter); when it declines, they are signed and published here.
    """

    def __init__(
        self,
        signer: Signer,
        publish: Publish,
        forward: Callable[[list[AckOrder]], bool] | None = None,
    ) -> None:
        self._signer = signer
        self._publish = publish
        self.forward = forward
        self._queue: queue.SimpleQueue[tuple[str, str, list[int], list[Rejected]] | None] = (
            queue.SimpleQueue()
        )
        self.sent = 0
        self.forwarded = 0  # of ``sent``: orders handed to ``forward``
        self.worker = Worker("acker", self._step)

    def put(
        self,
        device_id: str,
        epoch: str,
        seqs: Iterable[int] = (),
        rejected: Iterable[Rejected] = (),
    ) -> None:
        self._queue.put((device_id, epoch, list(seqs), list(rejected)))

    def start(self) -> None:
        self.worker.start()

    def stop(self) -> None:
        self.worker.stopping.set()
        self._queue.put(None)  # wakes the step at once
        self.worker.stop()
        self._step(wait=False)  # what was committed last still gets its ack if we can

    def _step(self, *, wait: bool = True) -> None:
        try:
            items = [self._queue.get(timeout=WAIT_S if wait else 0)]
        except queue.Empty:
            return
        while True:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                break
        acked: dict[tuple[str, str], set[int]] = {}
        refused: dict[tuple[str, str], dict[int, str]] = {}
        for item in items:
            if item is None:
                continue
            device_id, epoch, seqs, rejected = item
            acked.setdefault((device_id, epoch), set()).update(seqs)
            target = refused.setdefault((device_id, epoch), {})
            for r in rejected:
                target[r.seq] = r.reason
        orders: list[AckOrder] = [
            (device_id, epoch, sorted(seqs), sorted(refused[(device_id, epoch)].items()))
            for (device_id, epoch), seqs in acked.items()
        ]
        if not orders:
            return
        if self.forward is not None and self.forward(orders):
            self.sent += len(orders)
            self.forwarded += len(orders)
            return
        for order in orders:
            self._send(order)

    def _send(self, order: AckOrder) -> None:
        for payload in signed_acks(self._signer, order):
            if self._publish(topics.ACK, order[0], payload):
                self.sent += 1
            else:  # the unit resends after its back-off, and we ack it then
                log.info("ack for %s not sent: no broker", order[0])


@dataclass
class PendingCommand:
    """An API call waiting for a unit's CommandResult."""

    done: threading.Event = field(default_factory=threading.Event)
    result: CommandResult | None = None


class Handlers:
    """The handler worker and the server's answer to each topic a unit publishes on."""

    def __init__(
        self,
        store: Store,
        signer: Signer,
        publish: Publish,
        rejections: Rejections | None = None,
        metrics: ServerMetrics | None = None,
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.signer = signer
        self._publish = publish
        self.rejections = rejections or Rejections()
        self.acker = Acker(signer, publish)
        # Members whose day credits changed (the bridge refreshes their list entries).
        self.on_credit: Callable[[list[int]], None] = lambda member_ids: None
        self._queue: queue.SimpleQueue[tuple[topics.TopicSpec, str, bytes, bool] | None] = (
            queue.SimpleQueue()
        )
        self._pending: dict[str, PendingCommand] = {}
        self._pending_lock = threading.Lock()
        self.handled = 0
        # Events decoded in this step, written together when it ends (``_flush_events``).
        self._events: list[tuple[str, Event, float]] | None = None
        # Events waiting for the write on its way to the disk to finish (group commit).
        self._held: list[tuple[str, Event, float]] = []
        self._held_lock = threading.Lock()
        self._in_flight = 0
        # Access requests: answered on the thread that receives them (``put``) on SQLite,
        # else by a worker of their own; never queued behind events.
        self.answer_at_once = store.engine == "sqlite"
        self._asks: queue.Queue[tuple[str, bytes] | None] = queue.Queue()
        self.access_worker = (
            None if self.answer_at_once else Worker("mqtt-access", self._access_step)
        )
        self.worker = Worker("mqtt-handler", self._step)

    def table(self) -> dict[topics.TopicSpec, Handler]:
        """Which handler reads which topic; the bridge subscribes to exactly these."""
        return {spec: getattr(self, name) for spec, name in HANDLED.items()}

    @property
    def workers(self) -> list[Worker]:
        access = [self.access_worker] if self.access_worker is not None else []
        return [self.worker, *access, self.acker.worker]

    def start(self) -> None:
        self.acker.start()
        if self.access_worker is not None:
            self.access_worker.start()
        self.worker.start()

    def stop(self) -> None:
        if self.access_worker is not None:
            self.access_worker.stopping.set()
            self._asks.put(None)
            self.access_worker.stop()
        self.worker.stopping.set()
        self._queue.put(None)  # wakes the step at once
        self.worker.stop()
        self._submit_held()  # nothing waits for a write that may not come
        self.acker.stop()

    # -- paho's thread: hand over, never block ------------------------------------------------

    def put(self, spec: topics.TopicSpec, owner: str, payload: bytes, retain: bool) -> None:
        if spec is topics.ACCESS_REQUEST:  # a member waits at the door
            if self.answer_at_once:
                self.answer_access_request(owner, payload)
            else:
                self._asks.put((owner, payload))
            return
        self._queue.put((spec, owner, payload, retain))

    @property
    def backlog(self) -> int:
        return self._queue.qsize()

    # -- the handler worker --------------------------------------------------------------------

    def _step(self) -> None:
        """Take what is queued (up to MAX_DRAIN messages) and handle it in order; the events
        among them go to the writer as one write, not one write each."""
        try:
            items = [self._queue.get(timeout=WAIT_S)]
        except queue.Empty:
            return
        while len(items) < MAX_DRAIN:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                break
        self._events = []
        try:
            for item in items:
                if item is not None:
                    self.handle(*item)
        finally:
            self._flush_events()

    def handle(self, spec: topics.TopicSpec, owner: str, payload: bytes, retain: bool) -> None:
        """Decode and act on one message; a contract breach is counted and logged."""
        if spec is not topics.EVENT:
            self._flush_events(hold=False)  # what came before this message is written first
        name = HANDLED.get(spec)
        handler = None if name is None else getattr(self, name)
        try:
            if handler is None:
                raise ProtocolError(f"leaf {spec.leaf!r} is not one the server reads", "bad_topic")
            handler(owner, payload, retain)
        except ProtocolError as exc:
            self.rejections.add(exc.reason, topics.topic(spec, owner), str(exc))
        finally:
            self.handled += 1

    # -- events --------------------------------------------------------------------------------

    def event(self, device_id: str, payload: bytes, retain: bool = False) -> None:
        try:
            event = decode(Event, payload, limit=MAX_EDGE_PAYLOAD_BYTES)
            if event.device_id != device_id:
                raise ProtocolError(
                    f"device_id: {event.device_id!r} does not match the topic", "device_mismatch"
                )
        except ProtocolError as exc:
            self._nack(device_id, payload, exc)
            raise
        if self._events is None:  # not in a worker step: written at once
            self._events = [(device_id, event, time.time())]
            self._flush_events(hold=False)
            self._events = None
        else:
            self._events.append((device_id, event, time.time()))

    def _flush_events(self, *, hold: bool = True) -> None:
        """Hand the events of this step to the writer: one write, one Future, each unit's
        run of events together (a unit's events keep their order).

        Group commit: while a write of events is still on its way to the disk, new events
        wait and go in the next one (``hold``), so a busy writer gets bigger writes (what
        a write reads and recounts once is shared by more events) instead of a queue of
        small ones. Messages of other kinds flush at once (``hold=False``), after the
        events that came before them."""
        if not self._events:
            if not hold:
                self._submit_held()
            return
        pending, self._events = self._events, []
        with self._held_lock:
            self._held.extend(pending)
            if hold and self._in_flight:
                return  # goes with the next write, when this one is committed
        self._submit_held()

    def _submit_held(self) -> None:
        with self._held_lock:
            pending, self._held = self._held, []
            if not pending:
                return
            self._in_flight += 1
        by_unit: dict[tuple[str, str], tuple[list[Event], float]] = {}
        for device_id, event, received_at in pending:  # an ack names one outbox epoch
            by_unit.setdefault((device_id, event.epoch), ([], received_at))[0].append(event)
        items: UnitEvents = [(unit, events, at) for (unit, _), (events, at) in by_unit.items()]
        future = self.store.ingest_many(items)
        future.add_done_callback(lambda f: self._committed_many(f, items))

    def _committed_many(
        self, future: Future[list[IngestResult | Exception]], items: UnitEvents
    ) -> None:
        """Writer thread: the events are on disk, the units may forget them; the events
        held meanwhile go to the writer now."""
        with self._held_lock:
            self._in_flight -= 1
        self._submit_held()
        error = future.exception()
        if error is not None:
            log.error("events not stored, the units will resend: %s", error)
            return
        for (_, events, received_at), result in zip(items, future.result(), strict=True):
            if isinstance(result, Exception):
                continue  # logged by the store; the unit resends
            self._acknowledge(result)
            if self.metrics is not None and result.new:
                self._count_new(self.metrics, events, result, received_at)

    def _nack(self, device_id: str, payload: bytes, exc: ProtocolError) -> None:
        """An event we can name by (epoch, seq) is refused for good in the next ack."""
        try:
            header = decode(EventHeader, payload, limit=MAX_EDGE_PAYLOAD_BYTES)
        except ProtocolError:
            return  # cannot be named: only counted and logged
        self.acker.put(device_id, header.epoch, rejected=[Rejected(header.seq, exc.reason)])

    def _acknowledge(self, result: IngestResult) -> None:
        self.acker.put(result.device_id, result.epoch, result.seqs)
        if result.credited:
            self.on_credit(list(result.credited))  # their entries' credits changed

    def _count_new(
        self, metrics: ServerMetrics, events: list[Event], result: IngestResult, received: float
    ) -> None:
        """Count the events stored for the first time (not resends)."""
        for event in events:
            if event.event_id in result.new_ids:
                late = event.historical or received - event.ts > self.store.late_event_s
                metrics.event_stored(event, received, historical=late)

    # -- status --------------------------------------------------------------------------------

    def status(self, device_id: str, payload: bytes, retain: bool = False) -> None:
        if not payload:
            return  # a cleared retained status
        status = self._from_registered_unit(Status, device_id, payload)
        where = topics.topic(topics.STATUS, device_id)

        def stored(future: Future[StatusResult]) -> None:
            error = future.exception()
            if error is not None:
                log.error("status of %s not stored: %s", device_id, error)
                return
            result = future.result()
            if not result.known:
                self.rejections.add("unknown_device", where, "unit left the registry")
            for room in result.rooms_taken:
                self.rejections.add(
                    "room_taken", where, f"room {room!r} is held by another unit of the centre"
                )

        # A retained copy is the broker's, replayed when we subscribe: not the unit heard now.
        self.store.record_status(status, time.time(), retained=retain).add_done_callback(stored)

    def health(self, device_id: str, payload: bytes, retain: bool = False) -> None:
        """A unit's heartbeat: kept as its last health; a live one closes ``unit_silent``."""
        if not payload:
            return  # a cleared retained heartbeat
        health = self._from_registered_unit(Health, device_id, payload)

        def stored(future: Future[bool]) -> None:
            if future.exception() is not None:
                log.error("health of %s not stored: %s", device_id, future.exception())

        self.store.record_health(health, time.time(), retained=retain).add_done_callback(stored)

    def _from_registered_unit(self, cls: type[M], device_id: str, payload: bytes) -> M:
        """Decode a unit's status or heartbeat: its own, from a unit in the registry."""
        message = decode(cls, payload, limit=MAX_EDGE_PAYLOAD_BYTES)
        said = message.device_id  # type: ignore[attr-defined]
        if said != device_id:
            raise ProtocolError(f"device_id: {said!r} does not match the topic", "device_mismatch")
        if not self.store.device_known(device_id):
            raise ProtocolError(
                f"unit {device_id!r} is not in the registry (PUT /api/devices/{device_id})",
                "unknown_device",
            )
        return message

    # -- online access -------------------------------------------------------------------------

    def answer_access_request(self, device_id: str, payload: bytes) -> None:
        """Answer an access request on the calling thread (paho's): a member waits at the
        door, and the bare MQTT echo a round trip is measured against answers there too.

        A refused payload is counted like any other; an unexpected error is logged and the
        request goes to the handler worker, which tries once more and counts the error in
        /healthz if it fails again."""
        try:
            self.access_request(device_id, payload)
        except ProtocolError as exc:
            self.rejections.add(
                exc.reason, topics.topic(topics.ACCESS_REQUEST, device_id), str(exc)
            )
        except Exception:
            log.exception("access request of %s failed on the network thread", device_id)
            self._queue.put((topics.ACCESS_REQUEST, device_id, payload, False))

    def _access_step(self) -> None:
        """The access worker (PostgreSQL): one request at a time, as they come."""
        try:
            item = self._asks.get(timeout=WAIT_S)
        except queue.Empty:
            return
        if item is None:
            return
        device_id, payload = item
        try:
            self.access_request(device_id, payload)
        except ProtocolError as exc:
            where = topics.topic(topics.ACCESS_REQUEST, device_id)
            self.rejections.add(exc.reason, where, str(exc))

    def access_request(self, device_id: str, payload: bytes, retain: bool = False) -> None:
        request = decode(AccessRequest, payload, limit=MAX_EDGE_PAYLOAD_BYTES)
        now = time.time()
        centre_id, record, entry = self.store.asked_card(device_id, request.badge_hash, now)
        reason, entry = answer(
            record, centre_id, entry, lambda: self.store.centre_calendar(centre_id or "", now), now
        )
        response = AccessResponse(
            request_id=request.request_id,
            device_id=device_id,
            badge_hash=request.badge_hash,
            granted=entry is not None,
            reason=reason,
            entry=entry,
            issued_at=now,
        )
        self._publish(topics.ACCESS_RESPONSE, device_id, self.signer.sign(response))

    # -- commands ------------------------------------------------------------------------------

    def expect_result(self, command_id: str) -> PendingCommand:
        """Register before publishing: the answer may come back at once."""
        pending = PendingCommand()
        with self._pending_lock:
            self._pending[command_id] = pending
        return pending

    def forget(self, command_id: str) -> None:
        with self._pending_lock:
            self._pending.pop(command_id, None)

    def command_result(self, device_id: str, payload: bytes, retain: bool = False) -> None:
        result = decode(CommandResult, payload, limit=MAX_EDGE_PAYLOAD_BYTES)
        if result.device_id != device_id:
            raise ProtocolError(
                f"device_id: {result.device_id!r} does not match the topic", "device_mismatch"
            )
        where = topics.topic(topics.COMMAND_RESULT, device_id)

        def stored(future: Future[bool]) -> None:
            error = future.exception()
            if error is not None:
                log.error("result of command %s not stored: %s", result.command_id, error)
                return
            if not future.result():
                self.rejections.add(
                    "not_requested", where, f"command {result.command_id} was not sent to it"
                )
                return
            with self._pending_lock:
                pending = self._pending.get(result.command_id)
            if pending is not None:
                pending.result = result
                pending.done.set()

        self.store.record_command_result(device_id, result, time.time()).add_done_callback(stored)
