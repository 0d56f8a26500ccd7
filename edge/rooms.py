"""Room state from a PIR sensor: occupied on motion, free after a hold time without any."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Literal

from edge.config import RoomConfig
from edge.hardware import PresenceSensor

RoomState = Literal["occupied", "free"]


class Room:
    """Turns raw motion edges into occupied/free changes reported via ``on_state``."""

    def __init__(
        self,
        config: RoomConfig,
        sensor: PresenceSensor,
        *,
        on_state: Callable[[str, RoomState], None],
    ) -> None:
        self.config = config
        self.sensor = sensor
        self._on_state = on_state
        self._mutex = threading.Lock()
        self._timer: threading.Timer | None = None
        self.state: RoomState = "occupied" if sensor.motion_detected else "free"
        sensor.on_change(self._motion_changed)

    @property
    def id(self) -> str:
        return self.config.id

    def _motion_changed(self, motion: bool) -> None:
        with self._mutex:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if not motion:
                self._timer = threading.Timer(self.config.hold_seconds, self._hold_expired)
                self._timer.daemon = True
                self._timer.start()
                return
            changed = self.state != "occupied"
            self.state = "occupied"
        if changed:
            self._on_state(self.id, "occupied")

    def _hold_expired(self) -> None:
        with self._mutex:
            self._timer = None
            changed = self.state != "free"
            self.state = "free"
        if changed:
            self._on_state(self.id, "free")

    def close(self) -> None:
        with self._mutex:
            if self._timer is not None:
                self._timer.cancel()
        self.sensor.close()
