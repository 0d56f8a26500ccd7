"""Fleet health, alarms and /metrics on the real app and a real mosquitto: what units
publish opens and closes alarms, operators acknowledge them (audited), a retained status
replayed at start does not count as the unit heard, and Prometheus reads the counts."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from protocol import topics
from protocol.messages import Event, Status, encode
from server.app import create_app
from server.broker import LocalBroker
from server.metrics import ServerMetrics
from server.runtime import Runtime
from server.settings import Settings
from server.store import Store
from tests.conftest import as_admin, wait_until
from tests.server.mqtt.support import Listener

UNIT = "boitron-01"
EPOCH = "c" * 32


def runtime(client: TestClient) -> Runtime:
    return client.app.state.runtime  # type: ignore[attr-defined]


@pytest.fixture
def rogue(broker: LocalBroker) -> Iterator[Listener]:
    """A test client allowed to publish on any unit's topics."""
    listener = Listener(broker)
    yield listener
    listener.close()


class Unit:
    """Publishes as one unit: statuses and events, with increasing seqs."""

    def __init__(self, client: Listener, device_id: str = UNIT, centre: str = "boitron") -> None:
        self.client = client
        self.device_id = device_id
        self.centre = centre
        self.seq = 0

    def status(self, *, retain: bool = False, **fields: Any) -> None:
        values: dict[str, Any] = {
            "device_id": self.device_id,
            "state": "online",
            "centre": self.centre,
            "ts": time.time(),
            "software_version": "0.2.0",
            "config_hash": "3f9c2a71d04be58e",
            "clock_synced": True,
            "outbox_pending": 0,
            "doors": ["entree"],
        }
        values.update(fields)
        topic = topics.topic(topics.STATUS, self.device_id)
        self.client.publish(topic, encode(Status(**values)), retain=retain)

    def event(self, kind: str, **fields: Any) -> Event:
        self.seq += 1
        values: dict[str, Any] = {
            "event_id": str(uuid.uuid4()),
            "device_id": self.device_id,
            "epoch": EPOCH,
            "seq": self.seq,
            "kind": kind,
            "ts": time.time(),
            "clock_synced": True,
            "door": "entree",
        }
        values.update(fields)
        event = Event(**values)
        self.client.publish(topics.topic(topics.EVENT, self.device_id), encode(event))
        return event


@pytest.fixture
def unit(rogue: Listener) -> Unit:
    return Unit(rogue)


def alarms(client: TestClient, **params: Any) -> list[dict]:
    answer = client.get("/api/alarms", params=params)
    assert answer.status_code == 200, answer.text
    return answer.json()["items"]


def fleet_unit(client: TestClient, device_id: str = UNIT) -> dict:
    answer = client.get(f"/api/devices/{device_id}")
    assert answer.status_code == 200, answer.text
    return answer.json()


# -- alarms ---------------------------------------------------------------------------------------


def test_a_forced_door_opens_an_alarm_closed_by_the_door_and_listed_until_acknowledged(
    server: TestClient, unit: Unit, login_client: Callable[..., TestClient]
) -> None:
    forced = unit.event("door_forced")
    unit.event("door_forced")  # again while open: still one alarm
    wait_until(lambda: runtime(server).store.event_count() == 2, what="both events stored")
    [alarm] = alarms(server)
    assert alarm["kind"] == "door_forced" and alarm["door"] == "entree"
    assert alarm["device_id"] == UNIT and alarm["centre_id"] == "boitron"
    assert alarm["open"] is True and alarm["acknowledged"] is False
    assert alarm["event_ts"] == forced.ts

    unit.event("door_closed")
    wait_until(lambda: not alarms(server)[0]["open"], what="the alarm closed by door_closed")
    # Closed but not acknowledged: still in the default list and the unacknowledged one.
    assert [a["id"] for a in alarms(server, status="unacknowledged")] == [alarm["id"]]
    assert alarms(server, status="open") == []

    viewer = login_client("viewer", role="viewer")
    assert viewer.post(f"/api/alarms/{alarm['id']}/ack").status_code == 403
    answer = server.post(f"/api/alarms/{alarm['id']}/ack")
    assert answer.status_code == 200, answer.text
    acked = answer.json()
    assert acked["acknowledged"] is True and acked["acknowledged_by"] == "admin"
    assert alarms(server) == []  # closed and acknowledged: done
    assert [a["id"] for a in alarms(server, status="closed")] == [alarm["id"]]

    again = server.post(f"/api/alarms/{alarm['id']}/ack")
    assert again.status_code == 409 and "already acknowledged by admin" in again.json()["error"]

    [entry] = server.get("/api/audit", params={"action": "alarm.acknowledged"}).json()["items"]
    assert entry["actor"] == "admin" and entry["target_kind"] == "alarm"
    assert entry["target_id"] == str(alarm["id"]) and entry["centre_id"] == "boitron"
    assert entry["before"] == {"acknowledged_at": None, "acknowledged_by": None}
    assert entry["after"]["acknowledged_by"] == "admin"
    assert entry["after"]["kind"] == "door_forced" and entry["after"]["open"] is False


