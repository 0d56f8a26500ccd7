"""gpiozero adapters: the door strike relay, the door contact, PIR room sensors, the
request-to-exit button, and the lights and buzzer at a reader.

gpiozero is imported here only, and every device is given its pin factory explicitly:
the mfrc522 library and gpiozero's RPi.GPIO backend must agree on BCM numbering, and tests
inject ``MockFactory``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from edge.hardware import HardwareError
from edge.hardware.filepins import mock_pins_from_env


def make_pin_factory(name: str) -> Any:
    """The gpiozero pin factory named in the unit's config (``default`` picks lgpio first)."""
    shared = mock_pins_from_env(name)  # tests: mock pins several processes share
    if shared is not None:
        return shared
    try:
        if name == "mock":
            from gpiozero.pins.mock import MockFactory, MockPWMPin

            return MockFactory(pin_class=MockPWMPin)  # PWM too: a tonal buzzer needs it
        if name in ("lgpio", "default"):
            try:
                from gpiozero.pins.lgpio import LGPIOFactory

                return LGPIOFactory()
            except Exception:
                if name == "lgpio":
                    raise
        from gpiozero.pins.rpigpio import RPiGPIOFactory

        return RPiGPIOFactory()
    except Exception as exc:
        raise HardwareError(
            f"pin_factory {name!r}: cannot open the GPIO chip ({exc}); "
            'on a Raspberry Pi 5 install lgpio>=0.2.2.0, off a Pi use pin_factory = "mock"'
        ) from exc


class GpiozeroDoorLock:
    """The strike relay. Active-low boards are the common case, hence active_high=False."""

    def __init__(self, pin: int, *, active_high: bool = False, pin_factory: Any = None) -> None:
        from gpiozero import DigitalOutputDevice

        try:
            self._device = DigitalOutputDevice(
                pin, active_high=active_high, initial_value=False, pin_factory=pin_factory
            )
        except Exception as exc:
            raise HardwareError(f"door relay on GPIO {pin}: {exc}") from exc

    @property
    def is_unlocked(self) -> bool:
        return bool(self._device.value)

    def unlock(self) -> None:
        self._device.on()

    def lock(self) -> None:
        self._device.off()

    def close(self) -> None:
        self._device.off()
        self._device.close()


class GpiozeroDoorContact:
    """A reed switch wired between the pin and ground: pressed means the door is shut."""

    def __init__(self, pin: int, *, pin_factory: Any = None, bounce_s: float = 0.05) -> None:
        # A plain input, not gpiozero's Button: Button's hold thread makes close() wait ~1 s.
        from gpiozero import DigitalInputDevice

        try:
            self._input = DigitalInputDevice(
                pin, pull_up=True, bounce_time=bounce_s, pin_factory=pin_factory
            )
        except Exception as exc:
            raise HardwareError(f"door contact on GPIO {pin}: {exc}") from exc

    @property
    def is_closed(self) -> bool:
        return bool(self._input.is_active)

    def on_change(self, callback: Callable[[bool], None]) -> None:
        self._input.when_activated = lambda: callback(True)
        self._input.when_deactivated = lambda: callback(False)

    def close(self) -> None:
        self._input.close()


class GpiozeroMotionSensor:
    """A PIR sensor; the hold time lives in ``edge.rooms.Room``, not here.

    A plain input read on its edges: gpiozero's ``MotionSensor`` samples the pin from a
    thread of its own ten times a second, per room, for a smoothing a PIR (which holds its
    output for seconds) does not need; an idle unit should not wake for nothing.
    """

    def __init__(self, pin: int, *, pin_factory: Any = None) -> None:
        from gpiozero import DigitalInputDevice

        try:
            self._sensor = DigitalInputDevice(pin, pull_up=False, pin_factory=pin_factory)
        except Exception as exc:
            raise HardwareError(f"motion sensor on GPIO {pin}: {exc}") from exc

    @property
    def motion_detected(self) -> bool:
        return bool(self._sensor.is_active)

    def on_change(self, callback: Callable[[bool], None]) -> None:
        self._sensor.when_activated = lambda: callback(True)
        self._sensor.when_deactivated = lambda: callback(False)

    def close(self) -> None:
        self._sensor.close()


class GpiozeroExitButton:
    """A request-to-exit push button wired between the pin and ground (pressed: low)."""

    def __init__(self, pin: int, *, pin_factory: Any = None, bounce_s: float = 0.05) -> None:
        # A plain input, like the door contact: gpiozero's Button adds a hold thread.
        from gpiozero import DigitalInputDevice

        try:
            self._input = DigitalInputDevice(
                pin, pull_up=True, bounce_time=bounce_s, pin_factory=pin_factory
            )
        except Exception as exc:
            raise HardwareError(f"exit button on GPIO {pin}: {exc}") from exc

    def on_press(self, callback: Callable[[], None]) -> None:
        self._input.when_activated = callback

    def close(self) -> None:
        self._input.close()


class GpiozeroSignal:
    """An LED, or an active buzzer (it sounds its own tone when powered)."""

    def __init__(self, pin: int, *, what: str, buzzer: bool = False, pin_factory: Any = None):
        from gpiozero import LED, Buzzer

        try:
            self._device = (Buzzer if buzzer else LED)(pin, pin_factory=pin_factory)
        except Exception as exc:
            raise HardwareError(f"{what} on GPIO {pin}: {exc}") from exc

    def set(self, value: float) -> None:
        if value:
            self._device.on()
        else:
            self._device.off()

    def close(self) -> None:
        self._device.off()
        self._device.close()


class GpiozeroTonalBuzzer:
    """A passive buzzer driven by PWM at the tone asked for (220 to 880 Hz, clamped)."""

    def __init__(self, pin: int, *, pin_factory: Any = None) -> None:
        from gpiozero import TonalBuzzer

        try:
            self._device = TonalBuzzer(pin, pin_factory=pin_factory)
        except Exception as exc:
            raise HardwareError(
                f"tonal buzzer on GPIO {pin} (needs a PWM-capable pin factory): {exc}"
            ) from exc

    def set(self, value: float) -> None:
        from gpiozero.tones import Tone

        if not value:
            self._device.stop()
            return
        low, high = self._device.min_tone.frequency, self._device.max_tone.frequency
        self._device.play(Tone(frequency=min(max(value, low), high)))

    def close(self) -> None:
        self._device.stop()
        self._device.close()
