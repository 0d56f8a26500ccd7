"""Lockdown end to end: the API sends it, the real unit answers and obeys (only badges of
lockdown-exempt members open), says so in its status, and the release lifts it; the unit's
exit and tamper events reach the server like any other, from a scripted simulation too.

A private mosquitto, the real app, and a real edge agent on MockFactory pins.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from edge.agent import EdgeAgent
from edge.cli import main
from protocol.badges import badge_hash
from server.broker import LocalBroker
from tests.conftest import unit_toml, wait_until
from tests.edge.wired import wire

ALICE = bytes.fromhex("04a1b2c3")  # an ordinary member
GUARD = bytes.fromhex("04feed01")  # lockdown-exempt


def enrol(client: TestClient, name: str, uid: bytes, **fields: object) -> dict:
    member = client.post("/api/members", json={"name": name, **fields})
    assert member.status_code == 201, member.text
    badge = client.post(f"/api/members/{member.json()['id']}/badges", json={"uid": uid.hex()})
    assert badge.status_code == 201, badge.text
    return member.json()


def online_unit(server: TestClient, make_unit: Callable[..., EdgeAgent]) -> EdgeAgent:
    unit = make_unit()
    wait_until(
        lambda: server.get("/api/devices/boitron-01").json().get("state") == "online",
        what="the unit online on the server",
    )
    return unit


def device(server: TestClient) -> dict:
    return server.get("/api/devices/boitron-01").json()


def test_lockdown_and_release_through_the_api(
    server: TestClient, make_unit: Callable[..., EdgeAgent], badge_key: bytes
) -> None:
    alice = enrol(server, "Alice Martin", ALICE)
    guard = enrol(server, "Gérard Vigile", GUARD, lockdown_exempt=True)
    assert guard["lockdown_exempt"] is True and alice["lockdown_exempt"] is False
    unit = online_unit(server, make_unit)
    guard_hash = badge_hash(badge_key, GUARD)
    wait_until(
        lambda: (entry := unit.access.entry(guard_hash)) is not None and entry.exempt,
        what="the exempt flag in the unit's list",
    )
    assert not unit.access.entry(badge_hash(badge_key, ALICE)).exempt  # type: ignore[union-attr]

    response = server.post("/api/devices/boitron-01/lockdown", json={"reason": "Alerte"})

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["ok"], body["result"]) == (True, "executed")
    assert unit.lockdown
    wait_until(lambda: device(server).get("lockdown") is True, what="the status on the server")
    command = server.get(f"/api/commands/{body['command_id']}").json()
    assert (command["action"], command.get("door"), command["result"]) == (
        "lockdown",
        None,
        "executed",
    )
    audit = server.get("/api/audit", params={"action": "unit.lockdown"}).json()["items"]
    assert audit[0]["after"]["result"] == "executed" and audit[0]["after"]["reason"] == "Alerte"

    refused = unit.badge("entree", ALICE)
    granted = unit.badge("entree", GUARD)
    assert (refused.granted, refused.reason, refused.member_id) == (False, "lockdown", alice["id"])
    assert (granted.granted, granted.member_id) == (True, guard["id"])
    stored = wait_until(
        lambda: (
            items
            if len(items := server.get("/api/events", params={"kind": "access"}).json()["items"])
            == 2
            else None
        ),
        what="both access events stored",
    )
    assert sorted((e["granted"], e["reason"]) for e in stored) == [
        (False, "lockdown"),
        (True, "granted"),
    ]
    lockdowns = server.get("/api/events", params={"kind": "lockdown"}).json()["items"]
    assert lockdowns and lockdowns[0]["device_id"] == "boitron-01"

    response = server.post("/api/devices/boitron-01/release", json={})
    assert response.status_code == 200, response.text
    assert not unit.lockdown
    wait_until(lambda: device(server).get("lockdown") is False, what="the release on the server")
    assert unit.badge("entree", ALICE).granted


def test_a_lockdown_of_an_offline_unit_is_a_503(
    server: TestClient, make_unit: Callable[..., EdgeAgent]
) -> None:
    unit = online_unit(server, make_unit)
    unit.stop()
    wait_until(lambda: device(server)["state"] == "offline", what="the unit offline")
    assert server.post("/api/devices/boitron-01/lockdown", json={}).status_code == 503


def test_exit_and_tamper_events_are_stored_and_filtered_by_kind(
    server: TestClient, make_unit: Callable[..., EdgeAgent]
) -> None:
    unit = online_unit(server, make_unit)

    unit.exit_pressed("entree")
    unit._tamper_changed(None, False)  # the enclosure opened
    unit._tamper_changed(None, True)

    for kind in ("exit", "tamper", "tamper_cleared"):
        items = wait_until(
            lambda k=kind: server.get("/api/events", params={"kind": k}).json()["items"],
            what=f"the {kind} event stored",
        )
        assert items[0]["device_id"] == "boitron-01"
    assert server.get("/api/events", params={"kind": "exit"}).json()["items"][0]["door"] == "entree"
    wait_until(lambda: unit.outbox.pending_count() == 0, what="every event acknowledged")


def test_a_scripted_simulation_reaches_the_server(
    server: TestClient,
    broker: LocalBroker,
    tmp_path: Path,
    key_file: Path,
    server_key: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    enrol(server, "Alice Martin", ALICE)
    config = tmp_path / "sim.toml"
    config.write_text(
        wire(
            unit_toml(
                broker=broker, key_file=key_file, data_dir=tmp_path / "sim", server_key=server_key
            )
        )
    )
    steps = ["tap entree 04a1b2c3", "exit entree", "tamper entree", "tamper-clear entree"]
    args = ["simulate", "-c", str(config), "--drain-s", "20"]

    code = main([*args, *(a for step in steps for a in ("--step", step))])

    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert out[-1] == "done: 5 events recorded, all acknowledged by the server"
    for kind in ("access", "exit", "tamper", "tamper_cleared"):
        assert server.get("/api/events", params={"kind": kind}).json()["total"] == 1, kind
    [access] = server.get("/api/events", params={"kind": "access"}).json()["items"]
    assert (access["granted"], access["direction"]) == (True, "in")
