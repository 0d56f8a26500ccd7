"""The heartbeat end to end: a real unit's ``health`` reaches the fleet view through a
private mosquitto; a dead reader shows the unit degraded with the reason and its recovery;
a unit whose heartbeat stops raises ``unit_silent`` until it is heard again."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient

from edge.agent import EdgeAgent
from edge.hardware.simchip import SimulatedMfrc522, install
from server.runtime import Runtime
from tests.conftest import wait_until


def runtime(client: TestClient) -> Runtime:
    return client.app.state.runtime  # type: ignore[attr-defined]


def fleet_unit(server: TestClient) -> dict[str, Any]:
    return server.get("/api/devices/boitron-01").json()


def health(server: TestClient) -> dict[str, Any] | None:
    return fleet_unit(server).get("health")


def test_a_dead_reader_shows_the_unit_degraded_on_the_server_until_it_answers_again(
    server: TestClient, make_unit: Callable[..., EdgeAgent]
) -> None:
    chip = SimulatedMfrc522()
    with install(chip):
        unit = make_unit(reader="mfrc522")
        first = wait_until(lambda: health(server), what="the first heartbeat on the server")
        assert first["condition"] == "ok"
        assert first["doors"] == [
            {"id": "entree", "reader": "ok", "relay": "locked", "contact": "closed"}
        ]
        assert {"heartbeat", "publisher", "reader-entree"} <= {w["name"] for w in first["workers"]}

        chip.responsive = False  # the reader's cable came loose
        bad = wait_until(
            lambda: (h := health(server)) and h["condition"] == "degraded" and h,
            what="the unit degraded on the server",
        )
        assert bad["doors"][0]["reader"] == "fault"
        assert any(r.startswith("entree: card reader: ") for r in bad["reasons"])
        assert fleet_unit(server)["condition"] == "degraded"
        assert not unit.hardware.locks["entree"].is_unlocked  # fail-secure meanwhile

        chip.responsive = True  # plugged back: the poller reinitialises it
        wait_until(
            lambda: (h := health(server)) and h["condition"] == "ok",
            timeout=30,
            what="the unit ok again after the reader came back",
        )


def test_a_unit_whose_heartbeat_stops_raises_unit_silent_until_it_is_heard_again(
    server: TestClient, make_unit: Callable[..., EdgeAgent]
) -> None:
    unit = make_unit()
    wait_until(lambda: fleet_unit(server).get("health_at"), what="a heartbeat stored")
    # The network goes quiet: the unit still counts as online (no last will yet), but no
    # heartbeat arrives any more.
    unit.heartbeat.stop()
    heard = fleet_unit(server)["health_at"]
    watch = runtime(server).alarm_watch
    assert watch is not None
    # A server that has listened to the broker for less than alarm_silent_after_s (just
    # restarted, or back on the broker) calls no unit silent: it could have missed nothing.
    bridge = runtime(server).bridge
    connected_at = bridge.connected_at
    bridge.connected_at = heard + 10
    assert watch.check(now=heard + 30) == 0
    bridge.connected_at = connected_at
    assert watch.check(now=heard + 29) == 0  # alarm_silent_after_s is 30 s
    assert watch.check(now=heard + 30) == 1
    assert watch.check(now=heard + 90) == 0  # one alarm while the silence lasts
    silent = fleet_unit(server)
    assert silent["silent"] is True and silent["state"] == "online"
    [alarm] = server.get("/api/alarms", params={"kind": "unit_silent", "status": "open"}).json()[
        "items"
    ]
    assert alarm["detail"] == "no heartbeat for more than 30 s while online"

    assert unit.publish_health()  # heard again
    wait_until(lambda: fleet_unit(server)["silent"] is False, what="unit_silent closed")
