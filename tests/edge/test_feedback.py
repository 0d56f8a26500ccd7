"""The lights and buzzer at the door: each outcome has its own pattern, recorded on mock pins,
played off the badge path; the unit's states (lockdown, reader fault, offline) show between
cards."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory

from edge.agent import EdgeAgent
from edge.feedback import (
    PATTERNS,
    REASON_PATTERNS,
    STATE_PATTERNS,
    STATE_PRIORITY,
    Feedback,
    Pattern,
    Track,
    for_access,
)
from edge.hardware.gpio import GpiozeroSignal
from protocol.badges import badge_hash
from protocol.messages import DAY_PASS, DENY_REASONS, ListEntry, PlanRule
from protocol.signing import Signer
from tests.edge.support import FakeTime, wait_until
from tests.edge.wired import (
    ALICE,
    BUZZER_PIN,
    EXIT_PIN,
    GREEN_PIN,
    RED_PIN,
    STRANGER,
    Wired,
    install_list,
    pin_levels,
)

PINS = {"green": GREEN_PIN, "red": RED_PIN, "buzzer": BUZZER_PIN}


@pytest.fixture
def wired(tmp_path: Path, key_file: Path, signer: Signer, fake_time: FakeTime) -> Iterator[Wired]:
    made = Wired(tmp_path, key_file, signer, fake_time)
    yield made
    made.close()


def expected_levels(pattern: Pattern, output: str) -> list[bool]:
    """What the pattern does to one output, from off, repeats merged."""
    levels = [False]
    for _, out, value in pattern.steps():
        if out == output and levels[-1] != bool(value):
            levels.append(bool(value))
    return levels


def recorded(factory: MockFactory, pin: int) -> list[bool]:
    levels: list[bool] = []
    for state in factory.pin(pin).states:
        if not levels or levels[-1] != bool(state.state):
            levels.append(bool(state.state))
    return levels


def test_every_outcome_has_a_pattern_of_its_own() -> None:
    shapes = {
        name: tuple((t.output, t.on_s, t.off_s, t.n, t.tone, t.start_s) for t in pattern.tracks)
        for name, pattern in PATTERNS.items()
    }
    assert len(set(shapes.values())) == len(shapes)
    # A rule refusal sounds different from a card the unit does not know or refuses.
    assert len({for_access(False, r) for r in ("no_credit", "outside_hours", "unknown_card")}) == 3
    assert for_access(False, "revoked") == for_access(False, "suspended") == "denied"
    assert for_access(False, "outside_hours") == for_access(False, "centre_closed") == "closed"
    assert for_access(True, "granted") == "granted"
    assert set(REASON_PATTERNS) <= set(DENY_REASONS)
    assert set(STATE_PRIORITY) == set(STATE_PATTERNS)


def test_steps_put_an_end_before_a_start_at_the_same_instant() -> None:
    pattern = Pattern((Track("buzzer", 0.25, 0, 1, 659), Track("buzzer", 0.25, 0, 1, 330, 0.25)))
    assert pattern.steps() == [
        (0.0, "buzzer", 659),
        (0.25, "buzzer", 0.0),
        (0.25, "buzzer", 330),
        (0.5, "buzzer", 0.0),
    ]
    assert pattern.duration_s == 0.5


@pytest.mark.parametrize("name", sorted(PATTERNS))
def test_each_pattern_is_played_exactly_on_the_pins(name: str) -> None:
    factory = MockFactory()
    signals = {
        out: GpiozeroSignal(pin, what=out, buzzer=out == "buzzer", pin_factory=factory)
        for out, pin in PINS.items()
    }
    feedback = Feedback({"entree": dict(signals)}, scale=0.001)
    feedback.start()
    try:
        feedback.play("entree", name)
        wait_until(lambda: ("entree", name) in feedback.finished, what=f"pattern {name}")
    finally:
        feedback.close()
    for out, pin in PINS.items():
        assert recorded(factory, pin) == expected_levels(PATTERNS[name], out), out


def test_a_new_card_cuts_the_pattern_under_way_short() -> None:
    factory = MockFactory()
    green = GpiozeroSignal(GREEN_PIN, what="green", pin_factory=factory)
    red = GpiozeroSignal(RED_PIN, what="red", pin_factory=factory)
    feedback = Feedback({"entree": {"green": green, "red": red}}, scale=100.0)  # minutes long
    feedback.start()
    try:
        feedback.play("entree", "granted")
        wait_until(lambda: recorded(factory, GREEN_PIN) == [False, True], what="green on")
        feedback.play("entree", "denied")
        wait_until(lambda: recorded(factory, RED_PIN) == [False, True], what="red on")
        assert recorded(factory, GREEN_PIN) == [False, True, False]  # cut, not finished
    finally:
        feedback.close()
    assert ("entree", "granted") not in feedback.finished
    assert recorded(factory, RED_PIN) == [False, True, False]  # dark once closed


def test_the_badge_path_plays_what_decided_at_the_door(wired: Wired, badge_key: bytes) -> None:
    agent = wired.make()
    install_list(agent, badge_key)
    agent.feedback.start()

    agent.badge("entree", ALICE)
    wait_until(lambda: ("entree", "granted") in agent.feedback.finished, what="granted")
    agent.badge("entree", STRANGER)  # not listed, and no server to ask
    wait_until(lambda: ("entree", "unknown_card") in agent.feedback.finished, what="unknown")

    assert list(agent.feedback.finished) == [("entree", "granted"), ("entree", "unknown_card")]
    granted, unknown = PATTERNS["granted"], PATTERNS["unknown_card"]
    for out, pin in PINS.items():
        want = expected_levels(granted, out) + expected_levels(unknown, out)[1:]
        want = [v for i, v in enumerate(want) if i == 0 or want[i - 1] != v]
        assert pin_levels(agent, pin) == want, out


def test_no_credit_sounds_different_from_a_refused_badge(wired: Wired, badge_key: bytes) -> None:
    agent = wired.make()
    empty_book = ListEntry(
        bytes.fromhex(badge_hash(badge_key, ALICE)), 11, plans=[PlanRule(DAY_PASS, credits=0)]
    )
    agent.access.install(1, {empty_book.badge: empty_book})
    agent.feedback.start()

    event = agent.badge("entree", ALICE)

    assert (event.granted, event.reason) == (False, "no_credit")
    wait_until(lambda: ("entree", "no_credit") in agent.feedback.finished, what="no_credit")
    assert pin_levels(agent, BUZZER_PIN) == expected_levels(PATTERNS["no_credit"], "buzzer")
    assert pin_levels(agent, BUZZER_PIN) != expected_levels(PATTERNS["denied"], "buzzer")
    assert pin_levels(agent, GREEN_PIN) == [False]


def test_the_exit_button_shows_green(wired: Wired) -> None:
    agent = wired.make()
    agent.feedback.start()
    pin = agent.hardware.pin_factory.pin(EXIT_PIN)
    pin.drive_low()
    pin.drive_high()
    wait_until(lambda: ("entree", "exit") in agent.feedback.finished, what="exit")
    assert pin_levels(agent, GREEN_PIN) == [False, True, False]


def test_a_tonal_buzzer_plays_the_two_tones_of_closed(wired: Wired) -> None:
    agent = wired.make(buzzer="tonal")
    agent.feedback.start()
    agent.feedback.play("entree", "closed")
    wait_until(lambda: ("entree", "closed") in agent.feedback.finished, what="closed")
    # PWM at half duty while a tone sounds: two tones, end to end, then silence.
    assert pin_levels(agent, BUZZER_PIN) == [False, True, False, True, False]


def test_states_loop_between_cards_by_priority_until_they_end(wired: Wired) -> None:
    agent = wired.make()
    factory = agent.hardware.pin_factory
    agent.feedback.start()

    agent.feedback.set_state("offline", True)
    agent.feedback.set_state("lockdown", True)  # wins over offline
    wait_until(lambda: len(factory.pin(RED_PIN).states) > 6, what="red blinking")
    assert pin_levels(agent, GREEN_PIN) == [False]
    agent.feedback.set_state("lockdown", False)
    agent.feedback.set_state("offline", False)
    wait_until(lambda: not factory.pin(RED_PIN).state, what="dark again")
    count = len(factory.pin(RED_PIN).states)
    agent.feedback.play("entree", "exit")  # runs its course with no state behind it
    wait_until(lambda: ("entree", "exit") in agent.feedback.finished, what="exit")
    assert len(factory.pin(RED_PIN).states) == count


def test_the_unit_shows_it_is_offline_until_it_connects(wired: Wired) -> None:
    agent = wired.make()
    agent.start()  # no broker answers on this port
    assert agent.feedback.states("entree") == {"offline"}
    agent.link.connected.set()
    agent._show_link()
    assert agent.feedback.states("entree") == set()


def test_a_unit_without_lights_has_no_feedback_worker(make_agent: object) -> None:
    agent: EdgeAgent = make_agent()  # type: ignore[operator]
    assert not agent.feedback.fitted
    assert "feedback" not in [w.name for w in agent.workers]
    agent.feedback.play("entree", "granted")  # nothing to light: nothing happens


def test_a_card_that_cannot_be_recorded_is_refused_aloud_and_the_door_stays_locked(
    wired: Wired, badge_key: bytes
) -> None:
    from edge.outbox import OutboxWriteError

    agent = wired.make()
    install_list(agent, badge_key)
    agent.feedback.start()

    def disk_full(*args: object, **kwargs: object) -> None:
        raise OutboxWriteError("database or disk is full")

    agent.outbox.record = disk_full  # type: ignore[method-assign]
    with pytest.raises(OutboxWriteError):
        agent.badge("entree", ALICE)  # a listed member
    wait_until(lambda: ("entree", "denied") in agent.feedback.finished, what="denied")
    assert not agent.hardware.locks["entree"].is_unlocked
