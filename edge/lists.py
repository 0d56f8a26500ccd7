"""The unit's side of access lists v2: a signed snapshot in segments, then cumulative deltas.

Runs on the list installer worker (never on paho's thread): it receives the raw payloads
of list/head, list/segment/<i> and list/delta of the unit's centre, opens each with the
server's keys, and installs a snapshot only when all its segments are in (swap under the
access lock). Each segment is packed as it arrives (``edge.access.Part``) and its raw
signed payload staged in the list file; once all are in, the staged payloads become the
saved list in one transaction, then the list in memory is swapped. The saved payloads are
verified again at boot, so a unit restarts with its list even without network, and a
unit stopped at any point restarts with one whole list, the old or the new.

- Head of another version than the installed snapshot (newer or older: the server's word
  wins): subscribe to the segments, collect that version's, install, unsubscribe, then
  apply the retained delta if its base is the new snapshot.
- Delta over the installed snapshot and newer than the applied one: apply (cumulative).
  Delta over another base: remember it; the head for that base triggers the fetch; if no
  head came within ``REFETCH_AFTER_S``, subscribe to list/head again (the broker re-delivers
  the retained head) = ask for the snapshot.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading
import time
from collections.abc import Callable

import msgspec

from edge.access import LocalAccess, Part, signed_part
from edge.outbox import Outbox
from protocol import topics
from protocol.errors import ProtocolError
from protocol.messages import ListDelta, ListHead, ListSegment
from protocol.signing import Envelope, Verifier

log = logging.getLogger(__name__)

REFETCH_AFTER_S = 10.0

_envelope = msgspec.msgpack.Decoder(Envelope)


def _load_libc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc: nothing to hand back
        return None


_malloc_trim = _load_libc_trim()


def release_memory() -> None:
    """Hand the C heap's free pages back to the system after an install.

    A snapshot passes through megabytes of short-lived buffers (payloads, decoded segments);
    glibc keeps the pages they freed, which at 250,000 badges left the unit ~17 MB larger
    than it needs to be until the next install reused them.
    """
    if _malloc_trim is not None:
        _malloc_trim(0)


def packed(segment: ListSegment, payload: bytes) -> Part:
    """An opened segment packed with its entries' bytes as the server signed them."""
    return signed_part(segment, _envelope.decode(payload).body)


