"""Remote unlock end to end: the API waits for the real unit's answer; attackers get nothing.

A private mosquitto, the real app, and a real edge agent on MockFactory pins.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Callable

from fastapi.testclient import TestClient

from edge.agent import EdgeAgent
from protocol import topics
from protocol.messages import Command
from protocol.signing import Signer
from server.broker import LocalBroker
from server.runtime import Runtime
from tests.conftest import wait_until
from tests.edge.support import RELAY_PIN
from tests.server.mqtt.support import Listener

UNLOCK = "/api/devices/boitron-01/unlock"


def runtime(client: TestClient) -> Runtime:
    return client.app.state.runtime  # type: ignore[attr-defined]


def relay_history(agent: EdgeAgent) -> list[bool]:
    """Energised (True) or not, since the relay was set up; the board is active-low."""
    pin = agent.hardware.pin_factory.pin(RELAY_PIN)
    return [not s.state for s in pin.states[1:]]  # states[0] is the pin before gpiozero


def online_unit(server: TestClient, make_unit: Callable[..., EdgeAgent]) -> EdgeAgent:
    unit = make_unit()
    wait_until(
        lambda: server.get("/api/devices/boitron-01").json().get("state") == "online",
        what="the unit online on the server",
    )
    return unit


def test_unlock_waits_for_the_unit_and_reports_that_the_door_opened(
    server: TestClient, make_unit: Callable[..., EdgeAgent]
) -> None:
    unit = online_unit(server, make_unit)
    response = server.post(UNLOCK, json={"door": "entree", "reason": "Livreur bloqué"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["ok"] is True and body["result"] == "executed"
    assert relay_history(unit)[:2] == [False, True]  # energised before the answer came
    wait_until(lambda: not unit.hardware.locks["entree"].is_unlocked, what="the relay relocks")

    command = server.get(f"/api/commands/{body['command_id']}").json()
    assert (command["device_id"], command["door"], command["action"]) == (
        "boitron-01",
        "entree",
        "unlock",
    )
    assert command["result"] == "executed" and command["requested_by"] == "admin"
    assert command["reason"] == "Livreur bloqué"
    assert 9 < command["expires_at"] - command["issued_at"] <= 10  # ttl_s default 10
    audit = server.get("/api/audit", params={"action": "door.unlock"}).json()["items"]
    assert (audit[0]["actor"], audit[0]["target_id"], audit[0]["centre_id"]) == (
        "admin",
        body["command_id"],
        "boitron",
    )
    assert audit[0]["after"]["reason"] == "Livreur bloqué"
    assert audit[0]["after"]["result"] == "executed"
    events = wait_until(
        lambda: server.get("/api/events", params={"kind": "unlock"}).json()["items"],
        what="the unlock event",
    )
    assert (events[0]["door"], events[0]["reason"]) == ("entree", "remote")


def test_unlock_of_an_offline_unit_is_a_503_and_sends_nothing(
    server: TestClient, make_unit: Callable[..., EdgeAgent]
) -> None:
    unit = online_unit(server, make_unit)
    unit.stop()  # says offline (retained) on its way out
    wait_until(lambda: server.get("/api/devices/boitron-01").json()["state"] == "offline")
    response = server.post(UNLOCK, json={"door": "entree"})
    assert response.status_code == 503, response.text
    assert "offline" in response.json()["error"]
    assert runtime(server).store.db["commands"].count == 0


def test_a_command_the_unit_refuses_is_a_409_with_its_reason(
    server: TestClient, make_unit: Callable[..., EdgeAgent]
) -> None:
    unit = online_unit(server, make_unit)
    response = server.post(UNLOCK, json={"door": "cave"})
    assert response.status_code == 409, response.text
    body = response.json()
    assert body["ok"] is False and body["status"] == 409
    assert body["error"] == "the unit refused the command: unknown_door"
    assert body["reason"] == "unknown_door"
    command = server.get(f"/api/commands/{body['command_id']}").json()
    assert (command["result"], command["result_reason"]) == ("refused", "unknown_door")
    assert relay_history(unit) == [False]


def test_no_answer_in_time_is_a_504_and_a_late_answer_is_still_recorded(
    server: TestClient, make_unit: Callable[..., EdgeAgent]
) -> None:
    unit = online_unit(server, make_unit)
    rt = runtime(server)
    rt.settings = dataclasses.replace(rt.settings, command_wait_s=0.5)
    unit.link._client.loop_stop()  # the unit's link is stuck: the broker still thinks it is up
    response = server.post(UNLOCK, json={"door": "entree", "ttl_s": 20})
    assert response.status_code == 504, response.text
    body = response.json()
    assert "did not answer" in body["error"] and body["status"] == 504
    command = server.get(f"/api/commands/{body['command_id']}").json()
    assert "result" not in command

    unit.link._client.loop_start()  # back: the queued command arrives within its ttl
    wait_until(
        lambda: server.get(f"/api/commands/{body['command_id']}").json().get("result"),
        what="the late answer recorded",
    )
    assert server.get(f"/api/commands/{body['command_id']}").json()["result"] == "executed"


def test_a_retained_command_from_an_attacker_never_opens_the_door(
    server: TestClient,
    broker: LocalBroker,
    make_unit: Callable[..., EdgeAgent],
) -> None:
    rt = runtime(server)
    now = time.time()
    # A genuine command captured on the wire, replayed retained so that a unit (re)booting
    # finds it waiting: the worst case, since its signature is valid.
    captured = Command(
        command_id=str(uuid.uuid4()),
        device_id="boitron-01",
        action="unlock",
        door="entree",
        issued_at=now,
        expires_at=now + 20,
    )
    forged = Command(
        command_id=str(uuid.uuid4()),
        device_id="boitron-01",
        action="unlock",
        door="entree",
        issued_at=now,
        expires_at=now + 20,
    )
    attacker = Listener(broker)
    try:
        command_topic = topics.topic(topics.COMMAND, "boitron-01")
        attacker.publish(command_topic, rt.bridge.signer.sign(captured), retain=True)
        unit = make_unit()
        wait_until(lambda: unit.rejected["retained"] == 1, what="the retained command refused")
        # Live, signed with the attacker's own key: refused too.
        attacker.publish(command_topic, Signer.generate().sign(forged))
        wait_until(lambda: unit.rejected["unknown_key"] == 1, what="the forged command refused")
        wait_until(
            lambda: rt.bridge.rejected.get("not_requested") == 2,
            what="the unit's refusals reached the server, which never sent those commands",
        )
        assert relay_history(unit) == [False]  # the relay never moved
        assert not unit.hardware.locks["entree"].is_unlocked
        assert server.get("/api/events", params={"kind": "unlock"}).json()["total"] == 0
        attacker.publish(command_topic, b"", retain=True)  # clear it
    finally:
        attacker.close()
