"""The live occupancy feed: one computation per change, shared by every client, pushed.

``OccupancyFeed`` waits for the store to say a commit changed what the live page shows
(``Store.on_change``), computes the occupancy once (on a worker thread), and wakes every
client with it. Changes that come while it computes are folded into the next computation
(a burst of events is one push, not one per event). A heartbeat recomputes every
``HEARTBEAT_S`` even without changes ("present since", units falling silent).

A push costs each client as little as it can: the Server-Sent Events frame of a snapshot
(``data: <json>``) is encoded once per operator scope and the same bytes are written to
every stream of that scope (``FeedResponse``), with no per-client timer, lock or
re-encoding; a client that leaves is seen at once by a pending ``receive``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from starlette.background import BackgroundTask
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from server.domain.operators import CentreScope
from server.store import Store

T = TypeVar("T")

HEARTBEAT_S = 15.0
KEEPALIVE = b": ping\n\n"  # an SSE comment: keeps proxies from closing a quiet stream

log = logging.getLogger(__name__)

# Each event of the stream, as OpenAPI 3.2 describes Server-Sent Events (the item schema
# FastAPI's own EventSourceResponse documents).
SSE_DOC: dict[int | str, dict] = {
    200: {
        "content": {
            "text/event-stream": {
                "itemSchema": {
                    "type": "object",
                    "properties": {
                        "data": {"type": "string"},
                        "event": {"type": "string"},
                        "id": {"type": "string"},
                        "retry": {"type": "integer", "minimum": 0},
                    },
                }
            }
        }
    }
}

ScopeKey = frozenset[str] | None


@dataclass
class Snapshot:
    """One computed occupancy, numbered, with its JSON and SSE frame per scope made on
    first ask (every later client of that scope gets the same object)."""

    number: int
    centres: list[dict]
    _json: dict[ScopeKey, str] = field(default_factory=dict)
    _frames: dict[ScopeKey, bytes] = field(default_factory=dict)
    _shared: dict[Hashable, asyncio.Task[Any]] = field(default_factory=dict)

    async def shared(self, key: Hashable, make: Callable[[], Awaitable[T]]) -> T:
        """What ``make()`` gives, made once for every client that asks with the same
        ``key`` while this snapshot is the newest (the dashboard's fragments per scope and
        language); a client that leaves meanwhile does not cancel it for the others."""
        task = self._shared.get(key)
        if task is None:
            task = self._shared[key] = asyncio.ensure_future(make())
        return await asyncio.shield(task)

    def json_for(self, scope: CentreScope) -> str:
        key = _key(scope)
        text = self._json.get(key)
        if text is None:
            visible = [c for c in self.centres if scope.sees(c["centre_id"])]
            text = self._json[key] = json.dumps(visible, ensure_ascii=False, separators=(",", ":"))
        return text

    def frame_for(self, scope: CentreScope) -> bytes:
        """The whole SSE event: the JSON has no line break (``json.dumps`` escapes them)."""
        key = _key(scope)
        frame = self._frames.get(key)
        if frame is None:
            frame = self._frames[key] = b"data: " + self.json_for(scope).encode() + b"\n\n"
        return frame


def _key(scope: CentreScope) -> ScopeKey:
    return None if scope.centres is None else frozenset(scope.centres)


class OccupancyFeed:
    """The one producer of the live page's occupancy, for every stream of one event loop."""

    def __init__(self, store: Store, *, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock
        self.computations = 0  # how many times the occupancy was computed
        self.snapshot: Snapshot | None = None
        self._changed = asyncio.Event()
        self._waiters: list[asyncio.Future[None]] = []  # one per client waiting for news
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

    def _wake(self) -> None:
        """Every waiting client at once, each through its own future: no lock to pass from
        one to the next, and a client that leaves cancels only its own."""
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def _compute(self) -> None:
        centres = await asyncio.to_thread(self.store.occupancy, self.clock())
        self.computations += 1
        number = self.snapshot.number + 1 if self.snapshot else 1
        self.snapshot = Snapshot(number, centres)
        self._wake()

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
                self._wake()  # the clients send a keep-alive instead

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run())
        if self._stale:
            self._stale = False
            await self._compute()

    async def updates(self) -> AsyncIterator[Snapshot | None]:
        """Each new snapshot, the current one first; ``None`` when the feed woke without
        one (its computation failed), for the client to show it is still there. A client
        that falls behind skips to the newest snapshot."""
        self.clients += 1
        try:
            await self.start()
            seen = 0
            while True:
                snapshot = self.snapshot
                if snapshot is not None and snapshot.number != seen:
                    seen = snapshot.number
                    yield snapshot
                    continue
                waiter = self._loop.create_future()
                self._waiters.append(waiter)
                await waiter
                if self.snapshot is None or self.snapshot.number == seen:
                    yield None
        finally:
            self.clients -= 1

    async def stream(self, scope: CentreScope) -> AsyncIterator[str]:
        """The JSON of each new snapshot a client of ``scope`` can see, the current one first."""
        async with contextlib.aclosing(self.updates()) as updates:
            async for snapshot in updates:
                if snapshot is not None:
                    yield snapshot.json_for(scope)

    def response(self, scope: CentreScope) -> FeedResponse:
        return FeedResponse(self, scope)

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


class FeedResponse(Response):
    """The feed as a Server-Sent Events stream for one client: each snapshot's frame for
    the centres it may see (``view``), written as the feed's bytes, until it disconnects."""

    media_type = "text/event-stream"

    def __init__(self, feed: OccupancyFeed, view: CentreScope) -> None:
        # As StreamingResponse: no body, so no Content-Length; the stream ends with the client.
        self.feed, self.view = feed, view
        self.status_code = 200
        self.background: BackgroundTask | None = None
        self.init_headers({"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        pushing = asyncio.ensure_future(self._push(send))
        listening = asyncio.ensure_future(_disconnected(receive))
        try:
            await asyncio.wait((pushing, listening), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (pushing, listening):
                task.cancel()
            await asyncio.gather(pushing, listening, return_exceptions=True)
        if not pushing.cancelled() and (error := pushing.exception()) is not None:
            raise error  # the stream never ends by itself: only a failure ends it first

    async def _push(self, send: Send) -> None:
        async with contextlib.aclosing(self.feed.updates()) as updates:
            async for snapshot in updates:
                frame = KEEPALIVE if snapshot is None else snapshot.frame_for(self.view)
                await send({"type": "http.response.body", "body": frame, "more_body": True})


async def _disconnected(receive: Receive) -> None:
    """Returns when the client has gone (the request has no body left to read)."""
    while (await receive())["type"] != "http.disconnect":
        pass
