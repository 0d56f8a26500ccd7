"""Visits built in the writer as events arrive, on a real SQLite file: late and out-of-order
events, midnight and the clock change, the first visits and the occupancy days."""

from __future__ import annotations

import json
import random
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import closing
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from protocol.messages import Event
from server.domain.reports import SAMPLES_PER_DAY, month, unpack_samples, week
from server.store import Store
from server.store.sqlite import visits as visits_sql
from tests.conftest import wait_until

PARIS = ZoneInfo("Europe/Paris")
WEEKDAY = [[480, 1080]]  # 08:00-18:00
OFFICE_HOURS = [WEEKDAY, WEEKDAY, WEEKDAY, WEEKDAY, WEEKDAY, [[540, 720]], []]


def at(text: str) -> float:
    """Paris wall-clock time in 2026, "MM-DD HH:MM"."""
    return datetime.strptime(f"2026-{text}", "%Y-%m-%d %H:%M").replace(tzinfo=PARIS).timestamp()


def local(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, PARIS).strftime("%m-%d %H:%M")


RECEIVED = at("04-01 12:00")  # everything below arrives later: replayed, historical


@pytest.fixture
def store(store_at: Path | str) -> Iterator[Store]:
    s = Store(store_at)
    s.create_centre("boitron", "Boitron", "Boitron")
    s.assign_device("boitron-01", "boitron")
    s.create_centre("belleme", "Bellême", "Bellême")
    s.assign_device("belleme-01", "belleme")
    yield s
    s.close()


def office_hours(store: Store, centre_id: str = "boitron") -> None:
    store.write(lambda db: db["centres"].update(centre_id, {"hours": json.dumps(OFFICE_HOURS)}))


_seq = iter(range(1, 10**6))


def passage(
    when: str,
    direction: str,
    *,
    member_id: int = 1,
    device_id: str = "boitron-01",
    granted: bool = True,
    synced: bool = True,
    event_id: str | None = None,
) -> Event:
    return Event(
        event_id=event_id or str(uuid.uuid4()),
        device_id=device_id,
        epoch="v" * 32,
        seq=next(_seq),
        kind="access",
        ts=at(when),
        clock_synced=synced,
        door="entree",
        badge_hash="a" * 64,
        granted=granted,
        reason="granted" if granted else "revoked",
        direction=direction if granted else None,  # type: ignore[arg-type]
        member_id=member_id,
    )


def ingest(store: Store, *events: Event, received_at: float = RECEIVED) -> None:
    by_device: dict[str, list[Event]] = {}
    for e in events:
        by_device.setdefault(e.device_id, []).append(e)
    for device_id, batch in by_device.items():
        store.ingest(device_id, batch, received_at).result(timeout=10)


def visits(store: Store, member_id: int = 1, centre_id: str = "boitron") -> list[tuple]:
    _, items = store.visits(
        now=at("12-31 00:00"), member_id=member_id, centre_id=centre_id, limit=1000
    )
    return [
        (local(v["check_in"]), local(v.get("check_out")), v.get("stop_reason"), v["day"])
        for v in reversed(items)
    ]


def table(store: Store, name: str) -> list[tuple]:
    columns = {
        "visits": "member_id, centre_id, day, check_in, check_out, stop_reason, limit_at,"
        " limit_reason, end_at, in_event_id, out_event_id, historical",
        "first_visits": "member_id, centre_id, day",
        "occupancy_days": "centre_id, day, peak, samples",
        "visit_months": "month, centre_id, member_id, visits, days, first_days, seconds",
    }[name]
    every = ", ".join(str(i + 1) for i in range(columns.count(",") + 1))
    store.settle()  # as a report does before reading them
    sql = f"SELECT {columns} FROM {name} ORDER BY {every}"
    return [tuple(r) for r in store.db.execute(sql).fetchall()]


def test_a_badge_in_and_out_make_one_visit(store: Store) -> None:
    office_hours(store)
    ingest(store, passage("03-02 09:00", "in"), passage("03-02 12:30", "out"))
    assert visits(store) == [("03-02 09:00", "03-02 12:30", "badge_out", "2026-03-02")]
    assert table(store, "first_visits") == [(1, "boitron", "2026-03-02")]
    ((centre, day, peak, raw),) = table(store, "occupancy_days")
    samples = unpack_samples(raw)
    assert (centre, day, peak, len(samples)) == ("boitron", "2026-03-02", 1, SAMPLES_PER_DAY)
    # Present from 09:00 (sample 108) to 12:25 (sample 149); gone at 12:30.
    assert [i for i, n in enumerate(samples) if n] == list(range(108, 150))


