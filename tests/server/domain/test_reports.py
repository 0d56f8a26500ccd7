"""The report rules on plain rows: periods, people present, aggregation, distances, CSV."""

from __future__ import annotations

import csv
import io
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from protocol.calendar import Calendar
from server.domain.reports import (
    SAMPLES_PER_DAY,
    Commune,
    OccupancyDay,
    ReportError,
    day_occupancy,
    departement,
    departement_csv,
    great_circle_km,
    impact,
    impact_csv,
    invoicing,
    invoicing_csv,
    month,
    round_trip_km,
    sample_instants,
    valid_samples,
    week,
)

PARIS = ZoneInfo("Europe/Paris")
CAL = Calendar()
MARCH = month("2026-03")


def at(text: str) -> float:
    return datetime.strptime(f"2026-{text}", "%Y-%m-%d %H:%M").replace(tzinfo=PARIS).timestamp()


@pytest.mark.parametrize(
    ("text", "first", "last"),
    [
        ("2026-03", "2026-03-01", "2026-03-31"),
        ("2024-02", "2024-02-01", "2024-02-29"),  # leap year
        ("2026-12", "2026-12-01", "2026-12-31"),
    ],
)
def test_months(text: str, first: str, last: str) -> None:
    period = month(text)
    assert (period.first.isoformat(), period.last.isoformat()) == (first, last)


@pytest.mark.parametrize(
    ("text", "first"),
    [("2026-W01", "2025-12-29"), ("2026-W10", "2026-03-02"), ("2026-W53", "2026-12-28")],
)
def test_iso_weeks_start_on_monday(text: str, first: str) -> None:
    period = week(text)
    assert period.first.isoformat() == first and (period.last - period.first).days == 6


@pytest.mark.parametrize("text", ["2026-13", "2026-3", "March", "", "1969-12"])
def test_a_bad_month_is_named(text: str) -> None:
    with pytest.raises(ReportError, match="month"):
        month(text)


@pytest.mark.parametrize("text", ["2025-W53", "2026-W00", "2026-10"])
def test_a_bad_week_is_named(text: str) -> None:
    with pytest.raises(ReportError, match="week"):
        week(text)


# -- people present ---------------------------------------------------------------------------


def test_samples_every_five_minutes_and_the_exact_peak() -> None:
    day = date(2026, 3, 2)
    start, end = at("03-02 00:00"), at("03-03 00:00")
    spans = [
        (at("03-02 09:00"), at("03-02 12:00")),
        (at("03-02 11:58"), at("03-02 11:59")),  # between two samples: only the peak sees it
        (at("03-02 12:00"), at("03-02 13:00")),  # arrives as the first leaves: not two
        (at("03-01 22:00"), at("03-02 01:00")),  # from the evening before
    ]
    peak, samples = day_occupancy(spans, sample_instants(CAL, day), start, end)
    assert peak == 2 and len(samples) == SAMPLES_PER_DAY
    assert samples[0] == 1 and samples[12] == 0  # 00:00 and 01:00
    assert samples[9 * 12] == 1 and samples[11 * 12 + 11] == 1 and samples[12 * 12] == 1
    assert max(samples) == 1


def test_a_day_the_clocks_go_forward_still_has_288_local_samples() -> None:
    instants = sample_instants(CAL, date(2026, 3, 29))
    assert len(instants) == SAMPLES_PER_DAY
    assert instants[3 * 12] - instants[0] == 2 * 3600  # 03:00 summer time is 2 h after 00:00
    assert instants[2 * 12] == instants[3 * 12]  # 02:00 does not exist: read as 03:00


def test_only_past_samples_count() -> None:
    found = valid_samples(MARCH, CAL, at("03-03 10:02"))
    assert found[date(2026, 3, 1)] == 288 and found[date(2026, 3, 3)] == 10 * 12 + 1
    assert date(2026, 3, 4) not in found


# -- invoicing ------------------------------------------------------------------------------


def test_invoicing_merges_usage_credits_and_plans() -> None:
    report = invoicing(
        MARCH,
        usage=[(1, 2, 3, 3600 * 16), (2, 1, 1, 1800)],
        credits=[(1, 2), (3, 1)],
        plans=[(1, "Carnet"), (1, "Carnet"), (2, "Abonnement"), (9, "Autre")],
        names={1: "Alice", 2: "bruno", 3: "Chloé"},
    )
    assert [
        (r["name"], r["days_present"], r["hours"], r["credit_days"], r["plans"])
        for r in report["members"]
    ] == [
        ("Alice", 2, 16.0, 2, ["Carnet"]),
        ("bruno", 1, 0.5, 0, ["Abonnement"]),
        ("Chloé", 0, 0.0, 1, []),  # a day credit with no visit still shows
    ]
    rows = list(csv.DictReader(io.StringIO(invoicing_csv(report))))
    assert rows[0] == {
        "period": "2026-03",
        "member_id": "1",
        "name": "Alice",
        "days_present": "2",
        "visits": "3",
        "hours": "16.0",
        "credit_days": "2",
        "plans": "Carnet",
    }


# -- the Département's report -----------------------------------------------------------------

