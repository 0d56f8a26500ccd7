"""The visit rules on hand-computed passages: no database, no clock."""

from __future__ import annotations

import itertools
import random
from bisect import insort
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from protocol.calendar import ALWAYS_OPEN, Calendar
from server.domain.visits import (
    BADGE_OUT,
    CLOSING_TIME,
    MAX_STAY,
    Passage,
    Visit,
    build,
    closing_time,
    days_spanned,
    effective,
    limit,
    month_rows,
    replay,
)

PARIS = ZoneInfo("Europe/Paris")
MAX = 14 * 3600.0
WEEKDAY = ((480, 1080),)  # 08:00-18:00
# Monday to Friday 08:00-18:00, Saturday 09:00-12:00, Sunday closed; Friday 2026-03-06 closed.
OFFICE = Calendar(
    hours=(WEEKDAY, WEEKDAY, WEEKDAY, WEEKDAY, WEEKDAY, ((540, 720),), ()),
    closed_days=frozenset({datetime(2026, 3, 6).date()}),
)
AROUND_THE_CLOCK = Calendar(hours=ALWAYS_OPEN)


def at(text: str) -> float:
    """Local (Paris) wall-clock time in March 2026, "MM-DD HH:MM"."""
    return datetime.strptime(f"2026-{text}", "%Y-%m-%d %H:%M").replace(tzinfo=PARIS).timestamp()


def passages(*steps: tuple[str, str]) -> list[Passage]:
    return [Passage(at(when), f"e{i:02d}", direction) for i, (when, direction) in enumerate(steps)]  # type: ignore[arg-type]


def shape(visits: list[Visit]) -> list[tuple]:
    """(check-in, check-out, stop reason, day) with times as local "MM-DD HH:MM"."""

    def local(ts: float | None) -> str | None:
        return None if ts is None else datetime.fromtimestamp(ts, PARIS).strftime("%m-%d %H:%M")

    return [(local(v.check_in), local(v.check_out), v.stop_reason, v.day) for v in visits]


# -- closing time and the limit ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("calendar", "check_in", "expected"),
    [
        (OFFICE, "03-02 09:00", ("03-02 18:00", CLOSING_TIME)),
        (OFFICE, "03-02 07:30", ("03-02 18:00", CLOSING_TIME)),  # early: the day's interval
        (OFFICE, "03-02 19:00", ("03-03 09:00", MAX_STAY)),  # after hours: 14 h
        (OFFICE, "03-06 10:00", ("03-07 00:00", MAX_STAY)),  # a closed day
        (OFFICE, "03-07 09:30", ("03-07 12:00", CLOSING_TIME)),  # Saturday morning
        (OFFICE, "03-08 10:00", ("03-09 00:00", MAX_STAY)),  # Sunday: no hours
        (AROUND_THE_CLOCK, "03-02 22:00", ("03-03 12:00", MAX_STAY)),  # no closing midnight
        # The clocks go forward on Sunday 29 March: 14 h later reads 13:00, not 12:00.
        (AROUND_THE_CLOCK, "03-28 22:00", ("03-29 13:00", MAX_STAY)),
        (OFFICE, "03-27 09:00", ("03-27 18:00", CLOSING_TIME)),  # 17:00 UTC
        (OFFICE, "03-30 09:00", ("03-30 18:00", CLOSING_TIME)),  # 16:00 UTC
    ],
)
def test_a_visit_ends_at_closing_time_or_after_the_maximum_stay(
    calendar: Calendar, check_in: str, expected: tuple[str, str]
) -> None:
    assert limit(calendar, at(check_in), MAX) == (at(expected[0]), expected[1])


def test_closing_times_across_the_clock_change_are_local_wall_clock() -> None:
    assert (
        limit(OFFICE, at("03-27 09:00"), MAX)[0]
        == datetime(2026, 3, 27, 17, tzinfo=UTC).timestamp()
    )
    assert (
        limit(OFFICE, at("03-30 09:00"), MAX)[0]
        == datetime(2026, 3, 30, 16, tzinfo=UTC).timestamp()
    )
    assert at("03-29 13:00") - at("03-28 22:00") == MAX


def test_an_evening_open_past_midnight_closes_the_next_morning() -> None:
    night = Calendar(hours=(((1200, 1440),), ((0, 120),), (), (), (), (), ()))
    assert closing_time(night, at("03-02 21:00")) == at("03-03 02:00")
    assert limit(night, at("03-02 21:00"), MAX) == (at("03-03 02:00"), CLOSING_TIME)
    # Earlier than the maximum stay, the maximum stay wins.
    assert limit(night, at("03-02 21:00"), 3600) == (at("03-02 22:00"), MAX_STAY)


# -- building visits from passages ------------------------------------------------------------