def test_a_visit_keeps_its_id_when_a_badge_out_or_the_next_passage_closes_it(
    store: Store,
) -> None:
    office_hours(store)
    ingest(store, passage("03-02 09:00", "in"))
    ingest(store, passage("03-02 09:30", "in", member_id=2))  # a later visit's row
    _, (opened,) = store.visits(now=at("03-02 10:00"), member_id=1)
    ingest(store, passage("03-02 12:30", "out"))
    _, (closed,) = store.visits(now=at("03-02 13:00"), member_id=1)
    assert closed["id"] == opened["id"] and closed["stop_reason"] == "badge_out"
    ingest(store, passage("03-03 09:00", "in"))  # stays open past closing time
    ingest(store, passage("03-03 09:30", "in", member_id=2))
    _, (open_again, _) = store.visits(now=at("03-03 10:00"), member_id=1)
    ingest(store, passage("03-04 09:00", "in"))  # stored closed at its limit now
    _, (_, at_limit, _) = store.visits(now=at("03-04 10:00"), member_id=1)
    assert at_limit["id"] == open_again["id"] and at_limit["stop_reason"] == "closing_time"
    assert (local(at_limit["check_out"]), at_limit["open"]) == ("03-03 18:00", False)


def test_an_open_visit_reads_closed_at_closing_time_and_is_closed_by_the_next_passage(
    store: Store,
) -> None:
    office_hours(store)
    ingest(store, passage("03-02 09:00", "in"))
    _, (open_visit,) = store.visits(now=at("03-02 10:00"))
    assert open_visit["open"] is True and "check_out" not in open_visit
    _, (read_later,) = store.visits(now=at("03-02 20:00"))
    assert read_later["open"] is False and read_later["closed_on_read"] is True
    assert (local(read_later["check_out"]), read_later["stop_reason"]) == (
        "03-02 18:00",
        "closing_time",
    )
    assert table(store, "visits")[0][4] is None  # reading wrote nothing
    ingest(store, passage("03-03 09:15", "in"))
    assert visits(store) == [
        ("03-02 09:00", "03-02 18:00", "closing_time", "2026-03-02"),
        ("03-03 09:15", "03-03 18:00", "closing_time", "2026-03-03"),  # read at year's end
    ]
    assert table(store, "visits")[0][4] == at("03-02 18:00")  # stored on the next passage


def test_an_earlier_badge_in_arriving_after_its_badge_out(store: Store) -> None:
    office_hours(store)
    ingest(store, passage("03-02 17:00", "out"))
    assert visits(store) == []
    ingest(store, passage("03-02 09:00", "in"))
    assert visits(store) == [("03-02 09:00", "03-02 17:00", "badge_out", "2026-03-02")]
    (row,) = table(store, "visits")
    assert row[-1] == 1  # built from replayed events: historical


def test_two_badge_ins_and_a_stray_badge_out(store: Store) -> None:
    office_hours(store)
    ingest(
        store,
        passage("03-02 08:00", "out"),
        passage("03-02 09:00", "in"),
        passage("03-02 09:01", "in"),
        passage("03-02 12:00", "out"),
        passage("03-02 12:05", "out"),
    )
    assert visits(store) == [("03-02 09:00", "03-02 12:00", "badge_out", "2026-03-02")]


def test_a_late_badge_out_splits_a_visit_and_recounts_the_day(store: Store) -> None:
    office_hours(store)
    ingest(store, passage("03-02 09:00", "in"), passage("03-02 14:00", "in"))
    assert len(visits(store)) == 1
    ingest(store, passage("03-02 12:00", "out"))
    assert visits(store) == [
        ("03-02 09:00", "03-02 12:00", "badge_out", "2026-03-02"),
        ("03-02 14:00", "03-02 18:00", "closing_time", "2026-03-02"),
    ]
    ((_, _, peak, raw),) = table(store, "occupancy_days")
    samples = unpack_samples(raw)
    assert peak == 1 and samples[12 * 12 + 6] == 0 and samples[15 * 12] == 1  # 12:30, 15:00


