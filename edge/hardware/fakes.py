"""Stand-ins that act out the world where there is no Pi (simulation, tests).

gpiozero devices are not faked: they run on ``MockFactory`` pins. Only the card reader,
whose real adapter needs SPI, has a fake here (the register-level chip simulation in
``simchip`` is for testing the real adapter).
"""

from __future__ import annotations

import threading

from edge.hardware import HardwareError


class FakeCardReader:
    """A reader whose field holds whatever card ``present`` put there."""

    def __init__(self) -> None:
        self._uid: bytes | None = None
        self._lock = threading.Lock()
        self.failing = False
        self.closed = False

    def present(self, uid: bytes) -> None:
        with self._lock:
            self._uid = bytes(uid)

    def remove(self) -> None:
        with self._lock:
            self._uid = None

    def read_uid(self) -> bytes | None:
        if self.failing:
            raise HardwareError("fake reader: not answering")
        with self._lock:
            return self._uid

    def describe(self) -> str:
        if self.failing:
            raise HardwareError("fake reader: not answering")
        return "simulated reader (no hardware)"

    def close(self) -> None:
        self.closed = True
