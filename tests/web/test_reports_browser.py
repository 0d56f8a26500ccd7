"""Rapports in a real browser: weeks of visits at two centres drawn as charts, a report
run with its filters and its CSV downloaded; the page's screenshot goes to the README."""

from __future__ import annotations

import csv
import re
import uuid
from collections.abc import Callable
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from playwright.sync_api import expect

from protocol.badges import badge_hash
from protocol.messages import Event
from tests.web.conftest import LiveServer, screenshot

PARIS = ZoneInfo("Europe/Paris")
# Who came when: (name, centre, commute INSEE, weekdays present, arrival h, departure h).
REGULARS = [
    ("Inès Morel", "boitron", "61001", (0, 1, 3), 8.5, 17.0),
    ("Hugo Lemaire", "boitron", "61293", (1, 2, 3, 4), 9.0, 12.5),
    ("Zoé Garnier", "boitron", "61001", (0, 4), 13.5, 18.0),
    ("Malik Benali", "belleme", "61001", (0, 1, 2, 3), 9.5, 16.5),
    ("Lucie Roche", "belleme", "61293", (2, 3), 8.0, 12.0),
]
WEEKS = 6


def history(live_server: LiveServer) -> int:
    """Past weeks of badge-ins and -outs at both centres, sent as units' replayed events
    through the store's ingest (as the MQTT handler does); returns the visits made."""
    api, store = live_server.api, live_server.store
    for centre_id, insee in (("boitron", "61051"), ("belleme", "61038")):
        assert api.patch(f"/api/centres/{centre_id}", json={"insee": insee}).status_code == 200
    store.assign_device("belleme-09", "belleme")  # a unit whose history was replayed
    today = datetime.now(PARIS).date()
    monday = today - timedelta(days=today.weekday() + 7 * WEEKS)
    sent = 0
    for n, (name, centre_id, commute, weekdays, arrive, leave) in enumerate(REGULARS):
        member = api.post(
            "/api/members",
            json={"name": name, "centres": [centre_id], "commute_insee": commute},
        ).json()
        hashed = badge_hash(live_server.key, bytes([4, 0x70, n, 1]))
        device = "boitron-02" if centre_id == "boitron" else "belleme-09"
        events = []
        epoch = uuid.uuid4().hex
        for day in (monday + timedelta(days=d) for d in range(7 * WEEKS)):
            if day.weekday() not in weekdays or (day.toordinal() + n) % 5 == 0:
                continue
            for direction, hour in (("in", arrive), ("out", leave)):
                events.append(
                    access(
                        device, epoch, len(events) + 1, day, hour, hashed, member["id"], direction
                    )
                )
            sent += 1
        store.ingest(device, events, received_at=datetime.now(PARIS).timestamp()).result()
    return sent


def access(
    device: str, epoch: str, seq: int, day: date, hour: float, hashed: str, member_id: int, way: str
) -> Event:
    when = datetime(day.year, day.month, day.day, int(hour), int(hour % 1 * 60), tzinfo=PARIS)
    return Event(
        event_id=str(uuid.uuid4()),
        device_id=device,
        epoch=epoch,
        seq=seq,
        kind="access",
        ts=when.timestamp(),
        clock_synced=True,
        historical=True,
        door="entree",
        badge_hash=hashed,
        granted=True,
        reason="granted",
        direction=way,
        member_id=member_id,
    )


def test_a_report_over_past_weeks_is_drawn_and_its_csv_downloaded(
    new_page: Callable[..., Any], live_server: LiveServer
) -> None:
    visits = history(live_server)
    page = new_page("admin")
    page.goto("/reports")
    expect(page.locator("#charts")).to_have_attribute("data-drawn", "true")
    for canvas in ("#chart-visits", "#chart-occupancy", "#chart-members", "#chart-impact"):
        box = page.locator(canvas).bounding_box()
        assert box and box["width"] > 200 and box["height"] > 100, canvas
    expect(page.locator("#members-title + .chart + details")).to_contain_text("Inès Morel")
    expect(page.locator(".figures")).to_contain_text("kg CO2e évités")
    screenshot(page, "reports", readme=True)

    page.get_by_label("Centre", exact=True).select_option("belleme")
    page.get_by_role("button", name="Afficher").click()
    expect(page).to_have_url(re.compile(r"centre=belleme"))
    table = page.locator("#visits-title ~ details table")
    expect(table.locator("thead")).to_contain_text("Bellême")
    expect(table.locator("thead")).not_to_contain_text("Boitron")
    with page.expect_download() as download:
        page.locator("#visits-title ~ p a", has_text="Télécharger en CSV").click()
    assert download.value.suggested_filename.startswith("visits-")
    rows = list(csv.DictReader(Path(download.value.path()).read_text("utf-8").splitlines()))
    assert {r["centre_id"] for r in rows} == {"belleme"}
    belleme_visits = sum(int(r["visits"]) for r in rows)
    # The stored visits, counted without the report:
    total, _ = live_server.store.visits(
        now=datetime.now(PARIS).timestamp(), centre_id="belleme", limit=1
    )
    assert belleme_visits == total > 0
    assert visits > total
    assert page.script_errors == []
