"""One door on gpiozero MockFactory pins: the strike relay and the door contact."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory

from edge import door as door_module
from edge.config import DoorConfig, ReaderConfig
from edge.door import RELOCK_GRACE_S, Door
from edge.hardware.gpio import GpiozeroDoorContact, GpiozeroDoorLock
from tests.edge.support import wait_until

RELAY = 17
CONTACT = 27
UNLOCK_S = 0.5
HELD_S = 0.5
MakeDoor = Callable[..., Door]


@pytest.fixture
def factory() -> MockFactory:
    return MockFactory()


@pytest.fixture
def alarms() -> list[str]:
    return []


@pytest.fixture
def make_door(factory: MockFactory, alarms: list[str]) -> Iterator[MakeDoor]:
    doors: list[Door] = []

    def make(
        *,
        active_high: bool = False,
        contact: bool = True,
        monotonic: Callable[[], float] | None = None,
        managed: bool = True,
    ) -> Door:
        config = DoorConfig(
            id="entree",
            relay_pin=RELAY,
            reader=ReaderConfig(kind="fake"),
            relay_active_high=active_high,
            unlock_seconds=UNLOCK_S,
            contact_pin=CONTACT if contact else None,
            held_open_seconds=HELD_S,
        )
        lock = GpiozeroDoorLock(RELAY, active_high=active_high, pin_factory=factory)
        door_contact = None
        if contact:
            door_contact = GpiozeroDoorContact(CONTACT, pin_factory=factory)
            factory.pin(CONTACT).drive_low()  # the reed switch is closed: the door is shut
        door = Door(
            config,
            lock,
            door_contact,
            on_alarm=lambda door_id, kind: alarms.append(f"{door_id}:{kind}"),
            monotonic=monotonic,
        )
        factory.pin(RELAY).clear_states()  # history from here on
        if managed:  # closed after the test
            doors.append(door)
        return door

    yield make
    for door in doors:
        if door.contact is not None:
            # gpiozero's Button.close() waits up to its 1 s hold time while pressed (door shut).
            factory.pin(CONTACT).drive_high()
        door.close()


def relay_energised(factory: MockFactory, *, active_high: bool = False) -> bool:
    return factory.pin(RELAY).state == active_high


def relay_history(factory: MockFactory) -> list[bool]:
    """Successive pin levels (True = high) since the door was built."""
    return [bool(s.state) for s in factory.pin(RELAY).states]


def let_pass(seconds: float) -> None:
    threading.Event().wait(seconds)


def open_door(factory: MockFactory) -> None:
    factory.pin(CONTACT).drive_high()


def shut_door(factory: MockFactory) -> None:
    factory.pin(CONTACT).drive_low()


@pytest.mark.parametrize("active_high", [False, True])
def test_the_relay_starts_off(make_door: MakeDoor, factory: MockFactory, active_high: bool) -> None:
    door = make_door(active_high=active_high)

    assert not door.lock.is_unlocked
    assert not relay_energised(factory, active_high=active_high)
    # An active-low board is off with its input high, an active-high one with it low.
    assert factory.pin(RELAY).state == (not active_high)


def test_a_grant_energises_the_strike_and_relocks_after_the_window(
    make_door: MakeDoor, factory: MockFactory
) -> None:
    door = make_door()

    started = time.monotonic()
    door.open_for()
    energised_at_once = relay_energised(factory)
    wait_until(lambda: not door.lock.is_unlocked, timeout=3, what="relock")
    open_for = time.monotonic() - started

    assert energised_at_once
    assert open_for >= UNLOCK_S - 0.02
    assert not relay_energised(factory)
    assert relay_history(factory) == [True, False, True]  # off, on, off: nothing more


def test_a_second_grant_extends_the_window_without_toggling_the_relay(
    make_door: MakeDoor, factory: MockFactory
) -> None:
    door = make_door()

    door.open_for()
    let_pass(UNLOCK_S * 0.6)
    second = time.monotonic()
    door.open_for()
    let_pass(UNLOCK_S * 0.6)  # past the end of the first window
    still_open = door.lock.is_unlocked
    wait_until(lambda: not door.lock.is_unlocked, timeout=3, what="relock")
    after_second = time.monotonic() - second

    assert still_open
    assert after_second >= UNLOCK_S - 0.02
    assert relay_history(factory) == [True, False, True]


def test_a_relock_timer_that_fired_as_a_new_grant_came_does_not_lock_the_door(
    make_door: MakeDoor, factory: MockFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    timers: list[ManualTimer] = []

    class ManualTimer:
        """threading.Timer driven by the test; ``due()`` is what Timer.run does at expiry."""

        def __init__(self, interval: float, function: Callable[[], Any]) -> None:
            self.function = function
            self.cancelled = False
            self.daemon = False
            timers.append(self)

        def start(self) -> None:
            pass

        def cancel(self) -> None:
            self.cancelled = True

        def due(self) -> Callable[[], Any] | None:
            return None if self.cancelled else self.function

    monkeypatch.setattr(door_module.threading, "Timer", ManualTimer)
    door = make_door()
    door.open_for()

    # The first window ends: Timer.run has checked it was not cancelled and is about to call
    # _relock, when a member badges again and the grant path runs first.
    relock = timers[0].due()
    assert relock is not None
    door.open_for()
    relock()

    assert door.lock.is_unlocked, "the second member's window was cut short"


def test_a_door_opened_while_locked_raises_door_forced(
    make_door: MakeDoor, factory: MockFactory, alarms: list[str]
) -> None:
    make_door()

    open_door(factory)

    assert alarms == ["entree:door_forced"]


def test_a_door_opened_during_the_unlock_window_raises_nothing(
    make_door: MakeDoor, factory: MockFactory, alarms: list[str]
) -> None:
    door = make_door()
    door.open_for()

    open_door(factory)
    let_pass(0.1)
    shut_door(factory)
    wait_until(lambda: not door.lock.is_unlocked, timeout=3, what="relock")
    let_pass(HELD_S)  # past the held-open limit too

    assert alarms == []


def test_a_door_pushed_just_after_the_relock_is_not_forced(
    make_door: MakeDoor, factory: MockFactory, alarms: list[str]
) -> None:
    now = [1000.0]
    door = make_door(monotonic=lambda: now[0])
    door.open_for()
    wait_until(lambda: not door.lock.is_unlocked, timeout=3, what="relock")

    now[0] += RELOCK_GRACE_S / 2  # the member pulls the door as the strike relocks
    open_door(factory)
    shut_door(factory)
    now[0] += 2 * RELOCK_GRACE_S  # later, with nobody badging
    open_door(factory)

    assert alarms == ["entree:door_forced"]


def test_a_door_held_open_too_long_raises_door_held_then_door_closed(
    make_door: MakeDoor, factory: MockFactory, alarms: list[str]
) -> None:
    door = make_door()
    door.open_for()
    open_door(factory)

    wait_until(lambda: alarms, timeout=3, what="door_held")
    held_only = list(alarms)
    shut_door(factory)

    assert held_only == ["entree:door_held"]
    assert alarms == ["entree:door_held", "entree:door_closed"]


def test_closing_a_forced_door_raises_door_closed_once(
    make_door: MakeDoor, factory: MockFactory, alarms: list[str]
) -> None:
    make_door()
    open_door(factory)

    shut_door(factory)
    let_pass(HELD_S + 0.1)  # no held-open alarm for a door already shut

    assert alarms == ["entree:door_forced", "entree:door_closed"]


def test_an_ordinary_passage_never_raises_door_closed(
    make_door: MakeDoor, factory: MockFactory, alarms: list[str]
) -> None:
    door = make_door()
    door.open_for()
    open_door(factory)
    shut_door(factory)
    door.open_for()
    open_door(factory)
    shut_door(factory)

    assert alarms == []


def test_close_leaves_the_relay_off_and_stops_the_timers(
    make_door: MakeDoor, factory: MockFactory, alarms: list[str]
) -> None:
    door = make_door(managed=False)
    door.open_for(5)
    open_door(factory)  # authorised, held-open timer running

    door.close()
    off_after_close = not relay_energised(factory)
    let_pass(HELD_S + 0.1)

    assert off_after_close
    assert factory.pin(RELAY).state is True  # active-low board: input high = relay off
    assert alarms == []  # no late door_held from a door that is shut down