def test_across_midnight_the_visit_belongs_to_its_check_in_day(store: Store) -> None:
    ingest(store, passage("03-02 22:00", "in"), passage("03-03 02:00", "out"))  # open 24/7
    assert visits(store) == [("03-02 22:00", "03-03 02:00", "badge_out", "2026-03-02")]
    days = {day: unpack_samples(raw) for _, day, _, raw in table(store, "occupancy_days")}
    assert set(days) == {"2026-03-02", "2026-03-03"}  # present on both nights
    assert sum(days["2026-03-02"]) == 24 and sum(days["2026-03-03"]) == 24  # 2 h each side


def test_across_the_clock_change(store: Store) -> None:
    ingest(store, passage("03-29 01:30", "in"), passage("03-29 03:30", "out"))
    ingest(
        store, passage("03-28 22:00", "in", member_id=2), passage("03-30 09:00", "in", member_id=2)
    )
    assert visits(store) == [("03-29 01:30", "03-29 03:30", "badge_out", "2026-03-29")]
    # Open around the clock: the maximum stay (14 h) ends at 13:00 summer time, not 12:00.
    assert visits(store, member_id=2)[0] == (
        "03-28 22:00",
        "03-29 13:00",
        "max_stay",
        "2026-03-28",
    )
    _, items = store.visits(now=at("12-31 00:00"), member_id=1)
    assert items[0]["check_out"] - items[0]["check_in"] == 3600


def test_events_that_make_no_visit(store: Store) -> None:
    ingest(
        store,
        passage("03-02 09:00", "in", granted=False),  # refused at the door
        passage("03-02 09:00", "in", synced=False),  # time not trusted
        passage("03-02 09:00", "in", device_id="nowhere-01"),  # unit not in the registry
    )
    assert table(store, "visits") == []


def test_a_resent_event_changes_nothing(store: Store) -> None:
    event = passage("03-02 09:00", "in")
    ingest(store, event, passage("03-02 10:00", "out"))
    before = table(store, "visits")
    ingest(store, event)
    assert table(store, "visits") == before


def test_each_centre_has_its_own_visits_and_first_visit(store: Store) -> None:
    ingest(
        store,
        passage("03-02 09:00", "in"),
        passage("03-02 10:00", "out"),
        passage("03-05 09:00", "in", device_id="belleme-01"),
        passage("03-05 10:00", "out", device_id="belleme-01"),
        passage("03-06 09:00", "in"),
    )
    assert len(visits(store)) == 2 and len(visits(store, centre_id="belleme")) == 1
    # March: two days at Boitron, one at Bellême; each day belongs to its first visit.
    assert [row[1:6] for row in table(store, "visit_months")] == [
        ("belleme", 1, 1, 1, 1),
        ("boitron", 1, 2, 2, 2),
    ]
    assert table(store, "first_visits") == [
        (1, "belleme", "2026-03-05"),
        (1, "boitron", "2026-03-02"),
    ]
    ingest(store, passage("02-20 09:00", "in"))  # a replayed earlier first visit
    assert table(store, "first_visits")[1] == (1, "boitron", "2026-02-20")


SCENARIO = [
    ("03-02 08:00", "out"),
    ("03-02 09:00", "in"),
    ("03-02 09:05", "in"),
    ("03-02 12:00", "out"),
    ("03-02 13:00", "in"),
    ("03-02 19:00", "out"),
    ("03-03 09:00", "in"),
    ("03-03 11:00", "out"),
    ("03-03 23:00", "in"),
]
SCENARIO_VISITS = [
    ("03-02 09:00", "03-02 12:00", "badge_out", "2026-03-02"),
    ("03-02 13:00", "03-02 18:00", "closing_time", "2026-03-02"),
    ("03-03 09:00", "03-03 11:00", "badge_out", "2026-03-03"),
    ("03-03 23:00", "03-04 13:00", "max_stay", "2026-03-03"),
]


def assert_a_rebuild_gives_the_same_tables(store: Store, visits_built: int) -> None:
    """Rebuild every visit from the events: the tables must not change."""
    names = ("visits", "first_visits", "occupancy_days", "visit_months")
    built = [table(store, name) for name in names]
    assert store.rebuild_visits() == visits_built
    assert [table(store, name) for name in names] == built


