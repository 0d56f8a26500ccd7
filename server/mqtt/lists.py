"""Access lists v2: keeps each centre's signed, retained list in step with members and badges.

One list per centre (docs/protocol.md, "Access lists"). A change only marks centres dirty;
one worker waits for marks, lets a burst settle (``COALESCE_S`` without a new mark, at most
``MAX_COALESCE_S``), then for each dirty centre compiles its entries and diffs them with
what was last published:

- nothing changed: nothing is published;
- a few changes: a cumulative ``ListDelta(base=S, version=V')`` over snapshot S, retained
  on ``list/delta``;
- no snapshot yet, or more than ``MAX_DELTA_ENTRIES`` changes since S: a new snapshot S':
  its segments (retained), then empty retained payloads over the old snapshot's extra
  segments, then the ``ListHead``, then the empty delta ``(base=S', version=S')``.

What is published is stored first (``list_state``), so a restart diffs against it and
republishes nothing that did not change; versions are ``max(previous + 1, now in ms)`` and
never go back. ``republish`` (on a broker reconnect: retained copies may be gone) sends the
stored state again with the same versions. A unit's reconnect or status publishes nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import date
from typing import Protocol

from protocol import topics
from protocol.lists import MAX_DELTA_ENTRIES, cumulative_changes, cut_snapshot, diff
from protocol.messages import CentreHours, ListDelta, ListEntry
from protocol.signing import Signer
from protocol.workers import Worker
from server.store import NotFound, Store
from server.store.records import CentreListState

log = logging.getLogger(__name__)

COALESCE_S = 0.05  # quiet time that ends a burst of changes
MAX_COALESCE_S = 1.0  # a steady stream of changes still publishes this often
RETRY_S = 1.0


class PublishCentre(Protocol):
    """``Bridge.publish`` on a centre's topic: False when the broker is away."""

    def __call__(
        self, spec: topics.TopicSpec, owner: str, payload: bytes, *, index: int | None = None
    ) -> bool: ...


class ListNotPublished(Exception):
    """The broker took not every message of a centre's list; it is sent again later."""


