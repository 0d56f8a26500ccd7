"""Room state from a PIR sensor on gpiozero MockFactory pins: occupied on motion, free later."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest
from gpiozero.pins.mock import MockFactory

from edge.config import RoomConfig
from edge.hardware.gpio import GpiozeroMotionSensor
from edge.rooms import Room
from tests.edge.support import wait_until

MOTION = 22
HOLD_S = 0.6


class WatchedSensor:
    """The real adapter, plus a record of the motion edges the room has finished handling."""

    def __init__(self, sensor: GpiozeroMotionSensor) -> None:
        self.sensor = sensor
        self.handled: list[bool] = []

    @property
    def motion_detected(self) -> bool:
        return self.sensor.motion_detected

    def on_change(self, callback: Callable[[bool], None]) -> None:
        def handle(motion: bool) -> None:
            callback(motion)
            self.handled.append(motion)

        self.sensor.on_change(handle)

    def close(self) -> None:
        self.sensor.close()


@pytest.fixture
def factory() -> MockFactory:
    return MockFactory()


@pytest.fixture
def states() -> list[str]:
    return []


@pytest.fixture
def make_room(factory: MockFactory, states: list[str]) -> Iterator[Callable[..., Room]]:
    rooms: list[Room] = []

    def make(*, managed: bool = True, motion_at_boot: bool = False) -> Room:
        sensor = GpiozeroMotionSensor(MOTION, pin_factory=factory)
        sensor.motion_detected  # noqa: B018  # wait for the sampling thread's first reading
        if motion_at_boot:  # someone is already in the room when the agent starts
            factory.pin(MOTION).drive_high()
            wait_until(lambda: sensor.motion_detected, timeout=2, what="motion sampled")
        room = Room(
            RoomConfig(id="visio", name="Salle visio", motion_pin=MOTION, hold_seconds=HOLD_S),
            WatchedSensor(sensor),
            on_state=lambda room_id, state: states.append(f"{room_id}:{state}"),
        )
        if managed:
            rooms.append(room)
        return room

    yield make
    for room in rooms:
        room.close()


def handled(room: Room) -> list[bool]:
    assert isinstance(room.sensor, WatchedSensor)
    return room.sensor.handled


def let_pass(seconds: float) -> None:
    threading.Event().wait(seconds)


def test_a_quiet_room_starts_free(make_room: Callable[..., Room], states: list[str]) -> None:
    room = make_room()

    assert room.state == "free"
    assert states == []


def test_a_room_with_motion_at_boot_starts_occupied(make_room: Callable[..., Room]) -> None:
    room = make_room(motion_at_boot=True)

    assert room.state == "occupied"


def test_motion_makes_the_room_occupied_at_once(
    make_room: Callable[..., Room], factory: MockFactory, states: list[str]
) -> None:
    room = make_room()

    started = time.monotonic()
    factory.pin(MOTION).drive_high()
    wait_until(lambda: states, timeout=2, what="occupied")

    assert time.monotonic() - started < HOLD_S / 2  # one sample, not a hold time
    assert states == ["visio:occupied"]
    assert room.state == "occupied"


def test_the_room_stays_occupied_for_the_hold_time_then_is_free(
    make_room: Callable[..., Room], factory: MockFactory, states: list[str]
) -> None:
    room = make_room()
    factory.pin(MOTION).drive_high()
    wait_until(lambda: handled(room) == [True], timeout=2, what="motion")

    factory.pin(MOTION).drive_low()
    wait_until(lambda: handled(room) == [True, False], timeout=2, what="no motion")
    quiet_since = time.monotonic()
    during_hold = (room.state, list(states))
    wait_until(lambda: room.state == "free", timeout=3, what="free")

    assert during_hold == ("occupied", ["visio:occupied"])
    assert time.monotonic() - quiet_since >= HOLD_S - 0.02
    assert states == ["visio:occupied", "visio:free"]


def test_motion_within_the_hold_keeps_the_room_occupied_without_a_flap(
    make_room: Callable[..., Room], factory: MockFactory, states: list[str]
) -> None:
    room = make_room()
    pin = factory.pin(MOTION)
    pin.drive_high()
    wait_until(lambda: handled(room) == [True], timeout=2, what="motion")
    pin.drive_low()
    wait_until(lambda: handled(room) == [True, False], timeout=2, what="no motion")
    quiet_since = time.monotonic()

    let_pass(HOLD_S / 3)
    pin.drive_high()  # someone moves again before the hold time is over
    wait_until(lambda: handled(room) == [True, False, True], timeout=2, what="motion again")
    let_pass(quiet_since + HOLD_S + 0.2 - time.monotonic())  # past the first hold's end

    assert room.state == "occupied"
    assert states == ["visio:occupied"]


def test_closing_a_room_cancels_a_pending_free(
    make_room: Callable[..., Room], factory: MockFactory, states: list[str]
) -> None:
    room = make_room(managed=False)
    factory.pin(MOTION).drive_high()
    wait_until(lambda: handled(room) == [True], timeout=2, what="motion")
    factory.pin(MOTION).drive_low()
    wait_until(lambda: handled(room) == [True, False], timeout=2, what="no motion")

    room.close()
    let_pass(HOLD_S + 0.2)

    assert states == ["visio:occupied"]  # nothing reported by a stopped agent