@pytest.mark.parametrize(
    ("calendar", "steps", "expected"),
    [
        pytest.param(
            OFFICE,
            [("03-02 09:00", "in"), ("03-02 12:00", "out")],
            [("03-02 09:00", "03-02 12:00", BADGE_OUT, "2026-03-02")],
            id="in-then-out",
        ),
        pytest.param(
            OFFICE,
            [("03-02 09:00", "in"), ("03-03 09:30", "in")],
            [
                ("03-02 09:00", "03-02 18:00", CLOSING_TIME, "2026-03-02"),
                ("03-03 09:30", None, None, "2026-03-03"),
            ],
            id="no-badge-out-closed-at-closing-time-when-the-next-passage-comes",
        ),
        pytest.param(
            OFFICE,
            [("03-02 09:00", "in"), ("03-02 10:00", "in"), ("03-02 11:00", "out")],
            [("03-02 09:00", "03-02 11:00", BADGE_OUT, "2026-03-02")],
            id="two-badge-ins-one-visit",
        ),
        pytest.param(
            OFFICE,
            [("03-02 08:00", "out"), ("03-02 09:00", "in"), ("03-02 10:00", "out")],
            [("03-02 09:00", "03-02 10:00", BADGE_OUT, "2026-03-02")],
            id="badge-out-with-no-visit-makes-none",
        ),
        pytest.param(
            OFFICE,
            [("03-02 09:00", "in"), ("03-02 19:00", "out")],
            [("03-02 09:00", "03-02 18:00", CLOSING_TIME, "2026-03-02")],
            id="badge-out-after-closing-comes-too-late",
        ),
        pytest.param(
            OFFICE,
            [("03-02 19:00", "in"), ("03-03 10:00", "in"), ("03-03 10:30", "out")],
            [
                ("03-02 19:00", "03-03 09:00", MAX_STAY, "2026-03-02"),
                ("03-03 10:00", "03-03 10:30", BADGE_OUT, "2026-03-03"),
            ],
            id="after-hours-ends-at-the-maximum-stay",
        ),
        pytest.param(
            OFFICE,
            [("03-07 09:30", "in"), ("03-07 12:30", "out")],
            [("03-07 09:30", "03-07 12:00", CLOSING_TIME, "2026-03-07")],
            id="saturday-closes-at-noon",
        ),
        pytest.param(
            AROUND_THE_CLOCK,
            [("03-02 22:00", "in"), ("03-03 02:00", "out")],
            [("03-02 22:00", "03-03 02:00", BADGE_OUT, "2026-03-02")],
            id="across-midnight-belongs-to-the-check-in-day",
        ),
        pytest.param(
            AROUND_THE_CLOCK,
            [("03-29 01:30", "in"), ("03-29 03:30", "out")],
            [("03-29 01:30", "03-29 03:30", BADGE_OUT, "2026-03-29")],
            id="across-the-clock-change",
        ),
    ],
)
def test_visits_from_passages(calendar: Calendar, steps: list, expected: list) -> None:
    assert shape(build(passages(*steps), calendar, MAX)) == expected


def test_a_visit_across_the_clock_change_lasts_its_real_duration() -> None:
    (visit,) = build(passages(("03-29 01:30", "in"), ("03-29 03:30", "out")), AROUND_THE_CLOCK, MAX)
    assert visit.end_at - visit.check_in == 3600  # 01:30 CET to 03:30 CEST


def test_an_open_visit_is_read_closed_past_its_limit_without_being_changed() -> None:
    (visit,) = build(passages(("03-02 09:00", "in")), OFFICE, MAX)
    assert visit.check_out is None and visit.stop_reason is None
    assert effective(visit, at("03-02 17:59")) == (None, None)
    assert effective(visit, at("03-02 18:00")) == (at("03-02 18:00"), CLOSING_TIME)
    assert visit.check_out is None


def test_days_spanned_by_a_visit_across_midnight() -> None:
    (visit,) = build(passages(("03-02 22:00", "in"), ("03-03 02:00", "out")), AROUND_THE_CLOCK, MAX)
    assert [d.isoformat() for d in days_spanned(visit, AROUND_THE_CLOCK)] == [
        "2026-03-02",
        "2026-03-03",
    ]


def test_a_replayed_badge_in_marks_its_visit_historical() -> None:
    late = [
        Passage(at("03-02 09:00"), "a", "in", historical=True),
        Passage(at("03-02 10:00"), "b", "out"),
        Passage(at("03-02 11:00"), "c", "in"),
        Passage(at("03-02 12:00"), "d", "out", historical=True),
    ]
    assert [v.historical for v in build(late, OFFICE, MAX)] == [True, False]


# -- late and out-of-order passages -----------------------------------------------------------


class Stored:
    """The store's use of ``replay`` on lists: anchor, replay, apply the changes."""

    def __init__(self, calendar: Calendar) -> None:
        self.calendar = calendar
        self.passages: list[Passage] = []
        self.visits: list[Visit] = []

    def arrive(self, p: Passage):
        insort(self.passages, p, key=lambda q: q.key)
        start = max((v for v in self.visits if v.key <= p.key), key=lambda v: v.key, default=None)
        anchor = start.key if start else p.key
        result = replay(
            [q for q in self.passages if q.key >= p.key],
            [v for v in self.visits if v.key >= anchor],
            new=p.key,
            start=start,
            calendar=self.calendar,
            max_stay_s=MAX,
        )
        for v in result.removed:
            self.visits.remove(v)
        self.visits = sorted([*self.visits, *result.added], key=lambda v: v.key)
        return result


