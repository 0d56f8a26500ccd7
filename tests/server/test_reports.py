"""Visits and reports through the real app, on hand-computed March 2026 fixtures: three
members at two centres, late and out-of-order events, midnight and the clock change."""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import time
from collections.abc import Callable
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient

from protocol.messages import Event
from server.runtime import Runtime
from tests.server.support import badge_in

PARIS = ZoneInfo("Europe/Paris")
WEEKDAY = [[480, 1080]]
OFFICE_HOURS = [WEEKDAY, WEEKDAY, WEEKDAY, WEEKDAY, WEEKDAY, [], []]
ALICE, BRUNO, CHLOE = "Alice Martin", "Bruno Lefèvre", "Chloé Petit"


def at(text: str) -> float:
    """Paris wall-clock time in 2026, "MM-DD HH:MM"."""
    return datetime.strptime(f"2026-{text}", "%Y-%m-%d %H:%M").replace(tzinfo=PARIS).timestamp()


def runtime(client: TestClient) -> Runtime:
    return client.app.state.runtime  # type: ignore[attr-defined]


SEQ = itertools.count(1)


def passage(device_id: str, member_id: int, when: str, direction: str) -> Event:
    return badge_in(
        device_id,
        next(SEQ),
        member_id,
        ts=at(when),
        direction=direction,  # type: ignore[arg-type]
        epoch="r" * 32,
    )


@pytest.fixture
def world(server: TestClient) -> dict[str, int]:
    """Boitron (61051, Monday-Friday 08:00-18:00) and Bellême (61038, open around the
    clock); Alice commutes to Caen, Bruno to Paris, Chloé declared nothing."""
    assert server.post("/api/centres", json={"id": "belleme", "name": "Bellême"}).status_code == 201
    assert server.put("/api/devices/belleme-01", json={"centre_id": "belleme"}).status_code == 200
    ids = {}
    for name in (ALICE, BRUNO, CHLOE):
        answer = server.post("/api/members", json={"name": name})
        assert answer.status_code == 201, answer.text
        ids[name] = answer.json()["id"]
    alice, bruno, chloe = ids[ALICE], ids[BRUNO], ids[CHLOE]
    store = runtime(server).store

    def setup(db) -> None:
        db["centres"].update("boitron", {"insee": "61051", "hours": json.dumps(OFFICE_HOURS)})
        db["centres"].update("belleme", {"insee": "61038"})
        db["members"].update(alice, {"commute_insee": "14118"})
        db["members"].update(bruno, {"commute_insee": "75056"})
        now = time.time()
        carnet = (
            db["plans"]
            .insert(
                {
                    "name": "Carnet 10 jours",
                    "kind": "day_pass",
                    "days": 10,
                    "hours": "opening",
                    "active": 1,
                    "created_at": now,
                }
            )
            .last_pk
        )
        monthly = (
            db["plans"]
            .insert(
                {
                    "name": "Abonnement mensuel",
                    "kind": "subscription",
                    "hours": "always",
                    "active": 1,
                    "created_at": now,
                }
            )
            .last_pk
        )
        for member, plan, kind, start, end, ended in (
            (alice, carnet, "day_pass", at("02-01 00:00"), at("06-30 00:00"), None),
            (bruno, monthly, "subscription", at("03-01 00:00"), None, None),
            (bruno, carnet, "day_pass", at("01-01 00:00"), None, at("01-31 00:00")),
        ):
            db["member_plans"].insert(
                {
                    "member_id": member,
                    "plan_id": plan,
                    "kind": kind,
                    "valid_from": start,
                    "valid_until": end,
                    "hours": "opening",
                    "created_at": now,
                    "ended_at": ended,
                }
            )
        for member, day, centre in (
            (alice, "2026-03-02", "boitron"),
            (alice, "2026-03-03", "boitron"),
            (alice, "2026-04-01", "boitron"),
            (bruno, "2026-03-04", "belleme"),
        ):
            db["credit_days"].insert(
                {"member_id": member, "day": day, "centre_id": centre, "ts": at(f"{day[5:]} 09:00")}
            )

    store.write(setup)
    events = [
        # Alice at Boitron: Monday morning, Monday afternoon without a badge-out (closed at
        # 18:00 when her next passage comes), Tuesday; and 1 April, outside March.
        passage("boitron-01", alice, "03-02 09:00", "in"),
        passage("boitron-01", alice, "03-02 12:00", "out"),
        passage("boitron-01", alice, "03-02 13:00", "in"),
        passage("boitron-01", alice, "03-03 09:00", "in"),
        passage("boitron-01", alice, "03-03 17:00", "out"),
        passage("boitron-01", alice, "04-01 09:00", "in"),
        passage("boitron-01", alice, "04-01 10:00", "out"),
        # Bruno: Boitron then Bellême on Wednesday 4 March.
        passage("boitron-01", bruno, "03-04 10:00", "in"),
        passage("boitron-01", bruno, "03-04 11:00", "out"),
        passage("belleme-01", bruno, "03-04 14:00", "in"),
        passage("belleme-01", bruno, "03-04 16:00", "out"),
        # ... and Saturday night at Bellême across midnight and the clock change: his
        # badge-out (03:30 summer time) arrives before his badge-in (22:00 winter time).
        passage("belleme-01", bruno, "03-29 03:30", "out"),
        passage("belleme-01", bruno, "03-28 22:00", "in"),
        # Chloé at Bellême: once in February, twice in March (overlapping Alice on Monday).
        passage("belleme-01", chloe, "02-10 09:00", "in"),
        passage("belleme-01", chloe, "02-10 10:00", "out"),
        passage("belleme-01", chloe, "03-02 10:00", "in"),
        passage("belleme-01", chloe, "03-02 10:30", "out"),
        passage("belleme-01", chloe, "03-10 09:00", "in"),
        passage("belleme-01", chloe, "03-10 10:30", "out"),
    ]
    for e in events:  # one at a time, in this order
        store.ingest(e.device_id, [e], time.time()).result(timeout=10)
    return {"alice": alice, "bruno": bruno, "chloe": chloe}