CENTRES = [
    {"id": "a1", "name": "A1", "insee": "61001", "commune": "Alençon"},
    {"id": "a2", "name": "A2", "insee": "61001", "commune": "Alençon"},
    {"id": "b", "name": "B", "insee": "61051", "commune": "Boitron"},
]


def samples(*present: tuple[int, int]) -> list[int]:
    """288 samples with one person from sample i to j (excluded) for each pair."""
    out = [0] * SAMPLES_PER_DAY
    for i, j in present:
        for k in range(i, j):
            out[k] += 1
    return out


def test_new_members_and_the_peak_of_a_commune_with_two_centres() -> None:
    report = departement(
        MARCH,
        CENTRES,
        pairs=[("a1", 1, 2, 7200), ("a2", 2, 1, 3600), ("a2", 1, 1, 3600), ("b", 3, 1, 1800)],
        firsts=[
            (1, "a1", "2026-03-02"),
            (1, "a2", "2026-02-10"),  # came to Alençon before March: not new to the commune
            (2, "a2", "2026-03-02"),
            (3, "b", "2026-03-05"),
            (3, "a1", "2026-01-05"),  # not new to the network either
        ],
        days=[
            OccupancyDay("a1", date(2026, 3, 2), 1, samples((108, 120))),
            OccupancyDay("a2", date(2026, 3, 2), 2, samples((114, 126), (114, 116))),
        ],
        valid_samples={d: 288 for d in MARCH.days()},
        commune_names={"61001": "Alençon"},
    )
    centres = {r["centre_id"]: r for r in report["centres"]}
    assert centres["a1"]["new_members"] == 1 and centres["a2"]["new_members"] == 1
    assert centres["a2"]["peak_occupancy"] == 2  # the stored exact peak
    alencon = next(r for r in report["communes"] if r["insee"] == "61001")
    assert alencon["centres"] == ["a1", "a2"]
    assert (alencon["visits"], alencon["unique_members"], alencon["new_members"]) == (4, 2, 1)
    assert alencon["peak_occupancy"] == 3  # at 09:30-09:35: one at A1, two at A2
    assert alencon["hours"] == 4.0
    total = report["total"]
    assert (total["unique_members"], total["new_members"], total["centres"]) == (3, 1, 3)
    # Monday 2 March 09:00-10:00 at A1: 12 samples over the 5 Mondays of March.
    assert centres["a1"]["occupancy"]["mon"][9] == 0.2
    lines = list(csv.DictReader(io.StringIO(departement_csv(report))))
    assert [line["level"] for line in lines] == ["centre"] * 3 + ["commune"] * 2 + ["total"]
    assert lines[3]["peak_occupancy"] == "3" and lines[0]["occupancy_mon_09"] == "0.2"


# -- impact ---------------------------------------------------------------------------------

COMMUNES = {
    "61051": Commune("61051", "Boitron", 48.5611, 0.2639),
    "72181": Commune("72181", "Le Mans", 48.0021, 0.20251),
    "0": Commune("0", "Equator 0", 0.0, 0.0),
    "1": Commune("1", "Equator 1", 0.0, 1.0),
}


def test_distances() -> None:
    # One degree of longitude on the equator: 2 pi R / 360.
    assert great_circle_km(COMMUNES["0"], COMMUNES["1"]) == pytest.approx(111.195, abs=0.001)
    assert round_trip_km(COMMUNES["0"], COMMUNES["1"]) == pytest.approx(2 * 1.2 * 111.195, abs=0.01)
    assert 62 < great_circle_km(COMMUNES["61051"], COMMUNES["72181"]) < 63


def test_impact_counts_one_round_trip_per_day_present() -> None:
    centres = [{"id": "b", "name": "Boitron", "insee": "61051"}]
    one_way = great_circle_km(COMMUNES["61051"], COMMUNES["72181"])
    report = impact(
        MARCH,
        centres,
        days=[(1, "b", 2), (2, "b", 1), (3, "b", 1), (4, "elsewhere", 1)],
        commutes={1: "72181", 2: None, 3: "61051"},  # 3 works in Boitron itself
        communes=COMMUNES,
        kg_per_km=0.2,
    )
    (row,) = report["centres"]
    assert (row["member_days"], row["members"], row["undeclared_member_days"]) == (3, 2, 1)
    assert row["km"] == round(2 * 2 * 1.2 * one_way, 1)
    assert row["kg_co2e"] == round(2 * 2 * 1.2 * one_way * 0.2, 1)
    lines = list(csv.DictReader(io.StringIO(impact_csv(report))))
    assert lines[-1]["level"] == "total" and lines[-1]["km"] == str(row["km"])


def test_impact_names_what_it_cannot_place() -> None:
    with pytest.raises(ReportError, match=r"unknown commune '14047' \(commute_insee of member 7\)"):
        impact(
            MARCH,
            [{"id": "b", "name": "B", "insee": "61051"}],
            [(7, "b", 1)],
            {7: "14047"},
            COMMUNES,
        )
    with pytest.raises(ReportError, match="centre 'b' has no INSEE code"):
        impact(
            MARCH,
            [{"id": "b", "name": "B", "insee": None}],
            [(7, "b", 1)],
            {7: "72181"},
            COMMUNES,
        )