def test_any_arrival_order_gives_the_same_tables_as_a_rebuild(store: Store) -> None:
    office_hours(store)
    rng = random.Random(3)
    for member_id in range(1, 9):  # one member per arrival order
        events = [passage(when, d, member_id=member_id) for when, d in SCENARIO]
        rng.shuffle(events)
        for e in events:  # one batch each, as a unit replaying its outbox would
            ingest(store, e)
    for member_id in range(1, 9):
        assert visits(store, member_id=member_id) == SCENARIO_VISITS
    assert_a_rebuild_gives_the_same_tables(store, 4 * 8)
    (_, peak, _) = next((d, p, r) for _, d, p, r in table(store, "occupancy_days"))
    assert peak == 8


def test_passages_arriving_together_give_the_same_tables_as_a_rebuild(store: Store) -> None:
    """Several members' passages in one write, in time order (a live stream, folded from
    each member's last visit at once) and not (a late one among them, folded one by one),
    in writes of every size: the same visits and counts as a rebuild."""
    office_hours(store)
    rng = random.Random(5)
    events = []
    for member_id in range(1, 7):
        mine = [passage(when, d, member_id=member_id) for when, d in SCENARIO]
        if member_id % 2:  # half of them arrive in their own order
            rng.shuffle(mine)
        events.append(mine)
    stream = []
    while any(events):  # interleaved as several members badging at one door
        mine = rng.choice([m for m in events if m])
        stream.append(mine.pop(0))
    while stream:
        size = rng.randint(1, 7)
        batch, stream = stream[:size], stream[size:]
        store.ingest_many([("boitron-01", batch, RECEIVED)]).result(timeout=10)
    for member_id in range(1, 7):
        assert visits(store, member_id=member_id) == SCENARIO_VISITS
    assert_a_rebuild_gives_the_same_tables(store, 4 * 6)


def live_stream(rng: random.Random, members: int, days: int, *, two_centres: bool) -> list:
    """Members badging in and out as it happens, in time order, over ``days`` days from
    the last Friday of March (a month's end): one to three visits a day, a badge-out now
    and then forgotten; with ``two_centres``, some of a day's visits at the other centre."""
    events = []
    for member_id in range(1, members + 1):
        for d in range(days):
            day = f"03-{27 + d:02d}" if 27 + d <= 31 else f"04-{27 + d - 31:02d}"
            hour = rng.randint(8, 10)
            for _ in range(rng.randint(1, 3)):
                device = "belleme-01" if two_centres and rng.random() < 0.4 else "boitron-01"
                minute = rng.randint(0, 59)
                events.append(
                    passage(
                        f"{day} {hour:02d}:{minute:02d}",
                        "in",
                        member_id=member_id,
                        device_id=device,
                    )
                )
                if rng.random() < 0.85:
                    out = f"{day} {hour + 1:02d}:{rng.randint(0, 59):02d}"
                    events.append(passage(out, "out", member_id=member_id, device_id=device))
                hour += 2
    return sorted(events, key=lambda e: (e.ts, e.event_id))


def ingest_in_writes(store: Store, rng: random.Random, events: list[Event]) -> None:
    """``events`` (in time order) in writes of 1 to 7 within each day, as a writer takes
    what arrived in the last moment; each unit's part of a write as it sends it."""

    def day_of(e: Event) -> str:
        return datetime.fromtimestamp(e.ts, PARIS).strftime("%m-%d")

    while events:
        same_day = sum(day_of(e) == day_of(events[0]) for e in events)
        size = min(rng.randint(1, 7), same_day)
        batch, events = events[:size], events[size:]
        by_device: dict[str, list[Event]] = {}
        for e in batch:
            by_device.setdefault(e.device_id, []).append(e)
        store.ingest_many([(d, es, RECEIVED) for d, es in by_device.items()]).result(timeout=10)


