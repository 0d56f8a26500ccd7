"""The audit log: an entry for each kind of change with before/after, logins, operators
and tokens (the command line too); admins read it with filters, paging and CSV; the
database refuses to change or delete an entry."""

from __future__ import annotations

import csv
import io
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from server import cli
from server.runtime import Runtime
from tests.conftest import TEST_PASSWORD


@pytest.fixture
def runtime(server: TestClient) -> Runtime:
    return server.app.state.runtime  # type: ignore[attr-defined]


def entries(server: TestClient, **filters: str) -> list[dict]:
    answer = server.get("/api/audit", params={"limit": 500, **filters})
    assert answer.status_code == 200, answer.text
    return answer.json()["items"]


def last(server: TestClient, action: str) -> dict:
    found = entries(server, action=action)
    assert found, f"no audit entry {action}"
    return found[0]


def test_every_change_leaves_an_entry_with_before_and_after(server: TestClient) -> None:
    server.post("/api/centres", json={"id": "belleme", "name": "Bellême"})
    centre = last(server, "centre.created")
    assert centre["actor"] == "admin" and centre["target_id"] == "belleme"
    assert centre["after"]["name"] == "Bellême" and centre["address"] == "testclient"

    server.put("/api/devices/boitron-02", json={"centre_id": "boitron"})
    server.put("/api/devices/boitron-02", json={"centre_id": "belleme"})
    moved = last(server, "device.assigned")
    assert moved["before"] == {"centre_id": "boitron"} and moved["after"] == {
        "centre_id": "belleme"
    }

    member = server.post("/api/members", json={"name": "Alice", "centres": ["boitron"]}).json()
    created = last(server, "member.created")
    assert created["after"]["name"] == "Alice" and created["centre_id"] == "boitron"
    server.patch(f"/api/members/{member['id']}", json={"name": "Alice Martin", "active": False})
    updated = last(server, "member.updated")
    assert updated["before"] == {"name": "Alice", "active": True}
    assert updated["after"] == {"name": "Alice Martin", "active": False}

    badge = server.post(f"/api/members/{member['id']}/badges", json={"uid": "04a1b2c3"}).json()
    enrolled = last(server, "badge.enrolled")
    assert enrolled["target_id"] == str(badge["id"])
    assert enrolled["after"]["member_id"] == member["id"]
    assert "04a1b2c3" not in str(enrolled)  # never the card's UID
    server.post(f"/api/badges/{badge['id']}/revoke")
    revoked = last(server, "badge.revoked")
    assert revoked["before"] == {"revoked_at": None} and revoked["after"]["revoked_at"]


def test_an_unlock_is_logged_with_who_why_and_the_units_answer(
    server: TestClient, runtime: Runtime
) -> None:
    runtime.store.assign_device("boitron-01", "boitron")
    server.post("/api/devices/boitron-01/unlock", json={"door": "entree", "reason": "Livreur"})
    # The unit is offline: nothing was sent, nothing to log. With a unit, the entry holds
    # the command id, the reason and the unit's result (tests/integration/test_commands.py).
    assert entries(server, action="door.unlock") == []


def test_logins_logouts_passwords_and_tokens_are_logged(
    server: TestClient, login_client: Callable[..., TestClient]
) -> None:
    login_client("paul", role="viewer")
    browser = TestClient(server.app)
    browser.post("/api/login", json={"login": "paul", "password": "wrong password"})
    failed = last(server, "login.failed")
    assert failed["actor"] == "paul" and failed["address"] == "testclient"
    assert "wrong" not in str(failed["after"]).replace("bad login or password", "")
    csrf = browser.post("/api/login", json={"login": "paul", "password": TEST_PASSWORD}).json()[
        "csrf_token"
    ]
    assert last(server, "login.succeeded")["actor"] == "paul"
    browser.post(
        "/api/password",
        json={"current": TEST_PASSWORD, "new": "another long password"},
        headers={"X-CSRF-Token": csrf},
    )
    changed = last(server, "password.changed")
    assert changed["actor"] == "paul" and changed["before"] is None and changed["after"] is None
    browser.post("/api/logout", headers={"X-CSRF-Token": csrf})
    assert last(server, "logout")["actor"] == "paul"
    token = server.post("/api/tokens", json={"name": "export", "days": 7}).json()
    made = last(server, "token.created")
    assert made["target_id"] == str(token["id"]) and made["after"]["name"] == "export"
    assert token["token"] not in str(entries(server))  # the secret never lands in the log
    server.delete(f"/api/tokens/{token['id']}")
    assert last(server, "token.revoked")["before"] == {"revoked_at": None}
    created = [e for e in entries(server, action="operator.created") if e["target_id"] == "paul"]
    assert created[0]["actor"] == "cli" and created[0]["after"]["role"] == "viewer"


