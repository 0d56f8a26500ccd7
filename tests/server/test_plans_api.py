"""Centres' calendars, plans, suspension and the lost badge through the real app."""

from __future__ import annotations

from datetime import date

from fastapi.testclient import TestClient

from tests.conftest import wait_until

WEEKDAYS = [[[510, 1080]]] * 5 + [[[540, 720]], []]


def runtime(server: TestClient):  # type: ignore[no-untyped-def]
    return server.app.state.runtime  # type: ignore[attr-defined]


def audit_actions(server: TestClient) -> list[str]:
    return [e["action"] for e in server.get("/api/audit?limit=100").json()["items"]]


def test_a_centres_hours_and_closures_reach_its_list_head(server: TestClient) -> None:
    answer = server.patch(
        "/api/centres/boitron",
        json={"hours": WEEKDAYS, "insee": "61053", "capacity": 14, "lat": 48.56, "lon": 0.25},
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["hours"] == WEEKDAYS and answer.json()["capacity"] == 14
    closure = server.post(
        "/api/centres/boitron/closures",
        json={"start_date": "2026-12-24", "end_date": "2026-12-26", "reason": "fêtes"},
    )
    assert closure.status_code == 201
    publisher = runtime(server).bridge.lists
    wait_until(
        lambda: (
            (s := publisher.state("boitron")) is not None
            and s.calendar is not None
            and date(2026, 12, 24).toordinal() in s.calendar.closed
        ),
        what="the calendar in the head",
    )
    calendar = publisher.state("boitron").calendar
    assert [list(map(list, day)) for day in calendar.hours] == WEEKDAYS
    assert date(2026, 12, 25).toordinal() in calendar.closed  # inside the closure
    days = server.get("/api/centres/boitron/calendar?from=2026-11-09&days=5").json()
    assert [d["closed"] for d in days] == [None, None, "jour férié", None, None]
    assert days[0]["open"] == [[510, 1080]]
    assert {"centre.updated", "closure.added"} <= set(audit_actions(server))


def test_bad_hours_time_zones_and_closures_are_refused_by_name(server: TestClient) -> None:
    overlap = [[[600, 700], [650, 800]]] + [[]] * 6
    for body, word in (
        ({"hours": overlap}, "overlap"),
        ({"hours": [[[600, 500]]] + [[]] * 6}, "within a day"),
        ({"hours": [[]] * 6}, "hours"),
        ({"timezone": "Mars/Olympus"}, "time zone"),
        ({"insee": "6100"}, "insee"),
    ):
        answer = server.patch("/api/centres/boitron", json=body)
        assert answer.status_code == 422, body
        assert word in answer.json()["error"], answer.json()
    backwards = server.post(
        "/api/centres/boitron/closures", json={"start_date": "2026-12-26", "end_date": "2026-12-24"}
    )
    assert backwards.status_code == 422 and "before" in backwards.json()["error"]
    assert (
        server.post(
            "/api/centres/nowhere/closures",
            json={"start_date": "2026-12-26", "end_date": "2026-12-26"},
        ).status_code
        == 404
    )


def test_plans_are_given_to_members_and_reach_the_list(server: TestClient) -> None:
    assert server.post("/api/plans", json={"name": "Carnet", "kind": "day_pass"}).status_code == 422
    window = server.post(
        "/api/plans", json={"name": "Matins", "kind": "subscription", "hours": "window"}
    )
    assert window.status_code == 422 and "window" in window.json()["error"]
    plan = server.post("/api/plans", json={"name": "Carnet 10", "kind": "day_pass", "days": 10})
    assert plan.status_code == 201, plan.text
    member = server.post("/api/members", json={"name": "Inès Morel", "centres": ["boitron"]})
    member_id = member.json()["id"]
    badge = server.post(f"/api/members/{member_id}/badges", json={"uid": "04:AA:BB:CC"}).json()
    held = server.post(f"/api/members/{member_id}/plans", json={"plan_id": plan.json()["id"]})
    assert held.status_code == 201 and held.json()["days_left"] == 10
    assert server.post(f"/api/members/{member_id}/plans", json={"plan_id": 999}).status_code == 422
    publisher = runtime(server).bridge.lists
    badge_bytes = bytes.fromhex(badge["badge_hash"])

    def listed_plans():  # type: ignore[no-untyped-def]
        state = publisher.state("boitron")
        entries = {e.badge: e for e in [*state.snapshot, *state.upsert]} if state else {}
        entry = entries.get(badge_bytes)
        return entry.plans if entry is not None else None

    wait_until(lambda: listed_plans(), what="the plan in the list")
    assert listed_plans()[0].credits == 10  # type: ignore[index]
    ended = server.post(f"/api/members/{member_id}/plans/{held.json()['id']}/end")
    assert ended.status_code == 200 and ended.json()["ended_at"] is not None
    assert {"plan.created", "plan.given", "plan.ended"} <= set(audit_actions(server))


def test_suspension_and_reactivation_carry_their_reason(server: TestClient) -> None:
    member_id = server.post("/api/members", json={"name": "Hugo Petit"}).json()["id"]
    assert server.post(f"/api/members/{member_id}/suspend", json={}).status_code == 422
    suspended = server.post(f"/api/members/{member_id}/suspend", json={"reason": "impayé"})
    assert suspended.status_code == 200
    assert suspended.json()["active"] is False
    assert suspended.json()["suspended_reason"] == "impayé"
    back = server.post(f"/api/members/{member_id}/reactivate", json={"reason": "régularisé"})
    assert back.json()["active"] is True and back.json()["suspended_reason"] is None
    entries = server.get("/api/audit?limit=100").json()["items"]
    suspension = next(e for e in entries if e["action"] == "member.suspended")
    assert suspension["after"]["reason"] == "impayé"
    assert suspension["before"]["active"] is True


def test_a_lost_badge_is_revoked_and_replaced_in_one_step(server: TestClient) -> None:
    member_id = server.post("/api/members", json={"name": "Léo Girard"}).json()["id"]
    lost = server.post(f"/api/members/{member_id}/badges", json={"uid": "04:01:02:03"}).json()
    new = server.post(f"/api/badges/{lost['id']}/replace", json={"uid": "04:09:08:07"})
    assert new.status_code == 201, new.text
    badges = {b["id"]: b for b in server.get(f"/api/members/{member_id}").json()["badges"]}
    assert badges[lost["id"]]["revoked_at"] is not None
    assert badges[new.json()["id"]]["revoked_at"] is None
    # The replacement cannot be the lost card, nor a card live elsewhere: nothing changes.
    same = server.post(f"/api/badges/{new.json()['id']}/replace", json={"uid": "04:09:08:07"})
    assert same.status_code == 409 and "lost card" in same.json()["error"]
    other = server.post("/api/members", json={"name": "Autre"}).json()["id"]
    taken = server.post(f"/api/members/{other}/badges", json={"uid": "04:55:55:55"}).json()
    clash = server.post(f"/api/badges/{new.json()['id']}/replace", json={"uid": "04:55:55:55"})
    assert clash.status_code == 409 and "already enrolled" in clash.json()["error"]
    badges = {b["id"]: b for b in server.get(f"/api/members/{member_id}").json()["badges"]}
    assert badges[new.json()["id"]]["revoked_at"] is None  # the revocation was rolled back
    assert server.get(f"/api/members/{other}").json()["badges"][0]["id"] == taken["id"]
    assert "badge.replaced" in audit_actions(server)


def test_rooms_and_doors_are_described_in_the_registry(server: TestClient) -> None:
    room = server.put(
        "/api/centres/boitron/rooms/visio",
        json={"name": "Salle visio", "capacity": 6, "bookable": True},
    )
    assert room.status_code == 200, room.text
    assert room.json() == {
        "room_id": "visio",
        "name": "Salle visio",
        "capacity": 6,
        "bookable": True,
        "device_id": None,
    }
    door = server.put(
        "/api/centres/boitron/doors/entree", json={"name": "Entrée", "device_id": "boitron-01"}
    )
    assert door.status_code == 200 and door.json()["device_id"] == "boitron-01"
    elsewhere = server.put(
        "/api/centres/boitron/doors/cour", json={"name": "Cour", "device_id": "belleme-01"}
    )
    assert elsewhere.status_code == 422 and "belleme-01" in elsewhere.json()["error"]
    assert [d["door_id"] for d in server.get("/api/centres/boitron/doors").json()] == ["entree"]
    assert server.get("/api/centres/boitron/rooms").json()[0]["capacity"] == 6
    assert {"room.updated", "door.updated"} <= set(audit_actions(server))


def test_a_member_declares_the_commune_they_would_commute_to(server: TestClient) -> None:
    unknown = server.post("/api/members", json={"name": "Paul Roy", "commute_insee": "99999"})
    assert unknown.status_code == 422 and "commute_insee" in unknown.json()["error"]
    assert (
        server.post("/api/members", json={"name": "Paul Roy", "commute_insee": "caen"}).status_code
        == 422
    )
    member = server.post("/api/members", json={"name": "Paul Roy", "commute_insee": "14118"})
    assert member.status_code == 201 and member.json()["commute_insee"] == "14118"
    moved = server.patch(f"/api/members/{member.json()['id']}", json={"commute_insee": None})
    assert moved.status_code == 200 and moved.json()["commute_insee"] is None
