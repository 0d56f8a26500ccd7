"""Builds a unit's devices from its config, so the agent never names a concrete adapter."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edge.config import EdgeConfig
from edge.hardware import CardReader, DoorContact, DoorLock, PresenceSensor
from edge.hardware.fakes import FakeCardReader
from edge.hardware.gpio import (
    GpiozeroDoorContact,
    GpiozeroDoorLock,
    GpiozeroMotionSensor,
    make_pin_factory,
)


@dataclass
class Hardware:
    """Every device of a unit, by door or room id."""

    readers: dict[str, CardReader] = field(default_factory=dict)
    locks: dict[str, DoorLock] = field(default_factory=dict)
    contacts: dict[str, DoorContact] = field(default_factory=dict)
    sensors: dict[str, PresenceSensor] = field(default_factory=dict)
    pin_factory: Any = None


def build(config: EdgeConfig, *, pin_factory: Any = None) -> Hardware:
    factory = pin_factory if pin_factory is not None else make_pin_factory(config.pin_factory)
    hw = Hardware(pin_factory=factory)
    for door in config.doors:
        if door.reader.kind == "fake":
            hw.readers[door.id] = FakeCardReader()
        else:
            from edge.hardware.mfrc522_reader import Mfrc522Reader

            hw.readers[door.id] = Mfrc522Reader(
                bus=door.reader.spi_bus,
                device=door.reader.spi_device,
                reset_pin=door.reader.reset_pin,
            )
        hw.locks[door.id] = GpiozeroDoorLock(
            door.relay_pin, active_high=door.relay_active_high, pin_factory=factory
        )
        if door.contact_pin is not None:
            hw.contacts[door.id] = GpiozeroDoorContact(door.contact_pin, pin_factory=factory)
    for room in config.rooms:
        hw.sensors[room.id] = GpiozeroMotionSensor(room.motion_pin, pin_factory=factory)
    return hw