def test_audit_filters_paging_and_csv(server: TestClient) -> None:
    for n in range(5):
        server.post("/api/members", json={"name": f"M{n}", "centres": ["boitron"]})
    page = server.get("/api/audit", params={"action": "member.created", "limit": 2, "offset": 1})
    body = page.json()
    assert body["total"] == 5 and len(body["items"]) == 2 and body["offset"] == 1
    assert [e["after"]["name"] for e in body["items"]] == ["M3", "M2"]  # newest first
    assert server.get("/api/audit", params={"limit": 501}).status_code == 422
    assert entries(server, actor="nobody") == []
    assert len(entries(server, centre="boitron", action="member.created")) == 5
    assert entries(server, since="2999-01-01T00:00:00Z") == []
    exported = server.get("/api/audit.csv", params={"action": "member.created"})
    assert exported.status_code == 200
    assert exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert len(rows) == 5 and rows[0]["actor"] == "admin" and '"M4"' in rows[0]["after"]


def test_the_audit_log_is_append_only(server: TestClient, runtime: Runtime) -> None:
    server.post("/api/centres", json={"id": "belleme", "name": "Bellême"})
    db = sqlite3.connect(runtime.store.path)
    try:
        for sql in ("UPDATE audit SET actor = 'someone else'", "DELETE FROM audit"):
            with pytest.raises(sqlite3.DatabaseError, match="append-only"):
                db.execute(sql)
    finally:
        db.close()
    assert last(server, "centre.created")["actor"] == "admin"


def test_operator_commands_on_the_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TELECENTRE_DATA_DIR", str(tmp_path / "data"))
    password = tmp_path / "pw"
    password.write_text("a long enough password\n")
    assert (
        cli.main(["operator", "add", "root", "--role", "admin", "--password-file", str(password)])
        == 0
    )
    # No terminal and no file: no password, and certainly no default one.
    assert cli.main(["operator", "add", "bob", "--role", "viewer"]) == 1
    assert "--password-file" in capsys.readouterr().err
    assert (
        cli.main(["operator", "add", "mgr", "--role", "manager", "--password-file", str(password)])
        == 1
    )
    assert "centre" in capsys.readouterr().err
    assert cli.main(["token", "create", "--operator", "root", "--days", "3"]) == 0
    token = capsys.readouterr().out.strip().splitlines()[-1]
    assert token.startswith("tc_")
    assert cli.main(["operator", "list"]) == 0
    listed = capsys.readouterr().out
    assert "root" in listed and "admin" in listed and "active" in listed
    assert cli.main(["operator", "reset-password", "root", "--password-file", str(password)]) == 0
    assert cli.main(["operator", "disable", "root"]) == 0
    assert "disabled" in capsys.readouterr().out

    from server.store import Store

    store = Store(tmp_path / "data" / "telecentre.db")
    try:
        _, items = store.audit_entries(actor="cli")
        actions = {e["action"] for e in items}
        assert actions == {
            "operator.created",
            "token.created",
            "password.reset",
            "operator.disabled",
        }
        assert store.operator_by_login("root").disabled
    finally:
        store.close()
