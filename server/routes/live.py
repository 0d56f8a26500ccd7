"""The live occupancy feed: one computation per change, shared by every client, pushed.

``OccupancyFeed`` waits for the store to say a commit changed what the live page shows
(``Store.on_change``), computes the occupancy once (on a worker thread), encodes it once
per operator scope, and wakes every client stream with it. Changes that come while it
computes are folded into the next computation (a burst of events is one push, not one
per event). A heartbeat recomputes every ``HEARTBEAT_S`` even without changes ("present
since", units falling silent).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from functools import partial

from server.domain.operators import CentreScope
from server.store import Store

HEARTBEAT_S = 15.0

log = logging.getLogger(__name__)


@dataclass
class Snapshot:
    """One computed occupancy, numbered, with its JSON per scope made on first ask."""

    number: int
    centres: list[dict]
    _encoded: dict[frozenset[str] | None, str] = field(default_factory=dict)

    def json_for(self, scope: CentreScope) -> str:
        key = None if scope.centres is None else frozenset(scope.centres)
        text = self._encoded.get(key)
        if text is None:
            visible = [c for c in self.centres if scope.sees(c["centre_id"])]
            text = self._encoded[key] = json.dumps(
                visible, ensure_ascii=False, separators=(",", ":")
            )
        return text


class OccupancyFeed:
    """The one producer of the live page's occupancy, for every stream of one event loop."""

    def __init__(self, store: Store, *, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock
        self.computations = 0  # how many times the occupancy was computed
        self.snapshot: Snapshot | None = None
        self._changed = asyncio.Event()
        self._new = asyncio.Condition()
        self._loop = asyncio.get_running_loop()
        self._task: asyncio.Task[None] | None = None
        self.clients = 0
        self._stale = True  # changes went by with nobody watching
        self._listener = self._on_change
        store.on_change(self._listener)

    def _on_change(self) -> None:
        """Writer thread: wake the feed's task on its loop."""
        with contextlib.suppress(RuntimeError):  # the loop has closed
            self._loop.call_soon_threadsafe(self._changed.set)

    def close(self) -> None:
        self.store.remove_change_listener(self._listener)
        if self._task is not None:
            self._task.cancel()

    async def _compute(self) -> None:
        centres = await asyncio.to_thread(self.store.occupancy, self.clock())
        self.computations += 1
        number = self.snapshot.number + 1 if self.snapshot else 1
        async with self._new:
            self.snapshot = Snapshot(number, centres)
            self._new.notify_all()

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), HEARTBEAT_S)
            self._changed.clear()  # what changes from here on makes the next computation
            if not self.clients:
                self._stale = True  # computed when a client comes
                continue
            try:
                await self._compute()
            except Exception:  # the feed outlives a failed read; the next change retries
                log.exception("live occupancy not computed")
                self._stale = True

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run())
        if self._stale:
            self._stale = False
            await self._compute()

    async def stream(self, scope: CentreScope, is_disconnected: Callable) -> AsyncIterator[str]:
        """The JSON of each new snapshot a client can see, the current one first."""
        self.clients += 1
        try:
            await self.start()
            async for text in self._follow(scope, is_disconnected):
                yield text
        finally:
            self.clients -= 1

    async def _follow(self, scope: CentreScope, is_disconnected: Callable) -> AsyncIterator[str]:
        seen = 0
        while not await is_disconnected():
            snapshot = self.snapshot
            if snapshot is not None and snapshot.number != seen:
                seen = snapshot.number
                yield snapshot.json_for(scope)
                continue
            async with self._new:
                # A bounded wait, so a client that left is noticed within a heartbeat.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        self._new.wait_for(partial(self._newer, seen)), HEARTBEAT_S
                    )

    def _newer(self, seen: int) -> bool:
        return self.snapshot is not None and self.snapshot.number != seen

    @classmethod
    def of(cls, app_state: object, store: Store) -> OccupancyFeed:
        """The feed of this event loop and store, made on first use (one per app)."""
        feed = getattr(app_state, "occupancy_feed", None)
        if feed is None or feed.store is not store or feed._loop is not asyncio.get_running_loop():
            if feed is not None:
                feed.close()
            feed = cls(store)
            app_state.occupancy_feed = feed  # type: ignore[attr-defined]
        return feed
