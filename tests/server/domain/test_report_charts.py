"""The reports page's figures gathered from the stored reports (pure functions)."""

from __future__ import annotations

from datetime import datetime

import pytest

from server.domain import report_charts as charts
from server.domain.reports import WEEKDAYS, ReportError, month, week


def weekly(label: str, visits: dict[str, int], profile: dict[str, list[float]] | None = None):
    period = week(label)
    empty = {d: [0.0] * 24 for d in WEEKDAYS}
    return {
        "period": period.public(),
        "centres": [{"centre_id": c, "name": c.title(), "visits": n} for c, n in visits.items()],
        "total": {"occupancy": profile or empty},
    }


def test_months_between_counts_months_and_refuses_bad_spans() -> None:
    assert [m.label for m in charts.months_between("2025-11", "2026-02")] == [
        "2025-11",
        "2025-12",
        "2026-01",
        "2026-02",
    ]
    with pytest.raises(ReportError, match="before"):
        charts.months_between("2026-02", "2026-01")
    with pytest.raises(ReportError, match="at most 12"):
        charts.months_between("2025-01", "2026-01")
    with pytest.raises(ReportError, match="YYYY-MM"):
        charts.months_between("2026-1", "2026-02")
    assert charts.months_before(datetime(2026, 2, 10).date(), 3) == ("2025-12", "2026-02")


def test_weeks_over_cover_the_months_with_iso_weeks() -> None:
    weeks = charts.weeks_over([month("2026-03")])
    assert [w.label for w in weeks] == [f"2026-W{n:02d}" for n in range(9, 15)]
    assert weeks[0].first.isoformat() == "2026-02-23"


def test_weekly_visits_puts_each_centre_on_its_own_series() -> None:
    found = charts.weekly_visits(
        [weekly("2026-W10", {"boitron": 3, "belleme": 1}), weekly("2026-W11", {"boitron": 5})]
    )
    assert found["labels"] == ["2026-W10", "2026-W11"]
    assert found["series"] == [
        {"centre_id": "belleme", "name": "Belleme", "data": [1, 0]},
        {"centre_id": "boitron", "name": "Boitron", "data": [3, 5]},
    ]


def test_occupancy_averages_weeks_counting_only_hours_begun() -> None:
    full = {d: [0.0] * 24 for d in WEEKDAYS}
    full["mon"][9] = 4.0
    full["tue"][9] = 2.0
    now = datetime(2026, 3, 9, 12, 0)  # Monday of W11, noon
    cells = charts.occupancy_by_hour(
        [weekly("2026-W10", {}, full), weekly("2026-W11", {}, {d: [0.0] * 24 for d in WEEKDAYS})],
        now,
    )
    by = {(c["weekday"], c["hour"]): c["people"] for c in cells}
    assert len(cells) == 7 * 24
    assert by[("mon", 9)] == 2.0  # (4 + 0) / 2: both Mondays' 9 h have begun
    assert by[("tue", 9)] == 2.0  # this week's Tuesday has not: last week's alone


def test_member_hours_adds_months_and_ranks_most_present_first() -> None:
    january = {"members": [{"member_id": 1, "name": "Ana", "hours": 10.0, "days_present": 2}]}
    february = {
        "members": [
            {"member_id": 1, "name": "Ana", "hours": 2.5, "days_present": 1},
            {"member_id": 2, "name": "Bob", "hours": 20.0, "days_present": 3},
            {"member_id": 3, "name": "Cy", "hours": 0.0, "days_present": 0},
        ]
    }
    assert charts.member_hours([january, february]) == [
        {"member_id": 2, "name": "Bob", "hours": 20.0, "days": 3},
        {"member_id": 1, "name": "Ana", "hours": 12.5, "days": 3},
    ]
    assert len(charts.member_hours([february], top=1)) == 1


def test_impact_adds_months_per_centre_and_csv_has_the_total() -> None:
    def report(km: float) -> dict:
        row = {
            "centre_id": "boitron",
            "name": "Boitron",
            "member_days": 2,
            "undeclared_member_days": 1,
            "km": km,
            "kg_co2e": km * 0.2,
        }
        return {"centres": [row], "method": {"road_factor": 1.2}}

    impact = charts.impact_over([report(100.0), report(50.0)])
    assert impact["total"] == {
        "member_days": 4,
        "undeclared_member_days": 2,
        "km": 150.0,
        "kg_co2e": 30.0,
    }
    text = charts.charts_csv("impact", {"impact": impact})
    assert text.splitlines() == [
        "centre_id,name,member_days,undeclared_member_days,km,kg_co2e",
        "boitron,Boitron,4,2,150.0,30.0",
        "total,,4,2,150.0,30.0",
    ]
    with pytest.raises(ReportError, match="table"):
        charts.charts_csv("nope", {})
