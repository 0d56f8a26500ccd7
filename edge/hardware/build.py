"""Builds a unit's devices from its config, so the agent never names a concrete adapter."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edge.config import EdgeConfig, ReaderConfig
from edge.hardware import CardReader, DoorContact, DoorLock, PresenceSensor, PushButton, Signal
from edge.hardware.fakes import FakeCardReader
from edge.hardware.gpio import (
    GpiozeroDoorContact,
    GpiozeroDoorLock,
    GpiozeroExitButton,
    GpiozeroMotionSensor,
    GpiozeroSignal,
    GpiozeroTonalBuzzer,
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
    exit_readers: dict[str, CardReader] = field(default_factory=dict)
    exit_buttons: dict[str, PushButton] = field(default_factory=dict)
    # Tamper switches by door (a reader's), and None for the unit's own enclosure.
    tampers: dict[str | None, DoorContact] = field(default_factory=dict)
    # The lights and buzzer at each door's reader: door -> {"green"|"red"|"buzzer": signal}.
    signals: dict[str, dict[str, Signal]] = field(default_factory=dict)

    def close(self) -> None:
        """Release every device (what the agent does not close itself)."""
        for group in (self.exit_buttons, self.tampers):
            for device in group.values():
                device.close()
        for outputs in self.signals.values():
            for signal in outputs.values():
                signal.close()


def build(config: EdgeConfig, *, pin_factory: Any = None) -> Hardware:
    factory = pin_factory if pin_factory is not None else make_pin_factory(config.pin_factory)
    hw = Hardware(pin_factory=factory)
    if config.tamper_pin is not None:
        hw.tampers[None] = GpiozeroDoorContact(config.tamper_pin, pin_factory=factory)
    for door in config.doors:
        hw.locks[door.id] = GpiozeroDoorLock(  # first: the strike is locked before all else
            door.relay_pin, active_high=door.relay_active_high, pin_factory=factory
        )
        hw.readers[door.id] = _reader(door.reader)
        if door.exit_reader is not None:
            hw.exit_readers[door.id] = _reader(door.exit_reader)
        if door.exit_button_pin is not None:
            hw.exit_buttons[door.id] = GpiozeroExitButton(door.exit_button_pin, pin_factory=factory)
        if door.tamper_pin is not None:
            hw.tampers[door.id] = GpiozeroDoorContact(door.tamper_pin, pin_factory=factory)
        outputs: dict[str, Signal] = {}
        for name, pin in door.feedback.pins.items():
            if name == "buzzer" and door.feedback.buzzer == "tonal":
                outputs[name] = GpiozeroTonalBuzzer(pin, pin_factory=factory)
            else:
                what = "buzzer" if name == "buzzer" else f"{name} light"
                outputs[name] = GpiozeroSignal(
                    pin, what=what, buzzer=name == "buzzer", pin_factory=factory
                )
        hw.signals[door.id] = outputs
        if door.contact_pin is not None:
            hw.contacts[door.id] = GpiozeroDoorContact(door.contact_pin, pin_factory=factory)
    for room in config.rooms:
        hw.sensors[room.id] = GpiozeroMotionSensor(room.motion_pin, pin_factory=factory)
    return hw


def _reader(config: ReaderConfig) -> CardReader:
    if config.kind == "fake":
        return FakeCardReader()
    from edge.hardware.mfrc522_reader import Mfrc522Reader

    return Mfrc522Reader(bus=config.spi_bus, device=config.spi_device, reset_pin=config.reset_pin)