def test_a_live_stream_counts_the_members_months_as_it_goes(store: Store) -> None:
    """Badge-ins and badge-outs as they happen keep each member's months and first visits
    up to date in the write that stores them: nothing is left for the members' recount,
    and the tables read as they stand are those a rebuild gives."""
    office_hours(store)
    rng = random.Random(11)
    ingest_in_writes(store, rng, live_stream(rng, members=5, days=8, two_centres=False))
    left = store.db.execute("SELECT DISTINCT kind FROM pending_recounts").fetchall()
    assert {kind for (kind,) in left} <= {"day"}

    def as_stored(name: str) -> list[tuple]:
        return sorted(tuple(r) for r in store.db.execute(f"SELECT * FROM {name}").fetchall())

    months, firsts = as_stored("visit_months"), as_stored("first_visits")
    assert {m for m, *_ in months} == {"2026-03", "2026-04"}
    store.rebuild_visits()
    assert (as_stored("visit_months"), as_stored("first_visits")) == (months, firsts)


def test_a_live_stream_at_two_centres_gives_the_same_tables_as_a_rebuild(store: Store) -> None:
    """Members visiting both centres on one day, as it happens: which centre began their
    day is counted from every visit of it, and the tables end as a rebuild makes them."""
    office_hours(store)
    office_hours(store, "belleme")
    rng = random.Random(12)
    ingest_in_writes(store, rng, live_stream(rng, members=6, days=6, two_centres=True))
    assert_a_rebuild_gives_the_same_tables(store, len(table(store, "visits")))


def test_a_late_visit_before_one_whose_events_were_purged_is_read_on_its_own(
    store: Store,
) -> None:
    """Retention deletes old events and keeps their visits: a member's later visit then has
    no passage behind it. A late visit before it arriving in one write must not be read
    from that later visit (it would be reopened and closed before it began)."""
    office_hours(store)
    ingest(store, passage("03-10 09:00", "in"), passage("03-10 12:00", "out"))
    store.write(lambda db: db.execute("DELETE FROM events WHERE ts >= ?", [at("03-10 00:00")]))
    late = [passage("03-05 09:00", "in"), passage("03-05 12:00", "out")]
    store.ingest_many([("boitron-01", late, RECEIVED)]).result(timeout=10)
    found = visits(store)
    assert ("03-05 09:00", "03-05 12:00", "badge_out", "2026-03-05") in found
    _, items = store.visits(now=at("12-31 00:00"), member_id=1, limit=10)
    assert all(v["check_out"] >= v["check_in"] for v in items)


