"""The unit's heartbeat: its vital signs, and ``degraded`` with the reason while something
is wrong (a reader, a worker, the outbox, the disk), on MockFactory pins."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from edge.agent import EdgeAgent
from edge.health import LOW_DISK_MB, cpu_temp_c, degraded_reasons
from protocol import topics
from protocol.messages import Health, decode
from protocol.workers import Worker
from tests.conftest import wait_until
from tests.edge.support import CONTACT_PIN, FakeTime

MakeAgent = Callable[..., EdgeAgent]


def test_a_healthy_unit_says_ok_with_its_vital_signs(
    make_agent: MakeAgent, fake_time: FakeTime
) -> None:
    agent = make_agent()
    agent.hardware.pin_factory.pin(CONTACT_PIN).drive_low()  # the door is shut
    fake_time.advance(42)
    health = agent.health()
    assert health.condition == "ok" and health.reasons is None
    assert health.uptime_s == 42
    assert health.interval_s == 10.0  # the default health_interval_s
    assert health.outbox_pending == 0 and health.outbox_oldest_age_s is None
    assert health.list_version is None and health.list_age_s is None  # no list yet
    assert health.disk_free_mb is not None and health.disk_free_mb > 0
    assert health.clock_synced is True and health.lockdown is False
    [door] = health.doors
    assert (door.id, door.reader, door.relay, door.contact) == ("entree", "ok", "locked", "closed")
    assert {w.name for w in health.workers} >= {"publisher", "heartbeat", "reader-entree"}
    # It goes on the wire as its own message.
    assert decode(Health, _encoded(agent)) == health


def _encoded(agent: EdgeAgent) -> bytes:
    agent.published.messages.clear()  # type: ignore[attr-defined]
    assert agent.publish_health()
    [payload] = agent.published.of(topics.HEALTH)  # type: ignore[attr-defined]
    return payload


def test_the_relay_and_the_backlog_show_while_they_last(
    make_agent: MakeAgent, fake_time: FakeTime
) -> None:
    agent = make_agent()
    agent.doors["entree"].open_for()
    agent.exit_pressed("entree")
    fake_time.advance(7)
    health = agent.health()
    assert health.doors[0].relay == "unlocked"
    assert health.outbox_pending >= 1 and health.outbox_oldest_age_s == 7
    wait_until(lambda: agent.health().doors[0].relay == "locked", what="relocked by its timer")


def test_a_reader_fault_makes_the_unit_degraded_and_its_recovery_ok_again(
    make_agent: MakeAgent,
) -> None:
    agent = make_agent()
    agent._reader_fault("entree", "entry", "no answer from the MFRC522")
    health = agent.health()
    assert health.condition == "degraded"
    assert health.reasons == ["entree: card reader: no answer from the MFRC522"]
    assert health.doors[0].reader == "fault"
    assert not agent.hardware.locks["entree"].is_unlocked  # fail-secure
    agent._reader_fault("entree", "entry", None)
    assert agent.health().condition == "ok"


def test_a_dead_worker_makes_the_unit_degraded(make_agent: MakeAgent) -> None:
    agent = make_agent()
    done = threading.Event()
    agent.inbox = Worker("inbox", lambda: done.set() or agent.inbox.stopping.set())
    agent.inbox.start()
    assert done.wait(5)
    agent.inbox.join(5)
    health = agent.health()
    assert health.condition == "degraded"
    assert "unit: worker inbox stopped" in (health.reasons or [])


def test_a_low_disk_a_filling_outbox_and_an_open_tamper_are_reasons() -> None:
    assert degraded_reasons([], [], LOW_DISK_MB) == []
    assert degraded_reasons([], [], None) == []  # the machine did not tell
    assert degraded_reasons(["unit: tamper switch: open"], [], LOW_DISK_MB - 1) == [
        "unit: tamper switch: open",
        f"unit: disk: {LOW_DISK_MB - 1} MB free (below {LOW_DISK_MB} MB)",
    ]


def test_lockdown_and_the_outbox_bound_show_in_the_heartbeat(make_agent: MakeAgent) -> None:
    agent = make_agent(outbox_max_events=100)
    for _ in range(80):
        agent.exit_pressed("entree")
    agent._set_lockdown(True)
    health = agent.health()
    assert health.lockdown is True
    assert health.condition == "degraded"
    assert any("outbox" in r and "80 % full" in r for r in health.reasons or [])


def test_the_cpu_temperature_comes_from_the_thermal_zone(tmp_path: Path) -> None:
    zone = tmp_path / "temp"
    zone.write_text("48312\n")
    assert cpu_temp_c(zone) == 48.3
    assert cpu_temp_c(tmp_path / "missing") is None
    zone.write_text("garbage")
    assert cpu_temp_c(zone) is None


def test_an_open_door_shows_open(make_agent: MakeAgent) -> None:
    agent = make_agent()
    agent.hardware.pin_factory.pin(CONTACT_PIN).drive_high()
    assert agent.health().doors[0].contact == "open"