def test_an_open_alarm_acknowledged_stays_listed_until_it_closes(
    server: TestClient, unit: Unit
) -> None:
    unit.event("door_held")
    [alarm] = wait_until(lambda: alarms(server), what="door_held alarm")
    assert server.post(f"/api/alarms/{alarm['id']}/ack").status_code == 200
    assert [a["id"] for a in alarms(server)] == [alarm["id"]]  # open: still active
    assert alarms(server, status="unacknowledged") == []
    unit.event("door_closed")
    wait_until(lambda: alarms(server) == [], what="the acknowledged alarm closed")
    unit.event("door_held")  # the door held again: a new alarm
    wait_until(lambda: len(alarms(server, status="all")) == 2, what="a second alarm")


def test_a_manager_sees_and_acknowledges_only_their_centres_alarms(
    server: TestClient, unit: Unit, login_client: Callable[..., TestClient]
) -> None:
    assert server.post("/api/centres", json={"id": "belleme", "name": "Bellême"}).status_code == 201
    assert server.put("/api/devices/belleme-01", json={"centre_id": "belleme"}).status_code == 200
    other = Unit(unit.client, "belleme-01", "belleme")
    unit.event("door_forced")
    other.event("door_forced")
    wait_until(lambda: len(alarms(server)) == 2, what="one alarm per centre")
    manager = login_client("marc", role="manager", centres=["boitron"])
    [mine] = alarms(manager)
    assert mine["centre_id"] == "boitron"
    [theirs] = alarms(server, centre="belleme")
    assert manager.post(f"/api/alarms/{theirs['id']}/ack").status_code == 404
    assert manager.get("/api/alarms", params={"centre": "belleme"}).status_code == 404
    assert manager.post(f"/api/alarms/{mine['id']}/ack").status_code == 200
    assert {u["device_id"] for u in manager.get("/api/fleet").json()["items"]} == {UNIT}
    assert manager.get("/api/devices/belleme-01").status_code == 404


def test_status_alarms_open_and_close_with_the_units_reports(
    server: TestClient, unit: Unit
) -> None:
    def open_kinds() -> dict[str | None, str | None]:
        return {(a["kind"], a["door"]): a["detail"] for a in alarms(server, status="open")}

    unit.status(
        clock_synced=False,
        outbox_pending=501,
        faults=["entree: card reader: no answer on SPI 0.0", "power: undervoltage"],
    )
    found = wait_until(lambda: len(open_kinds()) == 4 and open_kinds(), what="four alarms")
    assert found == {
        ("clock_unsynced", None): "the unit's clock is not synchronised",
        ("outbox_filling", None): "501 events wait in the unit's outbox (alarm above 500)",
        ("reader_fault", "entree"): "card reader: no answer on SPI 0.0",
        ("reader_fault", None): "power: undervoltage",
    }
    assert fleet_unit(server)["open_alarms"] == ["clock_unsynced", "outbox_filling", "reader_fault"]

    unit.status(clock_synced=True, outbox_pending=3, faults=["power: undervoltage"])
    wait_until(lambda: set(open_kinds()) == {("reader_fault", None)}, what="three closed")
    unit.status()
    wait_until(lambda: open_kinds() == {}, what="every alarm closed")
    assert len(alarms(server)) == 4  # closed, still listed until acknowledged