def test_the_migration_builds_visits_from_existing_events(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    first = Store(path)
    try:
        first.create_centre("boitron", "Boitron")
        first.assign_device("boitron-01", "boitron")
        ingest(first, passage("03-02 09:00", "in"), passage("03-02 11:00", "out"))
    finally:
        first.close()
    with closing(sqlite3.connect(path)) as conn:  # as a database from before visits
        for table_name in ("visits", "first_visits", "occupancy_days", "visit_months"):
            conn.execute(f"DROP TABLE {table_name}")
        conn.execute("DROP INDEX idx_events_passages")
        conn.execute("DELETE FROM _sqlite_migrations WHERE name = 'm060_visits'")
        conn.commit()
    again = Store(path)
    try:
        assert visits(again) == [("03-02 09:00", "03-02 11:00", "badge_out", "2026-03-02")]
        assert table(again, "first_visits") == [(1, "boitron", "2026-03-02")]
    finally:
        again.close()


def test_recounts_a_stopped_server_left_are_done_at_the_next_start(tmp_path: Path) -> None:
    path = tmp_path / "telecentre.db"
    first = Store(path)
    try:
        first.create_centre("boitron", "Boitron")
        first.assign_device("boitron-01", "boitron")
        ingest(first, passage("03-02 09:00", "in"), passage("03-02 11:00", "out"))
        built = {name: table(first, name) for name in ("first_visits", "occupancy_days")}
    finally:
        first.close()
    with closing(sqlite3.connect(path)) as conn:  # as a server killed before settling
        conn.execute("DELETE FROM first_visits")
        conn.execute("DELETE FROM occupancy_days")
        conn.executemany(
            "INSERT INTO pending_recounts (kind, a, b) VALUES (?, ?, ?)",
            [("first", "1", "boitron"), ("day", "boitron", "2026-03-02")],
        )
        conn.commit()
    again = Store(path)
    try:  # nobody asks for a report: the writer settles them by itself
        wait_until(lambda: not again.db.execute("SELECT 1 FROM pending_recounts").fetchall())
        for name, rows in built.items():
            sql = f"SELECT * FROM {name} ORDER BY 1, 2"
            assert [tuple(r) for r in again.db.execute(sql).fetchall()] == rows
    finally:
        again.close()


def test_the_days_wait_for_their_own_recount_and_a_report_still_counts_them(
    store: Store,
) -> None:
    """The writer settles the members' recounts within a second by itself, and leaves the
    centres' days (the costly part under load) for later; a report settles them first."""
    office_hours(store)
    ingest(store, passage("03-02 09:00", "in"), passage("03-02 12:30", "out"))
    # A late visit before it: the member's month is recounted from the visits.
    ingest(store, passage("03-02 08:00", "in"), passage("03-02 08:30", "out"))

    def kinds() -> set[str]:
        return {r[0] for r in store.db.execute("SELECT kind FROM pending_recounts")}

    wait_until(lambda: kinds() == {"day"})
    month = store.db.execute("SELECT visits, days, seconds FROM visit_months").fetchall()
    assert [tuple(r) for r in month] == [(2, 1, 4 * 3600.0)]
    assert store.db.execute("SELECT * FROM first_visits").fetchall()
    assert not store.db.execute("SELECT * FROM occupancy_days").fetchall()
    ((centre, day, peak, _),) = table(store, "occupancy_days")  # settles, as reports do
    assert (centre, day, peak) == ("boitron", "2026-03-02", 1)
    assert kinds() == set()


def test_reports_count_an_open_visit_up_to_now(store: Store) -> None:
    office_hours(store)
    ingest(store, passage("03-02 09:00", "in"), passage("03-02 09:30", "in", member_id=2))
    ingest(store, passage("03-02 09:45", "out", member_id=2))
    now = at("03-02 10:00")  # member 1 is still inside, until 18:00 at the latest
    invoicing = store.invoicing_report(month("2026-03"), now=now)
    assert [(r["member_id"], r["hours"]) for r in invoicing["members"]] == [(1, 1.0), (2, 0.25)]
    for period in (month("2026-03"), week("2026-W10")):
        report = store.departement_report(period, now=now)
        assert report["total"]["hours"] == 1.25 and report["total"]["visits"] == 2
    later = store.invoicing_report(month("2026-03"), now=at("03-05 00:00"))
    assert [r["hours"] for r in later["members"]] == [9.0, 0.25]  # read closed at 18:00


def test_days_recounted_together_keep_each_centres_own_day_across_time_zones(
    store: Store,
) -> None:
    """Centres recounted in one statement read with bounds wide enough for all of their
    time zones: a visit that ended before Bellême's day began (in Tahiti) does not make it
    a day with people in, and the row left from before is deleted."""
    store.write(lambda db: db["centres"].update("belleme", {"timezone": "Pacific/Tahiti"}))
    tahiti = ZoneInfo("Pacific/Tahiti")
    day = date(2026, 3, 3)

    def tahiti_at(text: str) -> float:
        return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=tahiti).timestamp()

    def recount(db: Any) -> None:
        db.execute(  # Bellême had people in on that day before its visit was shortened
            "INSERT INTO occupancy_days (centre_id, day, peak, samples) VALUES (?, ?, 1, ?)",
            ["belleme", day.isoformat(), b""],
        )
        rows = [  # Boitron: 10:00-12:00 Paris; Bellême: ended 23:00 the day before, Tahiti
            (1, "boitron", "2026-03-03", at("03-03 10:00"), at("03-03 12:00"), "in-1"),
            (
                2,
                "belleme",
                "2026-03-02",
                tahiti_at("2026-03-02 20:00"),
                tahiti_at("2026-03-02 23:00"),
                "in-2",
            ),
        ]
        for member_id, centre_id, on, check_in, end, in_id in rows:
            db.execute(
                "INSERT INTO visits (member_id, centre_id, day, check_in, check_out,"
                " stop_reason, limit_at, limit_reason, end_at, in_event_id, historical)"
                " VALUES (?, ?, ?, ?, ?, 'badge_out', ?, 'max_stay', ?, ?, 0)",
                [member_id, centre_id, on, check_in, end, end + 3600, end, in_id],
            )
        calendars = {
            (c, day): visits_sql.centre_calendar(db, c, day) for c in ("boitron", "belleme")
        }
        visits_sql.refresh_days(db, calendars)

    store.write(recount)
    days = {(c, d): peak for c, d, peak, _ in table(store, "occupancy_days")}
    assert days == {("boitron", "2026-03-03"): 1}
