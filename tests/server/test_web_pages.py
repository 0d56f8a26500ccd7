"""The pages answered by the real app (TestClient, session cookies): paging, bad input,
CSV, language, the login's redirect, CSRF on a page's write, a unit gone offline."""

from __future__ import annotations

import csv
import io
import time
import uuid
from collections.abc import Callable

from fastapi.testclient import TestClient

from edge.agent import EdgeAgent
from protocol.messages import Event
from server.auth import service
from server.auth.deps import CSRF_HEADER
from tests.conftest import TEST_PASSWORD, wait_until


def browser(server: TestClient, login: str, role: str = "admin") -> TestClient:
    """A client logged in through the login form, as a browser is (session cookie)."""
    runtime = server.app.state.runtime  # type: ignore[attr-defined]
    service.create_operator(
        runtime.store,
        login=login,
        name=login.title(),
        role=role,
        centres=["boitron"] if role == "manager" else None,
        password=TEST_PASSWORD,
        actor="cli",
        address=None,
        now=time.time(),
    )
    client = TestClient(server.app)
    answer = client.post(
        "/login", data={"login": login, "password": TEST_PASSWORD}, follow_redirects=False
    )
    assert answer.status_code == 303, answer.text
    return client


def refusals(server: TestClient, count: int) -> None:
    """``count`` unknown cards refused at boitron's door, a second apart."""
    store = server.app.state.runtime.store  # type: ignore[attr-defined]
    start = time.time() - count
    events = [
        Event(
            event_id=str(uuid.uuid4()),
            device_id="boitron-01",
            epoch="e" * 32,
            seq=n + 1,
            kind="access",
            ts=start + n,
            clock_synced=True,
            door="entree",
            badge_hash=f"{n:064x}",
            granted=False,
            reason="unknown_card",
            direction="in",
        )
        for n in range(count)
    ]
    store.ingest("boitron-01", events, time.time()).result(timeout=10)


def test_events_are_paged_and_exported_with_the_same_filters(server: TestClient) -> None:
    refusals(server, 60)
    client = browser(server, "pagination")
    first = client.get("/events", params={"decision": "denied"})
    assert first.status_code == 200
    assert "60 événement(s)" in first.text and "Page 1 sur 2" in first.text
    assert first.text.count("refusé (carte inconnue)") == 50
    assert 'href="/events?decision=denied&amp;page=2"' in first.text
    second = client.get("/events", params={"decision": "denied", "page": "2"})
    assert second.text.count("refusé (carte inconnue)") == 10
    exported = client.get("/events.csv", params={"decision": "denied", "door": "entree"})
    assert exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert len(rows) == 60 and {r["reason"] for r in rows} == {"unknown_card"}
    elsewhere = client.get("/events", params={"door": "porte-b"}).text
    assert "0 événement(s)" in elsewhere and "refusé (carte inconnue)" not in elsewhere


def test_bad_filters_are_named_on_the_page(server: TestClient) -> None:
    client = browser(server, "filtres")
    answer = client.get(
        "/events",
        params={"since": "demain", "kind": "explosion", "centre": "nowhere", "door": "A B"},
    )
    assert answer.status_code == 422
    for message in (
        "Date de début : AAAA-MM-JJ.",
        "Type d&#39;événement inconnu.",
        "Centre inconnu.",
        "Porte : lettres minuscules",
    ):
        assert message in answer.text
    assert client.get("/events.csv", params={"until": "31/12/2026"}).status_code == 422


def test_a_manager_does_not_see_another_centre_in_the_events(server: TestClient) -> None:
    server.post("/api/centres", json={"id": "belleme", "name": "Bellême"})
    refusals(server, 1)
    manager = browser(server, "gerant", role="manager")
    page = manager.get("/events")
    assert "Bellême" not in page.text and "Boitron" in page.text
    assert manager.get("/events", params={"centre": "belleme"}).status_code == 422


def test_the_language_cookie_turns_the_pages_english(server: TestClient) -> None:
    client = browser(server, "anglais")
    switched = client.get("/lang/en", params={"next": "/fleet"}, follow_redirects=False)
    assert switched.status_code == 303 and switched.headers["location"] == "/fleet"
    page = client.get("/fleet")
    assert '<html lang="en">' in page.text and "<h1>Fleet</h1>" in page.text
    assert client.get("/lang/de", params={"next": "/"}, follow_redirects=False).status_code == 303
    assert '<html lang="en">' in client.get("/fleet").text  # an unknown language changes nothing


def test_login_goes_back_only_to_a_page_of_this_site(server: TestClient) -> None:
    browser(server, "retour")
    for asked, landing in (("/events", "/events"), ("//evil.example/", "/"), ("https://x", "/")):
        client = TestClient(server.app)
        answer = client.post(
            "/login",
            data={"login": "retour", "password": TEST_PASSWORD, "next": asked},
            follow_redirects=False,
        )
        assert answer.headers["location"] == landing


def test_a_page_write_needs_the_sessions_csrf_token(server: TestClient) -> None:
    client = browser(server, "jeton")
    refused = client.post("/logout", follow_redirects=False)
    assert refused.status_code == 403 and "CSRF" in refused.json()["error"]
    assert client.get("/fleet").status_code == 200  # still logged in
    token = client.cookies.get("telecentre_csrf")
    done = client.post("/logout", headers={CSRF_HEADER: token}, follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == "/login"
    assert client.get("/fleet", follow_redirects=False).status_code == 303


def test_a_unit_gone_offline_shows_since_when(
    server: TestClient, make_unit: Callable[..., EdgeAgent]
) -> None:
    unit = make_unit()
    client = browser(server, "parc")
    wait_until(lambda: "en ligne" in client.get("/").text, what="the unit online")
    unit.stop()
    wait_until(lambda: "hors ligne depuis" in client.get("/").text, what="the unit offline")
    fleet = client.get("/fleet").text
    print(fleet[fleet.find("<tbody>") : fleet.find("</tbody>")])
    assert "hors ligne depuis" in fleet