def test_an_earlier_badge_in_arriving_after_a_later_badge_out() -> None:
    stored = Stored(OFFICE)
    out, earlier_in = passages(("03-02 17:00", "out"), ("03-02 09:00", "in"))
    stored.arrive(out)
    assert stored.visits == []  # a badge-out with no visit open
    stored.arrive(earlier_in)
    assert shape(stored.visits) == [("03-02 09:00", "03-02 17:00", BADGE_OUT, "2026-03-02")]


def test_a_late_badge_out_splits_what_looked_like_one_visit() -> None:
    stored = Stored(OFFICE)
    first_in, second_in, late_out = passages(
        ("03-02 09:00", "in"), ("03-02 14:00", "in"), ("03-02 12:00", "out")
    )
    stored.arrive(first_in)
    stored.arrive(second_in)  # seen as a second tap in the same visit
    assert len(stored.visits) == 1
    result = stored.arrive(late_out)
    assert shape(stored.visits) == [
        ("03-02 09:00", "03-02 12:00", BADGE_OUT, "2026-03-02"),
        ("03-02 14:00", None, None, "2026-03-02"),
    ]
    assert [v.check_in for v in result.removed] == [at("03-02 09:00")]


def test_a_late_passage_rebuilds_only_its_own_stretch() -> None:
    stored = Stored(OFFICE)
    days = ["03-02", "03-03", "03-04", "03-05"]
    for day in days:
        for p in passages((f"{day} 09:00", "in")):
            stored.arrive(Passage(p.ts, f"in-{day}", "in"))
    late = Passage(at("03-03 11:00"), "late-out", "out")
    result = stored.arrive(late)
    assert [v.day for v in result.removed] == ["2026-03-03"]
    assert [(v.day, v.stop_reason) for v in result.added] == [("2026-03-03", BADGE_OUT)]
    assert result.until == (at("03-04 09:00"), "in-03-04")


SCENARIO = [
    ("03-02 08:00", "out"),  # no visit open
    ("03-02 09:00", "in"),
    ("03-02 09:05", "in"),  # a second tap
    ("03-02 12:00", "out"),
    ("03-02 13:00", "in"),  # never badges out: closed at 18:00
    ("03-02 19:00", "out"),  # too late
    ("03-03 09:00", "in"),
]


@pytest.mark.parametrize("seed", range(40))
def test_any_arrival_order_gives_the_visits_of_the_sorted_passages(seed: int) -> None:
    expected = build(passages(*SCENARIO), OFFICE, MAX)
    assert shape(expected) == [
        ("03-02 09:00", "03-02 12:00", BADGE_OUT, "2026-03-02"),
        ("03-02 13:00", "03-02 18:00", CLOSING_TIME, "2026-03-02"),
        ("03-03 09:00", None, None, "2026-03-03"),
    ]
    order = passages(*SCENARIO)
    random.Random(seed).shuffle(order)
    stored = Stored(OFFICE)
    for p in order:
        stored.arrive(p)
    assert stored.visits == expected


def test_every_arrival_order_of_a_short_sequence() -> None:
    steps = [
        ("03-02 09:00", "in"),
        ("03-02 10:00", "in"),
        ("03-02 11:00", "out"),
        ("03-02 19:00", "in"),
    ]
    expected = build(passages(*steps), OFFICE, MAX)
    for order in itertools.permutations(passages(*steps)):
        stored = Stored(OFFICE)
        for p in order:
            stored.arrive(p)
        assert stored.visits == expected, order


def test_random_histories_in_random_orders() -> None:
    rng = random.Random(7)
    for _ in range(200):
        steps = sorted(
            (
                at(f"03-0{rng.randint(2, 4)} {rng.randint(6, 21):02d}:{rng.choice(['00', '30'])}"),
                rng.choice(["in", "in", "out"]),
            )
            for _ in range(rng.randint(1, 9))
        )
        ordered = [Passage(ts, f"e{i:02d}", d) for i, (ts, d) in enumerate(steps)]  # type: ignore[arg-type]
        expected = build(ordered, OFFICE, MAX)
        arrival = ordered[:]
        rng.shuffle(arrival)
        stored = Stored(OFFICE)
        for p in arrival:
            stored.arrive(p)
        assert stored.visits == expected


def test_a_members_month_by_centre() -> None:
    rows = month_rows(
        [
            ("a", "2026-03-02", at("03-02 09:00"), "x", at("03-02 10:00")),
            ("b", "2026-03-02", at("03-02 14:00"), "y", at("03-02 16:30")),  # not first that day
            ("b", "2026-03-03", at("03-03 09:00"), "z", at("03-03 09:30")),
            ("b", "2026-03-03", at("03-03 11:00"), "w", at("03-03 12:00")),
        ]
    )
    assert rows == {"a": (1, 1, 1, 3600.0), "b": (3, 2, 1, 4 * 3600.0)}
