"""Hardware seen by the agent through small, domain-named interfaces.

Real adapters are named after what they wrap (``Mfrc522Reader``, ``GpiozeroDoorLock``);
fakes live in ``edge.hardware.fakes`` so ``telecentre-edge simulate`` runs anywhere.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from protocol.errors import TelecentreError


class HardwareError(TelecentreError, RuntimeError):
    """A device that is wired wrong or stopped answering."""


class CardReader(Protocol):
    """An RFID reader polled without blocking."""

    def describe(self) -> str:
        """What the reader is, read from it (raises HardwareError when it does not answer)."""
        ...

    def read_uid(self) -> bytes | None:
        """The UID of the card in the field now, or None. Must return within ~100 ms."""
        ...

    def close(self) -> None: ...


class DoorLock(Protocol):
    """The door strike. Locked is the safe state: off at start, off when released."""

    @property
    def is_unlocked(self) -> bool: ...

    def unlock(self) -> None: ...

    def lock(self) -> None: ...

    def close(self) -> None: ...


class PresenceSensor(Protocol):
    """A room motion sensor (PIR); callbacks run on the sensor's own thread."""

    @property
    def motion_detected(self) -> bool: ...

    def on_change(self, callback: Callable[[bool], None]) -> None: ...

    def close(self) -> None: ...


class DoorContact(Protocol):
    """A door contact switch: closed means the door is shut."""

    @property
    def is_closed(self) -> bool: ...

    def on_change(self, callback: Callable[[bool], None]) -> None: ...

    def close(self) -> None: ...


class PushButton(Protocol):
    """A momentary button (request-to-exit); callbacks run on gpiozero's thread."""

    def on_press(self, callback: Callable[[], None]) -> None: ...

    def close(self) -> None: ...


class Signal(Protocol):
    """A light or a buzzer at a reader: ``set(0)`` is off; any other value is on, and for a
    tonal buzzer it is the tone's frequency in Hz."""

    def set(self, value: float) -> None: ...

    def close(self) -> None: ...
