"""The Rapports page through the real app (no browser): filters, figures and CSV."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable

from fastapi.testclient import TestClient


def figures_of(page: str) -> dict:
    found = re.search(r"data-figures='([^']*)'", page)
    assert found, "no figures on the page"
    return json.loads(found[1])


def test_the_page_shows_every_chart_with_its_figures_and_csv_links(
    login_client: Callable[..., TestClient],
) -> None:
    admin = login_client("alice", role="admin")
    page = admin.get("/reports", params={"from": "2026-01", "to": "2026-02"})
    assert page.status_code == 200
    data = figures_of(page.text)
    assert data["visits"]["labels"][0] == "2026-W01" and data["visits"]["labels"][-1] == "2026-W09"
    assert [s["centre_id"] for s in data["visits"]["series"]] == ["boitron"]
    assert len(data["occupancy"]) == 7 * 24
    for table in ("visits", "occupancy", "members", "impact"):
        assert f"/reports/{table}.csv?from=2026-01&amp;to=2026-02" in page.text
    for canvas in ("chart-visits", "chart-occupancy", "chart-impact"):
        assert f'id="{canvas}"' in page.text


def test_bad_filters_are_named_and_not_a_crash(login_client: Callable[..., TestClient]) -> None:
    admin = login_client("alice", role="admin")
    reversed_ = admin.get("/reports", params={"from": "2026-05", "to": "2026-01"})
    assert reversed_.status_code == 422 and "is before from" in reversed_.text
    too_long = admin.get("/reports", params={"from": "2024-01", "to": "2026-01"})
    assert "at most 12 months" in too_long.text
    nonsense = admin.get("/reports", params={"from": "mai", "to": "2026-01"})
    assert "expected YYYY-MM" in nonsense.text
    unknown = admin.get("/reports", params={"from": "2026-01", "to": "2026-01", "centre": "nulle"})
    assert unknown.status_code == 404 and "introuvable" in unknown.text
    assert admin.get("/reports/visits.csv", params={"from": "x", "to": "y"}).status_code == 422


def test_a_manager_reports_only_on_their_centres(login_client: Callable[..., TestClient]) -> None:
    admin = login_client("alice", role="admin")
    admin.post("/api/centres", json={"id": "belleme", "name": "Bellême"})
    manager = login_client("marc", role="manager", centres=["belleme"])
    data = figures_of(manager.get("/reports", params={"from": "2026-01", "to": "2026-01"}).text)
    assert [s["centre_id"] for s in data["visits"]["series"]] == ["belleme"]
    refused = manager.get(
        "/reports/visits.csv", params={"from": "2026-01", "to": "2026-01", "centre": "boitron"}
    )
    assert refused.status_code == 404


def test_csv_has_one_line_per_week_and_centre(login_client: Callable[..., TestClient]) -> None:
    admin = login_client("alice", role="admin")
    answer = admin.get("/reports/visits.csv", params={"from": "2026-03", "to": "2026-03"})
    assert answer.headers["content-type"].startswith("text/csv")
    assert 'filename="visits-2026-03-2026-03.csv"' in answer.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    assert [r["week"] for r in rows] == [f"2026-W{n:02d}" for n in range(9, 15)]
    assert {r["centre_id"] for r in rows} == {"boitron"} and {r["visits"] for r in rows} == {"0"}