def test_a_unit_naming_another_centre_raises_centre_mismatch(
    server: TestClient, unit: Unit
) -> None:
    unit.status(centre="belleme")
    [alarm] = wait_until(lambda: alarms(server, kind="centre_mismatch"), what="centre_mismatch")
    assert alarm["open"] and alarm["centre_id"] == "boitron"
    assert "'belleme'" in alarm["detail"] and "'boitron'" in alarm["detail"]
    assert fleet_unit(server)["reported_centre"] == "belleme"

    unit.status()  # its config fixed
    wait_until(lambda: not alarms(server, kind="centre_mismatch")[0]["open"], what="closed")

    unit.status(centre="belleme")
    wait_until(lambda: alarms(server, kind="centre_mismatch", status="open"), what="again")
    # Moving the unit to the centre it names, in the registry, settles it too.
    assert server.post("/api/centres", json={"id": "belleme", "name": "Bellême"}).status_code == 201
    assert server.put(f"/api/devices/{UNIT}", json={"centre_id": "belleme"}).status_code == 200
    assert alarms(server, kind="centre_mismatch", status="open") == []
    assert {a["centre_id"] for a in alarms(server, kind="centre_mismatch")} == {"boitron"}


def test_a_unit_offline_past_the_threshold_raises_unit_offline_until_it_is_back(
    server: TestClient, unit: Unit
) -> None:
    rt = runtime(server)
    assert rt.alarm_watch is not None
    unit.status()
    wait_until(lambda: fleet_unit(server)["state"] == "online", what="online")
    unit.status(state="offline")  # its last will
    went = wait_until(
        lambda: fleet_unit(server)["state"] == "offline" and fleet_unit(server)["state_since"],
        what="offline",
    )
    assert rt.alarm_watch.check(now=went + 299) == 0  # not yet past alarm_offline_after_s
    assert rt.alarm_watch.check(now=went + 300) == 1
    assert rt.alarm_watch.check(now=went + 900) == 0  # one alarm while it stays offline
    [alarm] = alarms(server, kind="unit_offline", status="open")
    assert alarm["detail"] == "offline for more than 300 s"

    unit.status()
    wait_until(lambda: alarms(server, kind="unit_offline", status="open") == [], what="closed")
    assert "alarm-watch" in {w["name"] for w in server.get("/healthz").json()["workers"]}


# -- fleet ----------------------------------------------------------------------------------------


def test_the_fleet_view_tells_versions_backlog_and_clock(server: TestClient, unit: Unit) -> None:
    store = runtime(server).store
    state = wait_until(lambda: store.list_state("boitron"), what="boitron's list published")
    # The unit's clock is far off: the backlog's age comes from its own two times.
    unit_now = 1_750_000_000.0
    unit.status(
        ts=unit_now,
        list_version=state.version,
        outbox_pending=7,
        outbox_oldest_ts=unit_now - 120,
        software_version="0.3.1",
    )
    view = wait_until(
        lambda: (u := fleet_unit(server))["software_version"] == "0.3.1" and u, what="status"
    )
    assert view["state"] == "online" and view["state_since"] is not None
    assert view["access_list_version"] == view["access_list_published"] == state.version
    assert view["access_list_current"] is True
    assert 120 <= view["outbox_oldest_age_s"] < 3600
    assert view["clock_synced"] is True and view["config_hash"] == "3f9c2a71d04be58e"

    unit.status(list_version=state.version - 1)
    wait_until(lambda: fleet_unit(server)["access_list_current"] is False, what="stale list")
    assert fleet_unit(server)["outbox_oldest_age_s"] is None  # no backlog any more

    items = server.get("/api/fleet").json()["items"]
    assert [u["device_id"] for u in items] == [UNIT]
    assert items[0]["access_list_current"] is False
    assert server.get("/api/fleet", params={"state": "offline"}).json()["items"] == []


