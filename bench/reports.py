"""A month's reports over 1,000,000 events: each report against a plain count of the same
events, measured in the same run.

40 centres (Monday-Friday 08:00-19:00) in 10 communes, 24,000 members, 1,000,000 granted
badge-ins and badge-outs in March 2026: about 21 half-days each, 500,000 visits. The events
are written in bulk and the visits built from them by ``Store.rebuild_visits`` (the same
rules as live ingest); then each report is asked three times through the store, as the API
asks it, and its best time is compared with ``SELECT count(*)`` over the month's events
(the floor). Target: every report within 1 s.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Callable
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from bench.common import Context, Results
from server.data import communes
from server.domain.reports import month, week
from server.store import Store

EVENTS = 1_000_000
CENTRES = 40
MEMBERS = 24_000
MONTH = "2026-03"
TARGET_S = 1.0
PARIS = ZoneInfo("Europe/Paris")
ORNE = ["61001", "61006", "61169", "61214", "61293", "61038", "61508", "61051", "61464", "61168"]
HOURS = json.dumps([[[480, 1140]]] * 5 + [[], []])
WORK = ["14118", "72181", "75056", "76540", "28085", "27229", "53130", "14366", "35238", "61001"]


def run(ctx: Context) -> None:
    global EVENTS
    EVENTS = ctx.scale(1_000_000, 100_000)
    bench_reports(ctx.results, ctx.workdir)


def _populate(store: Store, rng: random.Random) -> int:
    """Centres, members and a month of passages written straight to the tables."""
    days = [date(2026, 3, 1) + timedelta(days=i) for i in range(31)]
    workdays = [d for d in days if d.weekday() < 5]
    now = time.time()

    def setup(db) -> None:
        db["centres"].insert_all(
            {
                "id": f"c{i:02d}",
                "name": f"Centre {i:02d}",
                "insee": ORNE[i % len(ORNE)],
                "created_at": now,
            }
            for i in range(CENTRES)
        )
        db["members"].insert_all(
            {
                "id": m,
                "name": f"Member {m}",
                "active": 1,
                "created_at": now,
                "commute_insee": WORK[m % len(WORK)] if m % 4 else None,
            }
            for m in range(1, MEMBERS + 1)
        )

    store.write(setup)
    rows = []
    seq = 0
    slots = [(d, half) for d in workdays for half in (0, 1)]
    member = 0
    while len(rows) < EVENTS:  # about 21 half-days each, never two visits at once
        member = member % MEMBERS + 1
        centre = f"c{(member + (rng.random() < 0.1)) % CENTRES:02d}"
        for day, half in rng.sample(slots, 21):
            opens = datetime(day.year, day.month, day.day, 8 + 5 * half, tzinfo=PARIS)
            check_in = opens.timestamp() + rng.randint(0, 2 * 3600)
            check_out = check_in + rng.randint(15 * 60, 3 * 3600)
            for ts, direction in ((check_in, "in"), (check_out, "out")):
                seq += 1
                rows.append(
                    (
                        str(uuid.UUID(int=rng.getrandbits(128))),
                        "bench-01",
                        seq,
                        centre,
                        "access",
                        ts,
                        ts,
                        1,
                        0,
                        0,
                        "entree",
                        "ab" * 32,
                        1,
                        "granted",
                        direction,
                        member,
                    )
                )
                if len(rows) == EVENTS:
                    break
            if len(rows) == EVENTS:
                break

    def insert(db, chunk: list[tuple]) -> None:
        db.conn.executemany(
            "INSERT INTO events (event_id, device_id, seq, centre_id, kind, ts, received_at,"
            " clock_synced, historical, time_suspect, door, badge_hash, granted, reason,"
            " direction, member_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            chunk,
        )

    for i in range(0, len(rows), 100_000):  # one commit per 100,000 rows
        chunk = rows[i : i + 100_000]
        store.write(lambda db, chunk=chunk: insert(db, chunk))
    return len(rows)


def _best(fn: Callable[[], object], runs: int = 3) -> float:
    best = float("inf")
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def bench_reports(results: Results, workdir: Path) -> None:
    rng = random.Random(2026)
    store = Store(workdir / "reports" / "telecentre.db")
    try:
        t0 = time.perf_counter()
        events = _populate(store, rng)
        written_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        built = store.rebuild_visits()
        build_s = time.perf_counter() - t0
        period = month(MONTH)
        first = datetime(2026, 3, 1, tzinfo=PARIS).timestamp()
        last = datetime(2026, 4, 1, tzinfo=PARIS).timestamp()
        floor = _best(
            lambda: store.db.execute(
                "SELECT count(*) FROM events WHERE ts >= ? AND ts < ?", [first, last]
            ).fetchone()
        )
        now = time.time()
        assert communes()  # the impact report's table, loaded before timing
        timings = {
            "invoicing": _best(lambda: store.invoicing_report(period, now=now)),
            "departement": _best(lambda: store.departement_report(period, now=now)),
            "impact": _best(lambda: store.impact_report(period, kg_per_km=0.2156)),
        }
        manager = _best(lambda: store.departement_report(period, now=now, centre_ids=["c07"]))
        one_week = _best(lambda: store.departement_report(week("2026-W11"), now=now))
    finally:
        store.close()
    print(
        f"reports over {events:,} events ({built:,} visits, written in {written_s:.1f} s, "
        f"visits built in {build_s:.1f} s):"
    )
    for name, seconds in timings.items():
        print(
            f"  {name:<12} {seconds * 1000:7.0f} ms  ({seconds / floor:5.1f}x the floor; "
            f"target {TARGET_S:.0f} s)"
        )
    print(f"  one centre's departement report: {manager * 1000:.0f} ms")
    print(f"  departement report of one ISO week (from the visits): {one_week * 1000:.0f} ms")
    print(f"  floor: SELECT count(*) over the month's {events:,} events: {floor * 1000:.0f} ms")
    results.add(
        "reports_month",
        events=events,
        visits=built,
        build_visits_s=build_s,
        floor_count_s=floor,
        floor=floor,
        ratio=max(timings.values()) / floor,
        invoicing_s=timings["invoicing"],
        departement_s=timings["departement"],
        impact_s=timings["impact"],
        departement_one_centre_s=manager,
        departement_week_s=one_week,
        ratio_invoicing=timings["invoicing"] / floor,
        ratio_departement=timings["departement"] / floor,
        ratio_impact=timings["impact"] / floor,
        target_s=TARGET_S,
    )
