"""What the server does with each message a unit sends: events, status, access requests.

Handlers run on paho's thread, so they only decode and hand over: events go to the store's
writer queue and are acknowledged by the ``Acker`` once committed. A payload that breaks
the contract raises ``ProtocolError``; the bridge logs and counts it.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future

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
from server.mqtt.lists import AccessListPublisher
from server.store import IngestResult, NotFound, Store

log = logging.getLogger(__name__)

Publish = Callable[[topics.TopicSpec, str, bytes], bool]
Handler = Callable[[str, bytes], None]


class Acker(threading.Thread):
    """Publishes acks, one message per unit for everything committed meanwhile.

    Acks wait for the commit (the unit forgets what is acked), and a thread of their own
    keeps the writer from ever waiting on the network.
    """

    def __init__(self, publish: Publish) -> None:
        super().__init__(name="acker", daemon=True)
        self._publish = publish
        self._queue: queue.Queue[tuple[str, list[int]] | None] = queue.Queue()
        self.sent = 0

    def put(self, device_id: str, seqs: list[int]) -> None:
        self._queue.put((device_id, seqs))

    def stop(self) -> None:
        self._queue.put(None)
        self.join(timeout=5)

    def run(self) -> None:
        stopping = False
        while not stopping:
            items = [self._queue.get()]
            while True:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            pending: dict[str, list[int]] = {}
            for item in items:
                if item is None:
                    stopping = True
                else:
                    pending.setdefault(item[0], []).extend(item[1])
            for device_id, seqs in pending.items():
                if self._publish(topics.ACK, device_id, encode(Ack(sorted(seqs)))):
                    self.sent += 1


class Handlers:
    """The server's answer to each topic a unit publishes on, as a dispatch table."""

    def __init__(self, store: Store, publish: Publish, lists: AccessListPublisher) -> None:
        self.store = store
        self._publish = publish
        self.lists = lists
        self.acker = Acker(publish)

    def table(self) -> dict[topics.TopicSpec, Handler]:
        """Which handler reads which topic; the bridge subscribes to exactly these."""
        return {
            topics.EVENT: self.event,
            topics.STATUS: self.status,
            topics.ACCESS_REQUEST: self.access_request,
        }

    def event(self, device_id: str, payload: bytes) -> None:
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
        self.acker.put(result.device_id, result.seqs)

    def status(self, device_id: str, payload: bytes) -> None:
        if not payload:
            return  # a cleared retained status
        status = decode(Status, payload)
        if status.device_id != device_id:
            raise ProtocolError(f"device_id: {status.device_id!r} does not match the topic")
        future = self.store.record_status(status, time.time())
        published = self.lists.published.get(device_id)
        # A unit that came online with another list than the last one sent gets it again.
        if status.state == "online" and (
            published is None or status.access_list_version != published
        ):
            future.add_done_callback(lambda _: self.lists.invalidate([device_id]))

    def access_request(self, device_id: str, payload: bytes) -> None:
        request = decode(AccessRequest, payload)
        try:
            centre_id = self.store.device(device_id)["centre_id"]
        except NotFound:
            centre_id = None
        grant, reason = self.store.lookup_grant(request.badge_hash, centre_id, time.time())
        response = AccessResponse(request.request_id, grant is not None, reason, grant)
        self._publish(topics.ACCESS_RESPONSE, device_id, encode(response))
