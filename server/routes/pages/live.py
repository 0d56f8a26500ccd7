"""En direct: every centre on one screen, kept current by server-sent events.

The page is rendered whole on load; ``/live/stream`` then sends HTML fragments that htmx's
SSE extension swaps in place: ``live`` (the banner, the centres, the map, open alarms),
``feed`` (the latest events) and ``announce`` (one short sentence for screen readers,
in a polite live region, so a change is said without re-reading the page).

The stream follows the API's live feed (``server.routes.live.OccupancyFeed``): it wakes
when a commit changes what the page shows, when the broker link comes or goes, and at the
feed's heartbeat, never by polling; the fragments are read and rendered once per change
for every client of the same centres and language.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from fastapi.sse import EventSourceResponse, ServerSentEvent
from markupsafe import escape

from server.auth.deps import CurrentOperator, PageOperator
from server.domain.operators import CentreScope
from server.routes.live import OccupancyFeed
from server.runtime import Runtime, RuntimeDep
from server.web import live as view
from server.web import orne_map
from server.web.describe import event_text
from server.web.i18n import Translate, translator
from server.web.render import language_of, render, render_text

router = APIRouter(include_in_schema=False)

FEED_SIZE = 15


def _page_data(runtime: Runtime, operator_scope: CentreScope, now: float | None = None) -> dict:
    snap = view.snapshot(runtime, operator_scope, now)
    _, events = runtime.store.events(centre_ids=operator_scope.centres, limit=FEED_SIZE)
    names = {c["centre_id"]: c["name"] for c in snap.centres}
    return {"snap": snap, "events": events, "map": orne_map, "centre_names": names}


@router.get("/", response_class=HTMLResponse)
def live_page(request: Request, operator: PageOperator, runtime: RuntimeDep) -> HTMLResponse:
    return render(request, "live.html", **_page_data(runtime, operator.scope))


@router.get("/live/stream", response_class=EventSourceResponse)
async def live_stream(
    request: Request, operator: CurrentOperator, runtime: RuntimeDep
) -> AsyncIterator[ServerSentEvent]:
    """The live fragments again each time what they show changes."""
    scope, language = operator.scope, language_of(request)
    say = translator(language)
    feed = OccupancyFeed.of(request.app.state, runtime.store)
    sent: dict[str, str] = {}
    last_event_id: int | None = None

    async def fragments() -> tuple[dict, dict[str, str]]:
        data = await asyncio.to_thread(_page_data, runtime, scope)
        return data, {
            name: render_text(request, template, **data)
            for name, template in (("live", "_live.html"), ("feed", "_live_feed.html"))
        }

    # The fragments show what the operator's centres hold, in their language: no role, no
    # token, nothing else of the operator, so clients with the same centres share them.
    key = (None if scope.centres is None else frozenset(scope.centres), language)
    async with contextlib.aclosing(feed.updates()) as updates:
        async for snapshot in updates:
            if snapshot is None:  # the feed could not read: the page keeps what it shows
                continue
            data, html = await snapshot.shared(key, fragments)
            for name, text in html.items():
                if sent.get(name) != text:
                    sent[name] = text
                    yield ServerSentEvent(event=name, raw_data=text)
            announcement = _announcement(data, last_event_id, say)
            if announcement:
                yield ServerSentEvent(event="announce", raw_data=announcement)
            last_event_id = max((e["id"] for e in data["events"]), default=last_event_id or 0)


def _announcement(data: dict, last_event_id: int | None, _: Translate) -> str:
    """The newest events since the last look, in words (none on the first look)."""
    if last_event_id is None:
        return ""
    names = {c["centre_id"]: c["name"] for c in data["snap"].centres}
    fresh = [e for e in reversed(data["events"]) if e["id"] > last_event_id]
    lines = [
        f"{names.get(e.get('centre_id'), e.get('centre_id') or '')} : {event_text(e, _)}"
        for e in fresh[-3:]
    ]
    return str(escape(". ".join(lines)))