class AccessListPublisher(Worker):
    """The worker that compiles, diffs, signs and publishes the centres' access lists."""

    def __init__(
        self,
        store: Store,
        signer: Signer,
        publish: PublishCentre,
        *,
        coalesce_s: float = COALESCE_S,
        retry_s: float = RETRY_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__("list-publisher", self._step)
        self.store = store
        self.signer = signer
        self._publish = publish
        self._coalesce_s = coalesce_s
        self._retry_s = retry_s
        self._clock = clock
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._wake.set()
        # Centre -> the members whose entries to refresh; None: recompile the whole centre.
        self._dirty: dict[str, set[int] | None] = {}
        self._all_members: set[int] = set()  # members of every centre to refresh
        self._fresh: set[str] = set()  # centres to publish as new snapshots, changed or not
        # The first pass compiles every centre: a change made while the server was down
        # (an import, a restored database) goes out; an unchanged list is not sent again.
        self._all = True
        self._republish_all = False
        # Centres whose stored state the broker may not hold entirely (a publish failed),
        # with the segment count of the snapshot published before it, to clear.
        self._unpublished: dict[str, int] = {}
        self._states: dict[str, CentreListState] = {}
        # Each centre's entries as the units hold them: the snapshot with the delta applied.
        self._current: dict[str, dict[bytes, ListEntry]] = {}
        self.snapshots = 0
        self._checked_day: int | None = None  # the day the lists were last compiled for
        self.deltas = 0
        self.republished = 0
        self.messages = 0
        self.passes = 0  # worker passes done: tests wait on it to see that nothing was sent

    # -- what other threads call ---------------------------------------------------------------

    def invalidate(
        self, centre_ids: Iterable[str] | None = None, member_ids: Iterable[int] | None = None
    ) -> None:
        """Bring these centres' lists up to date (every centre when None); returns at once.

        With ``member_ids``, only those members' badges changed: their entries alone are
        compiled again. Without, the whole centre is.
        """
        members = None if member_ids is None else set(member_ids)
        with self._lock:
            if centre_ids is None and members is None:
                self._all = True
            elif centre_ids is None:
                self._all_members |= members  # type: ignore[arg-type]
            else:
                for centre_id in centre_ids:
                    _merge(self._dirty, centre_id, members)
        self._wake.set()

    def snapshot(self, centre_ids: Iterable[str] | None = None) -> None:
        """Publish these centres' lists (every centre when None) as new snapshots, changed
        or not: after an erasure, no stored or retained list still names the member's cards
        (a delta would, in its removals). Returns at once."""
        if centre_ids is None:
            centre_ids = [c["id"] for c in self.store.centres()]
        with self._lock:
            self._fresh.update(centre_ids)
        self._wake.set()

    def republish(self) -> None:
        """Send every centre's stored list again, same versions (after a broker reconnect)."""
        with self._lock:
            self._republish_all = True
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        self.stopping.set()
        self._wake.set()
        super().stop(timeout)

    def state(self, centre_id: str) -> CentreListState | None:
        """The centre's list as last published (or being published)."""
        state = self._states.get(centre_id)
        return state if state is not None else self.store.list_state(centre_id)

    # -- the worker ----------------------------------------------------------------------------

    def _step(self) -> None:
        woken = self._wake.wait(self._retry_s if self._unpublished else CALENDAR_CHECK_S)
        if self.stopping.is_set():
            return
        today = date.fromtimestamp(self._clock()).toordinal()
        if today != self._checked_day:
            # A new day: every centre compiled again, so that the calendar's horizon, the
            # plans that ended and the credits' recent days reach the units.
            if self._checked_day is not None:
                with self._lock:
                    self._all = True
            self._checked_day = today
        elif not woken and not self._unpublished:
            return
        self._settle()
        with self._lock:
            self._wake.clear()
            every, dirty, again = self._all, self._dirty, self._republish_all
            all_members, fresh = self._all_members, self._fresh
            self._all, self._dirty, self._republish_all = False, {}, False
            self._all_members, self._fresh = set(), set()
        if every or all_members:
            for centre in self.store.centres():
                _merge(dirty, centre["id"], None if every else all_members)
        for centre_id in fresh:
            _merge(dirty, centre_id, None)
        todo = sorted(dirty)
        try:
            while todo:
                self._refresh(todo[0], dirty[todo[0]], snapshot=todo[0] in fresh)
                todo.pop(0)
        except Exception:
            with self._lock:
                for centre_id in todo:  # tried again after the worker's back-off
                    _merge(self._dirty, centre_id, dirty[centre_id])
                self._fresh |= fresh & set(todo)
                self._republish_all |= again
            self._wake.set()
            raise
        if again:
            for centre_id in self.store.list_state_centres():
                self._unpublished.setdefault(centre_id, 0)
        for centre_id in sorted(self._unpublished):
            self._send_again(centre_id)
        self.passes += 1

    def _settle(self) -> None:
        """Let a burst of changes end: until ``coalesce_s`` pass without a new one (an API
        call each ~10 ms makes one list), but never longer than ``MAX_COALESCE_S``."""
        deadline = time.monotonic() + MAX_COALESCE_S
        while not self.stopping.is_set():
            self._wake.clear()
            left = deadline - time.monotonic()
            if left <= 0 or not self._wake.wait(min(self._coalesce_s, left)):
                return

    def _refresh(self, centre_id: str, members: set[int] | None, *, snapshot: bool = False) -> None:
        now = self._clock()
        state = self._load(centre_id)
        if state is None or members is None:
            entries = self.store.list_entries(centre_id, now)
            if (
                state is None
                or snapshot
                or calendar_outdated(state, self.store.centre_hours(centre_id, now), now)
            ):
                self._cut_snapshot(centre_id, entries, state, now)
                return
            current = self._current[centre_id]
            changed_up, changed_out = diff(current, entries)
            changed = {e.badge for e in changed_up} | set(changed_out)
        else:
            fresh, held = self.store.member_list_entries(centre_id, members, now)
            current = self._current[centre_id]
            # Badges these members held before, and every badge they hold now.
            scope = held | {b for b, e in current.items() if e.member_id in members}
            changed = {b for b in scope if current.get(b) != fresh.get(b)}
            entries = current
            for badge in changed:
                if badge in fresh:
                    entries[badge] = fresh[badge]
                else:
                    entries.pop(badge, None)
        if not changed:
            return  # what the units hold already
        try:
            self._publish_changes(centre_id, state, entries, changed, now)
        except Exception:
            # The cached list may now be ahead of the stored one: read it again next pass.
            self._states.pop(centre_id, None)
            self._current.pop(centre_id, None)
            raise

    def _publish_changes(
        self,
        centre_id: str,
        state: CentreListState,
        entries: dict[bytes, ListEntry],
        changed: set[bytes],
        now: float,
    ) -> None:
        """A cumulative delta naming every badge touched since the snapshot, or a snapshot."""
        touched = changed | {e.badge for e in state.upsert} | set(state.remove)
        if len(touched) > MAX_DELTA_ENTRIES:
            self._cut_snapshot(centre_id, entries, state, now)
            return
        self._current[centre_id] = entries
        upsert, remove = cumulative_changes(entries, touched)
        version = max(state.version + 1, int(now * 1000))
        new = CentreListState(
            centre_id=centre_id,
            snapshot_version=state.snapshot_version,
            snapshot_issued_at=state.snapshot_issued_at,
            snapshot=state.snapshot,
            version=version,
            issued_at=now,
            upsert=upsert,
            remove=remove,
            calendar=state.calendar,
        )
        try:
            self.store.save_list_state(new, snapshot=False)
        except NotFound:  # the stored state was dropped (a member erased on the command line)
            self._cut_snapshot(centre_id, entries, state, now)
            return
        self._states[centre_id] = new
        self.deltas += 1
        log.info(
            "list of %s: delta v%d over v%d (+%d -%d)",
            centre_id,
            version,
            state.snapshot_version,
            len(upsert),
            len(remove),
        )
        with self._sending(centre_id, clear_from=0):
            self._send(topics.LIST_DELTA, centre_id, self._delta(new))

    def _cut_snapshot(
        self,
        centre_id: str,
        entries: dict[bytes, ListEntry],
        previous: CentreListState | None,
        now: float,
    ) -> None:
        version = max(previous.version + 1 if previous else 1, int(now * 1000))
        snapshot = [entries[badge] for badge in sorted(entries)]
        new = CentreListState(
            centre_id=centre_id,
            snapshot_version=version,
            snapshot_issued_at=now,
            snapshot=snapshot,
            version=version,
            issued_at=now,
            calendar=self.store.centre_hours(centre_id, now),
        )
        self.store.save_list_state(new, snapshot=True)
        self._states[centre_id] = new
        self._current[centre_id] = dict(zip(sorted(entries), snapshot, strict=True))
        self.snapshots += 1
        old_segments = previous.segments if previous else 0
        log.info(
            "list of %s: snapshot v%d, %d badges in %d segments",
            centre_id,
            version,
            len(snapshot),
            new.segments,
        )
        with self._sending(centre_id, clear_from=old_segments):
            self._send_state(new, clear_from=old_segments)

    def _send_again(self, centre_id: str) -> None:
        state = self._load(centre_id)
        if state is None:
            self._unpublished.pop(centre_id, None)
            return
        try:
            self._send_state(state, clear_from=self._unpublished.get(centre_id, 0))
        except ListNotPublished:
            log.warning("list of %s not on the broker yet; again soon", centre_id)
            return
        self._unpublished.pop(centre_id, None)
        self.republished += 1
        log.info("list of %s sent again: v%d", centre_id, state.version)

    # -- publishing ----------------------------------------------------------------------------

    @contextmanager
    def _sending(self, centre_id: str, *, clear_from: int) -> Iterator[None]:
        """The state is stored: if the broker did not take all of it, send it all again
        later (the compile would find nothing new to publish). A broker away is expected;
        anything else is an error for the worker to count."""
        try:
            yield
        except Exception as exc:
            previous = self._unpublished.get(centre_id, 0)
            self._unpublished[centre_id] = max(previous, clear_from)
            if not isinstance(exc, ListNotPublished):
                raise

    def _send_state(self, state: CentreListState, *, clear_from: int) -> None:
        """Segments, then clears of the old extra segments, then the head, then the delta."""
        head, segments = cut_snapshot(
            state.centre_id,
            state.snapshot_version,
            state.snapshot,
            state.snapshot_issued_at,
            state.calendar,
        )
        for segment in segments:
            self._send(
                topics.LIST_SEGMENT, state.centre_id, self.signer.sign(segment), segment.index
            )
        for index in range(len(segments), clear_from):
            self._send(topics.LIST_SEGMENT, state.centre_id, b"", index)
        self._send(topics.LIST_HEAD, state.centre_id, self.signer.sign(head))
        self._send(topics.LIST_DELTA, state.centre_id, self._delta(state))

    def _delta(self, state: CentreListState) -> bytes:
        return self.signer.sign(
            ListDelta(
                centre=state.centre_id,
                base=state.snapshot_version,
                version=state.version,
                upsert=state.upsert,
                remove=state.remove,
                issued_at=state.issued_at,
            )
        )

    def _send(
        self, spec: topics.TopicSpec, centre_id: str, payload: bytes, index: int | None = None
    ) -> None:
        if not self._publish(spec, centre_id, payload, index=index):
            raise ListNotPublished(f"{topics.topic(spec, centre_id, index)}: broker away")
        self.messages += 1

    def _load(self, centre_id: str) -> CentreListState | None:
        state = self._states.get(centre_id)
        if state is None:
            state = self.store.list_state(centre_id)
            if state is None:
                return None
            self._states[centre_id] = state
            current = {entry.badge: entry for entry in state.snapshot}
            for entry in state.upsert:
                current[entry.badge] = entry
            for badge in state.remove:
                current.pop(badge, None)
            self._current[centre_id] = current
        return state


def _merge(dirty: dict[str, set[int] | None], centre_id: str, members: set[int] | None) -> None:
    """Mark ``centre_id`` dirty for ``members`` (None: the whole centre, which covers all)."""
    if members is None or (centre_id in dirty and dirty[centre_id] is None):
        dirty[centre_id] = None
    else:
        dirty.setdefault(centre_id, set()).update(members)  # type: ignore[union-attr]


CALENDAR_REFRESH_S = 31 * 86400
CALENDAR_CHECK_S = 3600.0  # how often an idle publisher looks whether the day changed


def calendar_outdated(state: CentreListState, calendar: CentreHours | None, now: float) -> bool:
    """Whether the units need a new snapshot for the centre's calendar: new hours or time
    zone, a closed day they do not know, or a calendar too old to reach far enough ahead.
    (Closed days that have passed change nothing.)"""
    old = state.calendar
    if old is None or calendar is None:
        return old != calendar
    if (old.timezone, old.hours) != (calendar.timezone, calendar.hours):
        return True
    if not set(calendar.closed) <= set(old.closed):
        return True
    if not set(calendar.holidays) <= set(old.holidays):
        return True
    today = date.fromtimestamp(now).toordinal()
    if any(d >= today - 1 for d in set(old.closed) - set(calendar.closed)):
        return True  # a closure called off
    return now - state.snapshot_issued_at > CALENDAR_REFRESH_S
