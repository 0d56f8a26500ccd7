"""``GET /api/events`` over 1,000,000 events, against a trivial route of the same server.

The server runs in its own process (``telecentre-server serve``) on a store holding a
quarter's events of 40 centres (access, room and door events). Each page is asked 20 times
over HTTP with an admin's API token and its median compared with ``GET /api/me`` (an
authenticated route that reads one row: the floor). Pages: the first, each filter (kind,
centre, centre and kind, member, door, refused cards, a refusal's rule, a time window), and a
page half-way down reached by its cursor;
the deprecated ``offset`` half-way down is shown beside it. Target: every page ≤ 3×.
"""

from __future__ import annotations

import random
import statistics
import time
import uuid
from collections.abc import Callable

from bench.common import Context, ServerProcess, bench_admin_token
from server.routes.events import encode_cursor
from server.store import Store

TARGET = 3.0
CENTRES = 40
CALLS = 20
KINDS = ["access"] * 16 + ["room"] * 3 + ["door_closed", "door_forced", "door_held", "exit"]
DECISIONS = [(1, "granted")] * 97 + [(0, "unknown_card")] * 2 + [(0, "revoked")]


def populate(store: Store, events: int, start: float) -> None:
    rng = random.Random(2026)
    now = time.time()
    store.write(
        lambda db: db["centres"].insert_all(
            {"id": f"c{i:02d}", "name": f"Centre {i:02d}", "created_at": now}
            for i in range(CENTRES)
        )
    )
    span = 90 * 86400
    chunk = 100_000
    for first in range(0, events, chunk):
        rows = []
        for i in range(first, min(events, first + chunk)):
            ts = start + span * i / events
            kind = rng.choice(KINDS)
            # Cards: most let in, a few unknown (no member) or revoked.
            granted, reason = (None, None) if kind != "access" else rng.choice(DECISIONS)
            rows.append(
                (
                    str(uuid.UUID(int=rng.getrandbits(128))),
                    f"c{i % CENTRES:02d}-01",
                    i + 1,
                    f"c{i % CENTRES:02d}",
                    kind,
                    ts,
                    ts,
                    "entree" if kind != "room" else None,
                    "salle" if kind == "room" else None,
                    1 + i % 5000 if kind == "access" and reason != "unknown_card" else None,
                    granted,
                    reason,
                    "in" if granted else None,
                )
            )

        def insert(db, rows=rows) -> None:  # noqa: ANN001
            db.conn.executemany(
                "INSERT INTO events (event_id, device_id, seq, centre_id, kind, ts,"
                " received_at, clock_synced, historical, time_suspect, door, room, member_id,"
                " granted, reason, direction) VALUES (?, ?, ?, ?, ?, ?, ?, 1, 0, 0, ?, ?, ?,"
                " ?, ?, ?)",
                rows,
            )

        store.write(insert)
    store.db.execute("ANALYZE")


def median_ms(call: Callable[[], object]) -> float:
    call()  # warm
    times = []
    for _ in range(CALLS):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def run(ctx: Context) -> None:
    events = ctx.scale(1_000_000, 50_000)
    start = 1_767_225_600.0  # 2026-01-01
    store = Store(ctx.workdir / "events-server" / "telecentre.db")
    t0 = time.perf_counter()
    populate(store, events, start)
    written = time.perf_counter() - t0
    token = bench_admin_token(store)
    half = store.db.execute(
        "SELECT ts, id FROM events ORDER BY ts DESC, id DESC LIMIT 1 OFFSET ?", [events // 2]
    ).fetchone()
    store.close()
    signing = ctx.workdir / "events-signing.key"
    ctx.signer.write(signing)
    server = ServerProcess(ctx.workdir, ctx.broker, ctx.key_file, signing, token, name="events")
    http = server.http

    def get(path: str, **params: object) -> Callable[[], object]:
        def call() -> object:
            response = http.get(path, params=params)
            if response.status_code != 200:
                raise RuntimeError(f"{path} {params}: {response.status_code} {response.text}")
            return response

        return call

    try:
        floor = median_ms(get("/api/me"))
        pages = {
            "first page": get("/api/events"),
            "kind=door_forced": get("/api/events", kind="door_forced"),
            "centre": get("/api/events", centre="c07"),
            "centre and kind=room": get("/api/events", centre="c07", kind="room"),
            "member": get("/api/events", member=1207),
            "door": get("/api/events", centre="c07", door="entree"),
            "refused cards": get("/api/events", granted="false"),
            "reason=revoked": get("/api/events", reason="revoked"),
            "one week": get(
                "/api/events",
                since="2026-02-02T00:00:00+01:00",
                until="2026-02-09T00:00:00+01:00",
            ),
            "half-way, by cursor": get("/api/events", cursor=encode_cursor(half[0], half[1])),
        }
        timings = {name: median_ms(call) for name, call in pages.items()}
        deprecated = median_ms(get("/api/events", offset=events // 2))
    finally:
        server.close()
    worst_name = max(timings, key=lambda k: timings[k])
    worst = timings[worst_name]
    print(f"GET /api/events over {events:,} events (written in {written:.0f} s), 100 a page:")
    for name, ms in timings.items():
        print(f"  {name:<22} {ms:6.1f} ms  ({ms / floor:4.1f}x the floor)")
    print(f"  (deprecated offset={events // 2:,}: {deprecated:.1f} ms, {deprecated / floor:.1f}x)")
    print(
        f"  floor: GET /api/me on the same server: {floor:.1f} ms; worst page ({worst_name}) "
        f"{worst / floor:.2f}x (target ≤ {TARGET:.0f}x)"
    )
    ctx.results.add(
        "events_api_pages",
        events=events,
        floor=floor,
        floor_what="GET /api/me median ms",
        ratio=worst / floor,
        target=TARGET,
        worst_page=worst_name,
        pages_ms=timings,
        deprecated_offset_ms=deprecated,
    )
