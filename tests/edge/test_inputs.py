"""A door's inputs besides its reader, on mock pins: the request-to-exit button, the tamper
switches (a reader's and the unit's), and a second reader inside for the way out. Each is
recorded through the outbox, offline too."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.agent import EdgeAgent
from edge.hardware.fakes import FakeCardReader
from protocol.messages import Event
from protocol.signing import Signer
from tests.edge.support import CONTACT_PIN, RELAY_PIN, FakeTime, wait_until
from tests.edge.wired import (
    ALICE,
    EXIT_PIN,
    TAMPER_PIN,
    UNIT_TAMPER_PIN,
    Wired,
    install_list,
    pin_levels,
)


@pytest.fixture
def wired(tmp_path: Path, key_file: Path, signer: Signer, fake_time: FakeTime) -> Iterator[Wired]:
    made = Wired(tmp_path, key_file, signer, fake_time)
    yield made
    made.close()


def events(agent: EdgeAgent, kind: str | None = None) -> list[Event]:
    pending = agent.outbox.due(now=1e12, limit=1000)
    return [p.event for p in pending if kind is None or p.event.kind == kind]


def energised(agent: EdgeAgent) -> list[bool]:
    """The strike's history since set-up (the board is active-low)."""
    return [not level for level in pin_levels(agent, RELAY_PIN)[1:]]


def press(agent: EdgeAgent, pin: int = EXIT_PIN) -> None:
    mock = agent.hardware.pin_factory.pin(pin)
    mock.drive_low()  # the button shorts the pin to ground
    mock.drive_high()


def test_the_exit_button_opens_the_door_without_a_badge_and_records_an_exit(
    wired: Wired,
) -> None:
    agent = wired.make()

    press(agent)

    [exit_event] = events(agent, "exit")
    assert exit_event.door == "entree" and exit_event.badge_hash is None
    assert energised(agent) == [False, True]
    # The member walks out: the door opening now is no forced entry.
    agent.hardware.pin_factory.pin(CONTACT_PIN).drive_high()
    agent.hardware.pin_factory.pin(CONTACT_PIN).drive_low()
    wait_until(lambda: not agent.hardware.locks["entree"].is_unlocked, what="the relock")
    assert [e.kind for e in events(agent)] == ["exit"]


def test_a_reader_tamper_switch_raises_tamper_then_tamper_cleared_offline(
    wired: Wired,
) -> None:
    agent = wired.make()
    pin = agent.hardware.pin_factory.pin(TAMPER_PIN)

    pin.drive_high()  # the reader is pulled off the wall: its switch opens
    assert agent.status().faults == ["entree: tamper switch: open"]
    pin.drive_high()  # no change, no second alarm
    pin.drive_low()

    pending = agent.outbox.due(now=1e12, limit=10)
    assert [(p.event.kind, p.event.door) for p in pending] == [
        ("tamper", "entree"),
        ("tamper_cleared", "entree"),
    ]
    assert all(p.created_offline for p in pending)  # the link was down: kept, sent later
    assert agent.status().faults is None
    assert not agent.hardware.locks["entree"].is_unlocked


def test_the_units_enclosure_opened_while_it_was_off_is_reported_at_start(
    wired: Wired,
) -> None:
    agent = wired.make(tampered=True)
    agent.start()

    [tamper] = events(agent, "tamper")
    assert tamper.door is None
    assert "unit: tamper switch: open" in (agent.status().faults or [])
    agent.hardware.pin_factory.pin(UNIT_TAMPER_PIN).drive_low()
    [cleared] = events(agent, "tamper_cleared")
    assert cleared.door is None and cleared.seq > tamper.seq


def test_the_exit_reader_reads_the_way_out_and_the_door_reader_the_way_in(
    wired: Wired, badge_key: bytes
) -> None:
    agent = wired.make()
    install_list(agent, badge_key)
    assert agent.config.doors[0].direction == "in"  # the default with an exit reader
    for poller in agent.pollers:
        poller.start()
    names = [p.name for p in agent.pollers]
    assert names == ["reader-entree", "exit-reader-entree"]
    inside: FakeCardReader = agent.hardware.exit_readers["entree"]  # type: ignore[assignment]
    outside: FakeCardReader = agent.hardware.readers["entree"]  # type: ignore[assignment]

    outside.present(ALICE)
    wait_until(lambda: events(agent, "access"), what="the way in")
    outside.remove()
    inside.present(ALICE)
    wait_until(lambda: len(events(agent, "access")) == 2, what="the way out")
    inside.remove()

    assert [(e.granted, e.direction) for e in events(agent, "access")] == [
        (True, "in"),
        (True, "out"),
    ]
    assert agent.outbox.inside_since(11) is None  # gone again


def test_an_exit_reader_that_stops_answering_is_a_fault_of_its_own(wired: Wired) -> None:
    agent = wired.make()
    inside: FakeCardReader = agent.hardware.exit_readers["entree"]  # type: ignore[assignment]
    inside.failing = True
    exit_poller = agent.pollers[1]
    exit_poller.start()

    wait_until(lambda: agent.status().faults, what="the fault in the status")
    assert agent.status().faults == ["entree: exit reader: fake reader: not answering"]
    assert agent.feedback.states("entree") == {"reader_fault"}
    inside.failing = False
    wait_until(lambda: agent.status().faults is None, what="the reader back")
    assert agent.feedback.states("entree") == set()


def test_a_card_going_in_again_without_leaving_is_reported_but_opens(
    wired: Wired, badge_key: bytes
) -> None:
    """Soft anti-passback: the second entry within the window, with no exit between, opens
    the door and records a ``passback`` event after its access event."""
    agent = wired.make(anti_passback_s=600)
    install_list(agent, badge_key)
    assert agent.config.doors[0].direction == "in"  # an exit reader reads the way out
    first = agent.badge("entree", ALICE)
    wired.fake_time.wall += 120
    second = agent.badge("entree", ALICE)
    assert first.granted and second.granted
    [passback] = events(agent, "passback")
    assert (passback.door, passback.member_id, passback.badge_hash) == (
        "entree",
        11,
        second.badge_hash,
    )
    assert passback.seq == second.seq + 1

    agent.badge("entree", ALICE, exit_reader=True)  # out, then in again: nothing to say
    wired.fake_time.wall += 60
    agent.badge("entree", ALICE)
    wired.fake_time.wall += 601  # in again, but after the window
    agent.badge("entree", ALICE)
    assert len(events(agent, "passback")) == 1


def test_anti_passback_is_off_unless_configured(wired: Wired, badge_key: bytes) -> None:
    agent = wired.make()
    install_list(agent, badge_key)
    agent.badge("entree", ALICE)
    agent.badge("entree", ALICE)
    assert events(agent, "passback") == []