def test_a_retained_status_replayed_at_start_does_not_move_last_seen(
    broker: LocalBroker,
    rogue: Listener,
    tmp_path: Path,
    key_file: Path,
    signing_key_file: Path,
) -> None:
    settings = Settings(
        data_dir=tmp_path / "server",
        badge_key_file=key_file,
        signing_key_file=signing_key_file,
        **broker.server_settings(),  # type: ignore[arg-type]
    )
    heard = time.time() - 3600  # the unit was last heard an hour ago, then went silent
    store = Store(settings.db_path)
    store.create_centre("boitron", "Boitron")
    store.assign_device(UNIT, "boitron")
    store.record_status(Status(device_id=UNIT, state="offline"), heard).result(timeout=10)
    store.close()
    unit = Unit(rogue)
    unit.status(retain=True, software_version="0.4.0")  # the broker keeps it

    started = time.time()
    with TestClient(create_app(settings)) as client:
        as_admin(client)
        view = wait_until(
            lambda: (u := fleet_unit(client))["state"] == "online" and u,
            what="the retained status replayed",
        )
        assert view["software_version"] == "0.4.0"
        assert view["last_seen"] == heard  # the broker's copy is not the unit heard now
        assert view["state_since"] >= started

        unit.status(software_version="0.4.1")  # the unit itself, live
        live = wait_until(
            lambda: (u := fleet_unit(client))["software_version"] == "0.4.1" and u, what="live"
        )
        assert live["last_seen"] >= started
        assert live["state_since"] == view["state_since"]  # still online since then


# -- metrics --------------------------------------------------------------------------------------


def samples(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    answer = client.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(answer.text)
        for s in family.samples
    }


def test_metrics_count_events_decisions_refusals_and_alarms(
    server: TestClient, unit: Unit, login_client: Callable[..., TestClient]
) -> None:
    anonymous = login_client(None)
    before = samples(anonymous)  # no login needed
    assert before[("telecentre_units_online", ())] == 0
    assert before[("telecentre_alarms_open", (("kind", "door_forced"),))] == 0

    unit.event(
        "access",
        badge_hash="a" * 64,
        granted=False,
        reason="unknown_card",
    )
    unit.event("door_forced")
    unit.client.publish(topics.topic(topics.EVENT, UNIT), b'{"v":2,"seq":')
    unit.status()

    def counted() -> dict:
        now = samples(anonymous)
        ready = (
            now.get(("telecentre_events_ingested_total", (("kind", "access"),))) == 1
            and now.get(("telecentre_events_ingested_total", (("kind", "door_forced"),))) == 1
            and now.get(("telecentre_alarms_open", (("kind", "door_forced"),))) == 1
            and now.get(("telecentre_messages_rejected_total", (("reason", "malformed"),))) == 1
            and now[("telecentre_units_online", ())] == 1
        )
        return ready and now

    # Each event is committed on its own: wait for every one, not only the first.
    after = wait_until(counted, what="the events, the refusal, the alarm and the unit counted")
    decision = (("outcome", "denied"), ("reason", "unknown_card"))
    assert after[("telecentre_access_decisions_total", decision)] == 1
    assert after[("telecentre_events_ingested_total", (("kind", "door_forced"),))] == 1
    assert after[("telecentre_alarms_open", (("kind", "door_forced"),))] == 1
    assert after[("telecentre_bridge_lag_seconds_count", ())] == 2
    assert after[("telecentre_writer_batch_size_count", ())] >= 3
    assert after[("telecentre_writer_commit_seconds_count", ())] >= 3
    assert after[("telecentre_units", (("state", "online"),))] == 1

    unit.event("access", badge_hash="b" * 64, granted=True, reason="granted", direction="in")
    wait_until(
        lambda: (
            samples(anonymous).get(
                (
                    "telecentre_access_decisions_total",
                    (("outcome", "granted"), ("reason", "granted")),
                )
            )
            == 1
        ),
        what="a grant counted",
    )


def test_metrics_of_each_app_stay_in_its_own_registry() -> None:
    first, second = ServerMetrics(), ServerMetrics()  # two apps of one process
    first.events_ingested.labels("access").inc()
    assert b'telecentre_events_ingested_total{kind="access"} 1.0' in first.exposition()
    assert b"telecentre_events_ingested_total{" not in second.exposition()
    assert not [m for m in REGISTRY.collect() if m.name.startswith("telecentre_")]