class ListSync:
    """Assembles and installs the centre's list; not thread-safe: one worker calls it."""

    def __init__(
        self,
        *,
        centre: str,
        verifier: Verifier,
        access: LocalAccess,
        outbox: Outbox,
        subscribe: Callable[[str], None],
        unsubscribe: Callable[[str], None],
        observe: Callable[[float], None] = lambda issued_at: None,
        on_installed: Callable[[], None] = lambda: None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.centre = centre
        self.verifier = verifier
        self.access = access
        self.outbox = outbox
        self._subscribe = subscribe
        self._unsubscribe = unsubscribe
        self._observe = observe
        self._on_installed = on_installed
        self._monotonic = monotonic
        self.segment_topic = topics.segment_subscription(centre)
        self.head_topic = topics.topic(topics.LIST_HEAD, centre)
        self._head_payload: bytes | None = None  # the head being fetched, saved with it
        self.fetching: ListHead | None = None
        # index -> the segment packed (its raw signed payload is staged in the outbox's
        # list file): neither decoded entries nor payloads are kept in memory
        self._collected: dict[int, Part] = {}
        self._delta: tuple[ListDelta, bytes] | None = None  # the newest delta seen
        self._waiting_head_since: float | None = None
        self._refetch = False  # fetch the next head's snapshot even if it is installed
        self.lock = threading.Lock()  # held while handling, so a reconnect reads a stable state

    # -- boot ----------------------------------------------------------------------------------

    def load(self) -> bool:
        """Rebuild the list from the payloads saved in the outbox, verified again."""
        raw_segments, raw_delta = self.outbox.load_list()
        if not raw_segments:
            return False
        parts: list[Part] = []
        seen: list[tuple[int, int, int]] = []  # (index, version, segments) of each
        try:
            for raw in raw_segments:  # one decoded segment at a time: only parts are kept
                segment = self._open(ListSegment, raw)
                seen.append((segment.index, segment.version, segment.segments))
                parts.append(packed(segment, raw))
        except ProtocolError as exc:
            log.error(
                "saved access list refused (%s): %s; waiting for the server's", exc.reason, exc
            )
            return False
        del raw_segments
        _, version, count = seen[0]
        complete = sorted(i for i, _, _ in seen) == list(range(count)) and all(
            v == version and n == count for _, v, n in seen
        )
        if not complete:
            log.error("saved access list is incomplete; waiting for the server's")
            return False
        calendar = None
        raw_head = self.outbox.load_head()
        if raw_head is not None:
            try:
                head = self._open(ListHead, raw_head)
            except ProtocolError as exc:
                log.error("saved list head refused (%s): %s", exc.reason, exc)
            else:
                if head.version == version:
                    calendar = head.calendar
        self.access.install(version, parts, calendar=calendar)
        del parts
        release_memory()
        if raw_delta is not None:
            try:
                delta = self._open(ListDelta, raw_delta)
            except ProtocolError as exc:
                log.error("saved list delta refused (%s): %s", exc.reason, exc)
            else:
                self.access.apply(delta)
        log.info(
            "access list v%s loaded from the outbox (%d badges)",
            self.access.version,
            len(self.access),
        )
        return True

    # -- messages ------------------------------------------------------------------------------

    def _open(self, cls: type, payload: bytes):  # type: ignore[no-untyped-def]
        body = self.verifier.open(cls, payload)
        if body.centre != self.centre:
            raise ProtocolError(f"centre: list of centre {body.centre!r}", "other_centre")
        return body

    def on_head(self, payload: bytes) -> None:
        head: ListHead = self._open(ListHead, payload)
        self._observe(head.issued_at)
        if head.version == self.access.snapshot_version and not self._refetch:
            self._waiting_head_since = None
            if self._delta is not None and self._delta[0].base != head.version:
                self._delta = None  # a stale retained delta: the head says this is current
            if self.fetching is not None:
                self._stop_fetching()
            return
        if (
            self.fetching is not None
            and self.fetching.version == head.version
            and self.fetching.segments == head.segments
        ):
            return  # already collecting it
        log.info(
            "list head v%d (%d badges in %d segments): fetching",
            head.version,
            head.entries,
            head.segments,
        )
        if self.fetching is not None:
            # Its segments may have gone by while we collected another version: subscribing
            # again makes the broker deliver the retained ones.
            self._unsubscribe(self.segment_topic)
        self._subscribe(self.segment_topic)
        self.fetching = head
        self._head_payload = payload
        self._collected = {}
        self.outbox.clear_staged()
        self._waiting_head_since = None
        self._refetch = False

    def on_segment(self, payload: bytes) -> None:
        segment: ListSegment = self._open(ListSegment, payload)
        head = self.fetching
        if head is None or segment.version != head.version or segment.segments != head.segments:
            return  # a retained segment of another snapshot: not what we fetch
        self.outbox.stage_segment(segment.index, payload)
        self._collected[segment.index] = packed(segment, payload)
        del segment  # only the packed part stays while the other segments come
        if len(self._collected) == head.segments:
            self._install(head)

    def _install(self, head: ListHead) -> None:
        parts = [self._collected[i] for i in range(head.segments)]
        # Saved first: a unit that stops after this restarts with the new list whole.
        self.outbox.save_snapshot(None, self._head_payload)
        self.access.install(head.version, parts, calendar=head.calendar)
        self._stop_fetching()
        del parts
        release_memory()
        log.info("access list v%d installed (%d badges)", head.version, len(self.access))
        if self._delta is not None and self._delta[0].base == head.version:
            self._apply(*self._delta)
        self._on_installed()

    def _stop_fetching(self) -> None:
        self.fetching = None
        self._collected = {}
        self._unsubscribe(self.segment_topic)

    def on_delta(self, payload: bytes) -> None:
        delta: ListDelta = self._open(ListDelta, payload)
        self._observe(delta.issued_at)
        if delta.base == self.access.snapshot_version:
            self._waiting_head_since = None
            if self._apply(delta, payload):
                self._on_installed()
            return
        if self._delta is None or delta.version >= self._delta[0].version:
            self._delta = (delta, payload)
        if self.fetching is not None and self.fetching.version == delta.base:
            return  # its snapshot is on its way
        if self._waiting_head_since is None:
            log.info(
                "list delta over v%d, not the installed snapshot: waiting for its head", delta.base
            )
            self._waiting_head_since = self._monotonic()

    def _apply(self, delta: ListDelta, payload: bytes) -> bool:
        self._delta = (delta, payload)
        if not self.access.apply(delta):
            return False
        self.outbox.save_delta(payload)
        log.info(
            "list delta v%d applied over v%d (+%d -%d)",
            delta.version,
            delta.base,
            len(delta.upsert),
            len(delta.remove),
        )
        return True

    def tick(self) -> None:
        """No head within REFETCH_AFTER_S of a foreign delta: ask for the head again."""
        since = self._waiting_head_since
        if since is None or self.fetching is not None:
            return
        if self._monotonic() - since >= REFETCH_AFTER_S:
            log.warning("no list head came for the delta's base: asking for the snapshot")
            self._waiting_head_since = self._monotonic()
            self._unsubscribe(self.head_topic)
            self._subscribe(self.head_topic)

    def refetch(self) -> None:
        """Fetch the centre's snapshot again, even the installed version (by command): ask
        the broker for the retained head again, as ``tick`` does."""
        log.info("fetching the access list again")
        self._refetch = True
        if self.fetching is not None:
            self._stop_fetching()
        self._unsubscribe(self.head_topic)
        self._subscribe(self.head_topic)

    def resubscribe(self) -> None:
        """After a reconnect: keep collecting segments if a fetch was under way."""
        if self.fetching is not None:
            self._subscribe(self.segment_topic)
