"""A member's export and erasure through the running app, and the retention job of the
running server."""

from __future__ import annotations

import logging
import time
import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from protocol.badges import badge_hash
from protocol.messages import Event
from server.retention import RetentionWorker
from server.runtime import Runtime
from server.settings import Settings, SettingsError
from server.store import Store
from tests.conftest import wait_until
from tests.server.privacy_support import find_values

NAME, NEW_NAME, EMAIL = "Zoé Roussel", "Zoé Roussel-Hébert", "zoe.roussel@example.fr"
DAY = 86400


@pytest.fixture
def runtime(server: TestClient) -> Runtime:
    return server.app.state.runtime  # type: ignore[attr-defined]


def send(runtime: Runtime, *fields: dict) -> None:
    events = [
        Event(
            event_id=str(uuid.uuid4()),
            device_id="boitron-01",
            epoch="e" * 32,
            seq=seq,
            clock_synced=True,
            **f,
        )
        for seq, f in enumerate(fields, start=int(time.time() * 1000))
    ]
    runtime.store.ingest("boitron-01", events, received_at=time.time()).result(timeout=10)


def entry(ts: float, member_id: int, badge: str) -> dict:
    return {
        "kind": "access",
        "ts": ts,
        "door": "entree",
        "badge_hash": badge,
        "granted": True,
        "reason": "granted",
        "direction": "in",
        "member_id": member_id,
    }


def zoe(server: TestClient, badge_key: bytes) -> tuple[dict, str]:
    member = server.post(
        "/api/members", json={"name": NAME, "email": EMAIL, "centres": ["boitron"]}
    ).json()
    server.patch(f"/api/members/{member['id']}", json={"name": NEW_NAME})
    answer = server.post(
        f"/api/members/{member['id']}/badges", json={"uid": "04:A1:B2:C3", "label": "Zoé"}
    )
    assert answer.status_code == 201, answer.text
    return member, badge_hash(badge_key, bytes.fromhex("04a1b2c3"))


def list_holds(runtime: Runtime, card: str) -> bool:
    state = runtime.store.list_state("boitron")
    entries = [*state.snapshot, *state.upsert] if state else []
    return bytes.fromhex(card) in {e.badge for e in entries} | set(state.remove if state else [])


def test_an_admin_exports_everything_about_a_member(
    server: TestClient, runtime: Runtime, badge_key: bytes
) -> None:
    member, card = zoe(server, badge_key)
    send(runtime, entry(time.time() - 60, member["id"], card))
    answer = server.get(f"/api/members/{member['id']}/export")
    assert answer.status_code == 200, answer.text
    data = answer.json()
    assert data["member"]["name"] == NEW_NAME and data["member"]["email"] == EMAIL
    assert [b["badge_hash"] for b in data["badges"]] == [card]
    assert [e["member_id"] for e in data["events"]] == [member["id"]]
    assert {"plans", "credit_days", "audit", "exported_at"} <= data.keys()
    actions = [e["action"] for e in data["audit"]]
    assert actions == ["member.created", "member.updated", "badge.enrolled"]
    assert data["audit"][1]["before"]["name"] == NAME  # the history of their own data
    logged = server.get("/api/audit", params={"action": "member.exported"}).json()["items"]
    assert logged[0]["target_id"] == str(member["id"]) and logged[0]["after"]["events"] == 1
    assert server.get("/api/members/99999/export").status_code == 404


def test_erasure_leaves_no_trace_in_tables_logs_lists_or_exports(
    server: TestClient, runtime: Runtime, badge_key: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    member, card = zoe(server, badge_key)
    send(runtime, entry(time.time() - 60, member["id"], card))
    wait_until(lambda: list_holds(runtime, card), what="the card in boitron's list")
    needles = [NAME, NEW_NAME, EMAIL, card]
    member_id = str(member["id"])

    refused = server.post(f"/api/members/{member['id']}/erase", json={"confirm": member["id"] + 1})
    assert refused.status_code == 422
    assert f"confirm: must repeat the member's id ({member['id']})" in refused.json()["error"]
    assert server.get(f"/api/members/{member['id']}").status_code == 200  # nothing happened

    caplog.set_level(logging.DEBUG)
    caplog.clear()
    erased = server.post(f"/api/members/{member['id']}/erase", json={"confirm": member["id"]})
    assert erased.status_code == 200, erased.text
    assert erased.json()["removed"]["badges"] == 1 and erased.json()["removed"]["events"] == 1
    # Every centre they could enter gets a new snapshot: no delta keeps their card.
    wait_until(lambda: not list_holds(runtime, card), what="a snapshot without the card")
    logged = caplog.text.lower()
    assert [n for n in needles if n.lower() in logged] == []

    assert find_values(runtime.settings.db_path, needles) == []
    assert server.get(f"/api/members/{member['id']}").status_code == 404
    assert server.get(f"/api/members/{member['id']}/export").status_code == 404
    entries = server.get("/api/audit", params={"limit": 500}).json()["items"]
    about = [e for e in entries if (e["target_kind"], e["target_id"]) == ("member", member_id)]
    assert [e["action"] for e in about] == ["member.erased", "member.updated", "member.created"]
    assert about[2]["after"]["name"] == "[erased]" and about[1]["before"]["name"] == "[erased]"
    enrolled = next(e for e in entries if e["action"] == "badge.enrolled")
    assert enrolled["after"]["label"] == "[erased]"
    exported = server.get("/api/audit.csv").text + str(entries)
    assert [n for n in needles if n in exported] == []
    assert (
        server.post(
            f"/api/members/{member['id']}/erase", json={"confirm": member["id"]}
        ).status_code
        == 404
    )


def test_the_running_server_purges_on_schedule_and_when_asked(
    server: TestClient, runtime: Runtime
) -> None:
    old = time.time() - 200 * DAY
    send(runtime, entry(old, 1, "a1" * 32), entry(old + 60, 2, "b2" * 32))
    send(runtime, entry(time.time() - 60, 1, "a1" * 32))
    retention = runtime.retention
    assert retention is not None and retention.tried.is_set()  # run before the API opened
    ticket = retention.request()
    wait_until(lambda: retention.done >= ticket, what="a retention run")
    assert runtime.store.event_count() == 1
    (day,) = runtime.store.daily_counts()
    assert (day["granted"], day["unique_members"]) == (2, 2)
    purged = server.get("/api/audit", params={"action": "retention.purged"}).json()["items"]
    assert purged[0]["actor"] == "retention" and purged[0]["after"]["removed"]["events"] == 2
    workers = {w["name"]: w for w in server.get("/healthz").json()["workers"]}
    assert workers["retention"]["alive"]


def test_a_retention_below_one_day_stops_the_start(tmp_path: Path) -> None:
    store = Store(tmp_path / "t.db")
    try:
        with pytest.raises(SettingsError, match="event_retention_days: must be at least 1 day"):
            RetentionWorker(store, Settings(event_retention_days=0))
    finally:
        store.close()
