"""The HTTP API of the full app (lifespan, bridge, store): shapes, errors and privacy."""

from __future__ import annotations

import re
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx2
import pytest
from fastapi.testclient import TestClient

from protocol.badges import badge_hash
from protocol.messages import Event, Status
from server.routes import centres, events, members
from server.runtime import Runtime

NOW = 1_750_000_000.0
UID = "04:A1:B2:C3:D4:E5:F6"
UID_HEX = "04a1b2c3d4e5f6"


def runtime(client: TestClient) -> Runtime:
    return client.app.state.runtime  # type: ignore[attr-defined]


def assert_error(response: httpx2.Response, status: int, *words: str) -> str:
    """The one error shape; ``words`` must appear in the message (the field it names)."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"ok", "error", "status"}, body
    assert body["ok"] is False
    assert body["status"] == status and type(body["status"]) is int
    assert isinstance(body["error"], str) and body["error"].strip()
    for word in words:
        assert re.search(rf"\b{re.escape(word)}\b", body["error"]), (word, body["error"])
    return body["error"]


def member(client: TestClient, name: str = "Alice Martin", **fields: object) -> dict:
    response = client.post("/api/members", json={"name": name, **fields})
    assert response.status_code == 201, response.text
    return response.json()


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


def access(device_id: str, seq: int, ts: float) -> Event:
    return Event(
        event_id=str(uuid.uuid4()),
        device_id=device_id,
        epoch="e" * 32,
        seq=seq,
        kind="access",
        ts=ts,
        clock_synced=True,
        door="entree",
        badge_hash="a" * 64,
        granted=True,
        reason="granted",
        direction="in",
        member_id=1,
    )


# -- errors -------------------------------------------------------------------------------------


def test_not_found_errors_have_the_one_shape(server: TestClient) -> None:
    assert_error(server.get("/api/members/4242"), 404, "4242")
    assert_error(server.get("/api/centres/nowhere"), 404, "nowhere")
    assert_error(server.post("/api/badges/4242/revoke"), 404, "4242")
    assert_error(server.get("/api/devices/nowhere-01"), 404, "nowhere-01")
    assert_error(server.put("/api/devices/x-01", json={"centre_id": "nowhere"}), 404, "nowhere")
    assert_error(server.post("/api/members/4242/badges", json={"uid": UID}), 404, "4242")
    assert_error(server.get("/api/no-such-route"), 404)


def test_conflicts_have_the_one_shape(server: TestClient) -> None:
    alice, bob = member(server, "Alice"), member(server, "Bob")
    first = server.post(f"/api/members/{alice['id']}/badges", json={"uid": UID})
    assert first.status_code == 201, first.text
    assert_error(server.post(f"/api/members/{alice['id']}/badges", json={"uid": UID}), 409)
    # the same card typed another way is still the same card
    same = UID.replace(":", "").lower()
    assert_error(server.post(f"/api/members/{bob['id']}/badges", json={"uid": same}), 409)
    assert_error(server.post("/api/centres", json={"id": "boitron", "name": "Again"}), 409)
    assert server.get("/api/centres/boitron").json()["name"] == "Boitron"  # unchanged


def test_validation_errors_name_the_field(server: TestClient) -> None:
    bad_centre = server.post("/api/centres", json={"id": "Bad Id!", "name": "x"})
    assert_error(bad_centre, 422, "id")
    alice = member(server)
    both = server.post(
        f"/api/members/{alice['id']}/badges", json={"uid": UID, "badge_hash": "a" * 64}
    )
    assert_error(both, 422, "uid", "badge_hash")
    assert_error(server.post(f"/api/members/{alice['id']}/badges", json={}), 422, "uid")
    assert_error(server.post(f"/api/members/{alice['id']}/badges", json={"uid": "zz"}), 422, "uid")
    assert_error(server.get("/api/events", params={"limit": 0}), 422, "limit")
    assert_error(server.get("/api/events", params={"since": "yesterday"}), 422, "since")
    assert_error(server.get("/api/members/abc"), 422, "member_id")
    assert_error(server.post("/api/members", json={"name": ""}), 422, "name")
    assert server.get(f"/api/members/{alice['id']}").json()["badges"] == []


def test_unlock_checks_its_request_and_the_unit_before_sending(server: TestClient) -> None:
    assert_error(server.post("/api/devices/nowhere-01/unlock", json={"door": "entree"}), 404)
    for ttl in (0, 31):  # max_command_ttl_s is 30 by default
        assert_error(
            server.post("/api/devices/boitron-01/unlock", json={"door": "entree", "ttl_s": ttl}),
            422,
            "ttl_s",
        )
    assert_error(server.post("/api/devices/boitron-01/unlock", json={}), 422, "door")
    assert_error(server.post("/api/devices/boitron-01/unlock", json={"door": "En trée"}), 422)
    # boitron-01 is registered but never said it was online
    error = assert_error(
        server.post("/api/devices/boitron-01/unlock", json={"door": "entree"}), 503, "offline"
    )
    assert "boitron-01" in error
    store = runtime(server).store
    offline = Status(device_id="boitron-01", state="offline")
    store.record_status(offline, time.time()).result(timeout=10)
    assert_error(server.post("/api/devices/boitron-01/unlock", json={"door": "entree"}), 503)
    assert store.db["commands"].count == 0  # nothing was sent, nothing recorded
    assert_error(server.get(f"/api/commands/{uuid.uuid4()}"), 404)


def test_patching_active_null_does_not_deactivate(server: TestClient) -> None:
    alice = member(server)
    response = server.patch(f"/api/members/{alice['id']}", json={"active": None})
    assert response.status_code in (200, 422), response.text
    assert server.get(f"/api/members/{alice['id']}").json()["active"] is True


def test_patching_name_null_is_a_422(server: TestClient) -> None:
    alice = member(server)
    # The same running app, logged in the same way.
    unchecked = TestClient(server.app, raise_server_exceptions=False, headers=server.headers)
    assert_error(unchecked.patch(f"/api/members/{alice['id']}", json={"name": None}), 422, "name")
    assert server.get(f"/api/members/{alice['id']}").json()["name"] == "Alice Martin"


# -- members and badges ---------------------------------------------------------------------------


def test_member_round_trip(server: TestClient) -> None:
    created = member(
        server,
        "Alice Martin",
        email="alice@example.org",
        valid_until=NOW + 86400,
        centres=["boitron"],
    )
    assert created["active"] is True and created["centres"] == ["boitron"]
    assert created["badges"] == []
    got = server.get(f"/api/members/{created['id']}").json()
    assert got == created

    assert server.post("/api/centres", json={"id": "belleme", "name": "Bellême"}).status_code == 201
    patched = server.patch(
        f"/api/members/{created['id']}",
        json={"active": False, "centres": ["boitron", "belleme"], "email": "a@example.org"},
    )
    assert patched.status_code == 200, patched.text
    body = patched.json()
    assert body["active"] is False
    assert sorted(body["centres"]) == ["belleme", "boitron"]
    assert body["email"] == "a@example.org"
    assert body["name"] == "Alice Martin" and body["valid_until"] == NOW + 86400  # untouched
    assert server.get(f"/api/members/{created['id']}").json() == body

    reopened = server.patch(f"/api/members/{created['id']}", json={"active": True}).json()
    assert reopened["active"] is True and sorted(reopened["centres"]) == ["belleme", "boitron"]


def test_list_members_has_a_total(server: TestClient) -> None:
    for name in ("Claire", "Alice", "Bob"):
        member(server, name)
    page = server.get("/api/members", params={"limit": 2}).json()
    assert page["total"] == 3
    assert [m["name"] for m in page["items"]] == ["Alice", "Bob"]
    rest = server.get("/api/members", params={"limit": 2, "offset": 2}).json()
    assert rest["total"] == 3 and [m["name"] for m in rest["items"]] == ["Claire"]


def test_enrolling_by_uid_keeps_only_a_keyed_hash(server: TestClient, badge_key: bytes) -> None:
    alice = member(server)
    response = server.post(
        f"/api/members/{alice['id']}/badges", json={"uid": UID, "label": "carte bleue"}
    )
    assert response.status_code == 201, response.text
    badge = response.json()
    assert re.fullmatch(r"[0-9a-f]{64}", badge["badge_hash"])
    assert badge["badge_hash"] == badge_hash(badge_key, bytes.fromhex(UID_HEX))
    assert badge["label"] == "carte bleue" and badge["revoked_at"] is None

    texts = [response.text, server.get(f"/api/members/{alice['id']}").text]
    texts.append(server.get("/api/members").text)
    for text in texts:
        for form in (UID_HEX, UID.replace(":", ""), UID):
            assert form.lower() not in text.lower()

    stored = b""
    db_path: Path = runtime(server).settings.db_path
    for path in db_path.parent.glob(db_path.name + "*"):  # the file, its WAL and shm
        stored += path.read_bytes()
    assert badge["badge_hash"].encode() in stored  # we are reading the right files
    for form in (UID_HEX, UID_HEX.upper(), UID, UID.lower()):
        assert form.encode() not in stored, form
    assert bytes.fromhex(UID_HEX) not in stored


def test_revoking_a_badge_sets_revoked_at(server: TestClient) -> None:
    alice = member(server)
    badge = server.post(f"/api/members/{alice['id']}/badges", json={"badge_hash": "b" * 64}).json()
    before = time.time()
    revoked = server.post(f"/api/badges/{badge['id']}/revoke")
    assert revoked.status_code == 200, revoked.text
    assert before - 1 <= revoked.json()["revoked_at"] <= time.time() + 1
    (listed,) = server.get(f"/api/members/{alice['id']}").json()["badges"]
    assert listed["revoked_at"] == revoked.json()["revoked_at"]
    again = server.post(f"/api/badges/{badge['id']}/revoke").json()
    assert again["revoked_at"] == revoked.json()["revoked_at"]  # the first date stays


# -- events, occupancy, health ------------------------------------------------------------------


def test_events_filter_by_centre_and_time(server: TestClient) -> None:
    assert server.post("/api/centres", json={"id": "belleme", "name": "Bellême"}).status_code == 201
    assert server.put("/api/devices/belleme-01", json={"centre_id": "belleme"}).status_code == 200
    store = runtime(server).store
    boitron = [access("boitron-01", i, NOW - t) for i, t in enumerate((300, 200, 100), 1)]
    store.ingest("boitron-01", boitron, NOW).result(timeout=10)
    store.ingest("belleme-01", [access("belleme-01", 1, NOW - 150)], NOW).result(timeout=10)

    everything = server.get("/api/events").json()
    assert everything["total"] == 4
    assert [e["ts"] for e in everything["items"]] == [NOW - 100, NOW - 150, NOW - 200, NOW - 300]

    only = server.get("/api/events", params={"centre": "boitron", "limit": 2}).json()
    assert only["total"] == 3 and only["limit"] == 2
    assert [(e["centre_id"], e["seq"]) for e in only["items"]] == [("boitron", 3), ("boitron", 2)]

    window = server.get(
        "/api/events", params={"since": iso(NOW - 200), "until": iso(NOW - 100)}
    ).json()
    assert window["total"] == 2
    assert [e["ts"] for e in window["items"]] == [NOW - 150, NOW - 200]

    paris = "2025-06-15T17:05:00+02:00"  # NOW - 100 s, written in French summer time
    assert datetime.fromisoformat(paris).timestamp() == NOW - 100
    late = server.get("/api/events", params={"since": paris, "centre": "boitron"}).json()
    assert late["total"] == 1 and late["items"][0]["ts"] == NOW - 100

    assert server.get("/api/events", params={"kind": "room"}).json()["total"] == 0
    assert_error(server.get("/api/events", params={"kind": "coffee"}), 422, "kind")


def test_occupancy_has_one_entry_per_centre(server: TestClient) -> None:
    for centre_id, name in (("belleme", "Bellême"), ("camembert", "Pays de Camembert")):
        assert server.post("/api/centres", json={"id": centre_id, "name": name}).status_code == 201
    entries = server.get("/api/occupancy").json()
    assert sorted(e["centre_id"] for e in entries) == ["belleme", "boitron", "camembert"]
    for entry in entries:
        assert entry["present"] == 0 and entry["people"] == []
    (boitron,) = [e for e in entries if e["centre_id"] == "boitron"]
    assert [u["device_id"] for u in boitron["units"]] == ["boitron-01"]


def test_healthz_reports_the_broker_and_counts(server: TestClient) -> None:
    store = runtime(server).store
    store.ingest("boitron-01", [access("boitron-01", 1, NOW)], NOW).result(timeout=10)
    health = server.get("/healthz").json()
    assert health["ok"] is True
    assert health["mqtt"]["connected"] is True
    assert health["mqtt"]["rejected"] == 0 and health["rejected_by_reason"] == {}
    names = {w["name"] for w in health["workers"]}
    assert {"mqtt-handler", "acker", "store-writer"} <= names
    for worker in health["workers"]:
        assert set(worker) == {"name", "alive", "errors", "last_error"}
        assert worker["alive"] is True and worker["errors"] == 0
    assert health["events"] == 1
    assert health["writer"]["items"] >= 1 and health["writer"]["batches"] >= 1


def test_openapi_lists_every_api_route(server: TestClient) -> None:
    schema = server.get("/openapi.json").json()
    documented = {(path, method.upper()) for path, ops in schema["paths"].items() for method in ops}
    served = {
        (route.path, method)
        for module in (centres, events, members)
        for route in module.router.routes
        for method in route.methods  # type: ignore[attr-defined]
        if route.path.startswith("/api/")  # type: ignore[attr-defined]
    }
    assert len(served) == 20  # every route the three routers declare
    assert served <= documented
    assert ("/api/occupancy/stream", "GET") in documented
    assert ("/healthz", "GET") in documented


def test_the_page_is_served(server: TestClient) -> None:
    page = server.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "<html" in page.text and 'sse-connect="/live/stream"' in page.text


def test_an_unexpected_failure_still_answers_in_the_error_shape(
    server: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = server.app.state.runtime.store  # type: ignore[attr-defined]

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(store, "centres", broken)
    client = TestClient(server.app, raise_server_exceptions=False, headers=server.headers)
    response = client.get("/api/centres")
    assert response.status_code == 500
    assert response.json() == {
        "ok": False,
        "error": "internal error; the server log has the details",
        "status": 500,
    }
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