def manager(login_client: Callable[..., TestClient]) -> TestClient:
    return login_client("manager-boitron", role="manager", centres=["boitron"])


def parse(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


# -- visits ---------------------------------------------------------------------------------


def test_visits_as_built_from_the_events(server: TestClient, world: dict[str, int]) -> None:
    answer = server.get(f"/api/visits?member={world['bruno']}")
    assert answer.status_code == 200, answer.text
    items = answer.json()["items"]
    assert [(v["centre_id"], v["day"], v["stop_reason"]) for v in items] == [
        ("belleme", "2026-03-28", "badge_out"),
        ("belleme", "2026-03-04", "badge_out"),
        ("boitron", "2026-03-04", "badge_out"),
    ]
    night = items[0]
    assert night["check_out"] - night["check_in"] == 4.5 * 3600  # 22:00 CET to 03:30 CEST
    assert night["historical"] is True and night["member_name"] == BRUNO
    alice = server.get(f"/api/visits?member={world['alice']}&centre=boitron").json()["items"]
    monday_afternoon = alice[2]
    assert (monday_afternoon["check_out"], monday_afternoon["stop_reason"]) == (
        at("03-02 18:00"),
        "closing_time",
    )
    assert monday_afternoon["closed_on_read"] is False  # stored when Tuesday's badge-in came
    assert server.get("/api/visits?open=true").json()["total"] == 0


def test_a_manager_sees_their_centres_visits_only(
    server: TestClient, world: dict[str, int], login_client: Callable[..., TestClient]
) -> None:
    client = manager(login_client)
    items = client.get("/api/visits?limit=1000").json()["items"]
    assert {v["centre_id"] for v in items} == {"boitron"} and len(items) == 5
    assert client.get("/api/visits?centre=belleme").status_code == 404


# -- invoicing ------------------------------------------------------------------------------


def test_invoicing_per_member_for_the_month(server: TestClient, world: dict[str, int]) -> None:
    answer = server.get("/api/reports/invoicing?month=2026-03")
    assert answer.status_code == 200, answer.text
    report = answer.json()
    assert report["period"] == {
        "kind": "month",
        "label": "2026-03",
        "first_day": "2026-03-01",
        "last_day": "2026-03-31",
    }
    rows = [
        (r["name"], r["days_present"], r["visits"], r["hours"], r["credit_days"], r["plans"])
        for r in report["members"]
    ]
    assert rows == [
        (ALICE, 2, 3, 16.0, 2, ["Carnet 10 jours"]),  # 3 h + 5 h + 8 h
        (BRUNO, 2, 3, 7.5, 1, ["Abonnement mensuel"]),  # 1 h + 2 h + 4.5 h
        (CHLOE, 2, 2, 2.0, 0, []),  # 0.5 h + 1.5 h
    ]
    assert report["total"] == {
        "members": 3,
        "days_present": 6,
        "visits": 8,
        "hours": 25.5,
        "credit_days": 3,
    }
    parsed = parse(server.get("/api/reports/invoicing.csv?month=2026-03").text)
    assert [
        (r["name"], r["days_present"], r["hours"], r["credit_days"], r["plans"]) for r in parsed
    ] == [
        (ALICE, "2", "16.0", "2", "Carnet 10 jours"),
        (BRUNO, "2", "7.5", "1", "Abonnement mensuel"),
        (CHLOE, "2", "2.0", "0", ""),
    ]
    assert {r["period"] for r in parsed} == {"2026-03"}
    april = server.get("/api/reports/invoicing?month=2026-04").json()
    assert [(r["name"], r["visits"], r["credit_days"]) for r in april["members"]] == [(ALICE, 1, 1)]


def test_a_managers_invoicing_counts_their_centres_only(
    server: TestClient, world: dict[str, int], login_client: Callable[..., TestClient]
) -> None:
    client = manager(login_client)
    report = client.get("/api/reports/invoicing?month=2026-03").json()
    assert [
        (r["name"], r["days_present"], r["visits"], r["hours"], r["credit_days"])
        for r in report["members"]
    ] == [(ALICE, 2, 3, 16.0, 2), (BRUNO, 1, 1, 1.0, 0)]
    for suffix in ("", ".csv"):
        refused = client.get(f"/api/reports/invoicing{suffix}?month=2026-03&centre=belleme")
        assert refused.status_code == 404


# -- the Département's report ---------------------------------------------------------------


def test_departement_report_per_centre_commune_and_total(
    server: TestClient, world: dict[str, int]
) -> None:
    answer = server.get("/api/reports/departement?month=2026-03")
    assert answer.status_code == 200, answer.text
    report = answer.json()
    metrics = ("visits", "unique_members", "new_members", "hours", "peak_occupancy")
    centres = {r["centre_id"]: tuple(r[m] for m in metrics) for r in report["centres"]}
    assert centres == {
        "boitron": (4, 2, 2, 17.0, 1),  # Alice and Bruno, both first seen in March
        "belleme": (4, 2, 1, 8.5, 1),  # Chloé came in February already
    }
    communes = {r["insee"]: (r["name"], r["centres"]) for r in report["communes"]}
    assert communes == {"61038": ("Bellême", ["belleme"]), "61051": ("Boitron", ["boitron"])}
    total = report["total"]
    # Alice at Boitron and Chloé at Bellême on Monday 2 March, 10:00-10:30: two at once.
    assert tuple(total[m] for m in metrics) == (8, 3, 2, 25.5, 2)
    boitron = next(r for r in report["centres"] if r["centre_id"] == "boitron")["occupancy"]
    # Five Mondays and five Tuesdays in March 2026, 12 samples an hour.
    assert boitron["mon"][9] == 0.2 and boitron["mon"][17] == 0.2 and boitron["mon"][18] == 0
    assert boitron["tue"][16] == 0.2 and boitron["tue"][17] == 0
    belleme = next(r for r in report["centres"] if r["centre_id"] == "belleme")["occupancy"]
    assert belleme["sat"][22] == 0.25  # four Saturdays
    # Sunday 29 March: present to 03:30 summer time; 02:00-02:55 does not exist that night
    # and is read as 03:00-03:55, so both local hours hold 30 minutes of presence.
    assert belleme["sun"][0] == 0.2 and belleme["sun"][2] == 0.1 and belleme["sun"][3] == 0.1

    parsed = parse(server.get("/api/reports/departement.csv?month=2026-03").text)
    assert [(r["level"], r["id"]) for r in parsed] == [
        ("centre", "belleme"),
        ("centre", "boitron"),
        ("commune", "61038"),
        ("commune", "61051"),
        ("total", ""),
    ]
    assert parsed[-1]["visits"] == "8" and parsed[-1]["peak_occupancy"] == "2"
    assert parsed[1]["occupancy_mon_09"] == "0.2" and len(parsed[1]) == 10 + 7 * 24


def test_departement_report_for_an_iso_week(server: TestClient, world: dict[str, int]) -> None:
    report = server.get("/api/reports/departement?week=2026-W10").json()  # 2-8 March
    assert report["period"]["first_day"] == "2026-03-02"
    assert report["period"]["last_day"] == "2026-03-08"
    assert {r["centre_id"]: r["visits"] for r in report["centres"]} == {
        "boitron": 4,
        "belleme": 2,
    }


def test_a_managers_departement_report_has_their_centres_only(
    server: TestClient, world: dict[str, int], login_client: Callable[..., TestClient]
) -> None:
    report = manager(login_client).get("/api/reports/departement?month=2026-03").json()
    assert [r["centre_id"] for r in report["centres"]] == ["boitron"]
    assert [r["insee"] for r in report["communes"]] == ["61051"]
    assert report["total"]["visits"] == 4 and report["total"]["peak_occupancy"] == 1


def test_report_periods_are_checked(server: TestClient, world: dict[str, int]) -> None:
    for query, word in (
        ("", "month"),
        ("?month=2026-03&week=2026-W10", "month"),
        ("?month=2026-13", "month"),
        ("?week=2026-W53", "week"),  # 2026 has 53 ISO weeks: this one exists
        ("?week=2025-W53", "week"),  # 2025 has 52
    ):
        answer = server.get(f"/api/reports/departement{query}")
        if query == "?week=2026-W53":
            assert answer.status_code == 200
            continue
        assert answer.status_code == 422, (query, answer.text)
        assert word in answer.json()["error"]
    assert server.get("/api/reports/departement?month=2026-03&centre=nowhere").status_code == 404


# -- impact ---------------------------------------------------------------------------------


def haversine(a: tuple[float, float], b: tuple[float, float]) -> float:
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * 6371.0088 * math.asin(math.sqrt(h))


BOITRON, BELLEME = (48.5611, 0.2639), (48.37329, 0.57005)
CAEN, PARIS_POINT = (49.18585, -0.35912), (48.85341, 2.3488)


def test_impact_per_centre(server: TestClient, world: dict[str, int]) -> None:
    answer = server.get("/api/reports/impact?month=2026-03")
    assert answer.status_code == 200, answer.text
    report = answer.json()
    assert report["method"]["road_factor"] == 1.2
    assert report["method"]["kg_co2e_per_km"] == 0.2156
    assert "Base Carbone" in report["method"]["emission_factor_source"]
    assert 155 < haversine(BOITRON, PARIS_POINT) < 158  # Boitron-Paris as the crow flies
    # Boitron: Alice twice (Caen), Bruno once (Wednesday's first visit was at Boitron).
    boitron_km = 2 * 1.2 * (2 * haversine(BOITRON, CAEN) + haversine(BOITRON, PARIS_POINT))
    # Bellême: Bruno's Saturday (Paris); Chloé's two days are undeclared.
    belleme_km = 2 * 1.2 * haversine(BELLEME, PARIS_POINT)
    rows = {r["centre_id"]: r for r in report["centres"]}
    assert (rows["boitron"]["member_days"], rows["boitron"]["members"]) == (3, 2)
    assert (rows["belleme"]["member_days"], rows["belleme"]["undeclared_member_days"]) == (1, 2)
    assert rows["boitron"]["km"] == pytest.approx(boitron_km, abs=0.06)
    assert rows["belleme"]["km"] == pytest.approx(belleme_km, abs=0.06)
    assert rows["boitron"]["kg_co2e"] == pytest.approx(boitron_km * 0.2156, abs=0.06)
    total = report["total"]
    assert (total["member_days"], total["members"], total["undeclared_member_days"]) == (4, 2, 2)
    assert total["km"] == pytest.approx(boitron_km + belleme_km, abs=0.06)

    parsed = parse(server.get("/api/reports/impact.csv?month=2026-03").text)
    assert [(r["level"], r["centre_id"], r["member_days"]) for r in parsed] == [
        ("centre", "belleme", "1"),
        ("centre", "boitron", "3"),
        ("total", "", "4"),
    ]
    assert float(parsed[-1]["kg_co2e"]) == total["kg_co2e"]


def test_impact_names_a_commune_it_cannot_place(server: TestClient, world: dict[str, int]) -> None:
    store = runtime(server).store
    store.write(lambda db: db["members"].update(world["chloe"], {"commute_insee": "99999"}))
    answer = server.get("/api/reports/impact?month=2026-03")
    assert answer.status_code == 422
    assert (
        "99999" in answer.json()["error"] and f"member {world['chloe']}" in answer.json()["error"]
    )
    store.write(lambda db: db["members"].update(world["chloe"], {"commute_insee": None}))
    store.write(lambda db: db["centres"].update("belleme", {"insee": None}))
    answer = server.get("/api/reports/impact.csv?month=2026-03")
    assert answer.status_code == 422 and "belleme" in answer.json()["error"]
