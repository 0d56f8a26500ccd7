"""Builds a unit's devices from its config, so the agent never names a concrete adapter."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from edge.config import DoorConfig, EdgeConfig, ReaderConfig
from edge.hardware import (
    CardReader,
    DoorContact,
    DoorLock,
    HardwareError,
    PresenceSensor,
    PushButton,
    Signal,
)
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


def build(
    config: EdgeConfig, *, pin_factory: Any = None, errors: dict[str, str] | None = None
) -> Hardware:
    """Every device of the unit; the first that fails raises HardwareError.

    With ``errors`` (the self-test), a device that fails is left out and its error kept
    under its name (``"door entree: card reader"``), so every other device is still built.
    """
    factory = pin_factory if pin_factory is not None else make_pin_factory(config.pin_factory)
    hw = Hardware(pin_factory=factory)
    pins = {"pin_factory": factory}

    def add(
        group: dict[Any, Any],
        key: Any,
        what: str,
        make: Callable[..., Any],
        *args: Any,
        **kwargs: Any,
    ) -> None:
        try:
            group[key] = make(*args, **kwargs)
        except HardwareError as exc:
            if errors is None:
                raise
            errors[what] = str(exc)

    if config.tamper_pin is not None:
        add(hw.tampers, None, "unit: tamper switch", GpiozeroDoorContact, config.tamper_pin, **pins)
    for d in config.doors:
        where = f"door {d.id}"
        # First: the strike is locked before all else.
        add(
            hw.locks,
            d.id,
            f"{where}: relay",
            GpiozeroDoorLock,
            d.relay_pin,
            active_high=d.relay_active_high,
            **pins,
        )
        add(hw.readers, d.id, f"{where}: card reader", _reader, d.reader)
        if d.exit_reader is not None:
            add(hw.exit_readers, d.id, f"{where}: exit reader", _reader, d.exit_reader)
        if d.exit_button_pin is not None:
            add(
                hw.exit_buttons,
                d.id,
                f"{where}: exit button",
                GpiozeroExitButton,
                d.exit_button_pin,
                **pins,
            )
        if d.tamper_pin is not None:
            add(
                hw.tampers,
                d.id,
                f"{where}: tamper switch",
                GpiozeroDoorContact,
                d.tamper_pin,
                **pins,
            )
        outputs: dict[str, Signal] = {}
        for name, pin in d.feedback.pins.items():
            add(outputs, name, f"{where}: {name}", _signal, d, name, pin, factory)
        hw.signals[d.id] = outputs
        if d.contact_pin is not None:
            add(
                hw.contacts,
                d.id,
                f"{where}: door contact",
                GpiozeroDoorContact,
                d.contact_pin,
                **pins,
            )
    for room in config.rooms:
        add(
            hw.sensors,
            room.id,
            f"room {room.id}: motion sensor",
            GpiozeroMotionSensor,
            room.motion_pin,
            **pins,
        )
    return hw


def _signal(door: DoorConfig, name: str, pin: int, factory: Any) -> Signal:
    if name == "buzzer" and door.feedback.buzzer == "tonal":
        return GpiozeroTonalBuzzer(pin, pin_factory=factory)
    what = "buzzer" if name == "buzzer" else f"{name} light"
    return GpiozeroSignal(pin, what=what, buzzer=name == "buzzer", pin_factory=factory)


def _reader(config: ReaderConfig) -> CardReader:
    if config.kind == "fake":
        return FakeCardReader()
    from edge.hardware.mfrc522_reader import Mfrc522Reader

    return Mfrc522Reader(bus=config.spi_bus, device=config.spi_device, reset_pin=config.reset_pin)
