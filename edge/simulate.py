"""A simulated centre: the real agent on MockFactory pins and a fake reader, with people.

Members arrive and leave through a compressed day (08:00-19:00 in ``day_seconds`` of real
time), badge at the door, open it, and move in the rooms; now and then a stranger's card
is tried. Only the world is simulated: decisions, outbox, MQTT are the real agent's.
"""

from __future__ import annotations

import heapq
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from edge.agent import EdgeAgent
from edge.hardware.fakes import FakeCardReader

log = logging.getLogger(__name__)

OPEN_H, CLOSE_H = 8.0, 19.0
CARD_HOLD_S = 0.3


@dataclass(order=True)
class _Action:
    at: float
    run: Callable[[], None] = field(compare=False)


class Scenario(threading.Thread):
    """Drives the pins and the reader of one agent, day after compressed day."""

    def __init__(
        self,
        agent: EdgeAgent,
        members: list[bytes],
        *,
        day_seconds: float = 300.0,
        attendance: float = 0.7,
        stranger_every: int = 12,
        seed: int | None = None,
    ) -> None:
        super().__init__(name="scenario", daemon=True)
        self.agent = agent
        self.members = members
        self.day_seconds = day_seconds
        self.attendance = attendance
        self.stranger_every = stranger_every
        self.rng = random.Random(seed)
        self.halt = threading.Event()
        self._queue: list[_Action] = []
        self._door = agent.config.doors[0]
        reader = agent.hardware.readers[self._door.id]
        if not isinstance(reader, FakeCardReader):
            raise ValueError('simulation needs doors[0].reader.kind = "fake"')
        self.reader = reader
        self._factory = agent.hardware.pin_factory
        self._badges = 0
        if self._door.contact_pin is not None:
            self._factory.pin(self._door.contact_pin).drive_low()  # door shut

    def stop(self) -> None:
        self.halt.set()

    def _at_hour(self, day_start: float, hour: float) -> float:
        return day_start + (hour - OPEN_H) / (CLOSE_H - OPEN_H) * self.day_seconds

    def _plan_day(self, day_start: float) -> None:
        for uid in self.members:
            if self.rng.random() > self.attendance:
                continue
            arrive = self.rng.uniform(OPEN_H, 11.5)
            leave = self.rng.uniform(max(arrive + 1, 14.0), CLOSE_H - 0.1)
            self._push(self._at_hour(day_start, arrive), lambda u=uid: self._badge(u))
            self._push(self._at_hour(day_start, leave), lambda u=uid: self._badge(u))
            for room in self.agent.config.rooms:
                if self.rng.random() < 0.5:
                    start = self.rng.uniform(arrive, leave - 0.5)
                    stop = min(start + self.rng.uniform(0.5, 2.5), leave)
                    self._push(
                        self._at_hour(day_start, start),
                        lambda r=room.motion_pin: self._motion(r, True),
                    )
                    self._push(
                        self._at_hour(day_start, stop),
                        lambda r=room.motion_pin: self._motion(r, False),
                    )
        self._push(day_start + self.day_seconds, lambda: self._plan_day(time.monotonic()))

    def _push(self, at: float, run: Callable[[], None]) -> None:
        heapq.heappush(self._queue, _Action(at, run))

    def run(self) -> None:
        self._plan_day(time.monotonic())
        while not self.halt.is_set() and self._queue:
            action = self._queue[0]
            delay = action.at - time.monotonic()
            if delay > 0:
                self.halt.wait(min(delay, 1.0))
                continue
            heapq.heappop(self._queue)
            try:
                action.run()
            except Exception:
                log.exception("scenario step failed")

    # -- acting out the world -------------------------------------------------------------------

    def _badge(self, uid: bytes) -> None:
        self._badges += 1
        if self.stranger_every and self._badges % self.stranger_every == 0:
            self._present(bytes(self.rng.randrange(256) for _ in range(4)))
        self._present(uid)

    def _present(self, uid: bytes) -> None:
        lock = self.agent.hardware.locks[self._door.id]
        self.reader.present(uid)
        self.halt.wait(CARD_HOLD_S)
        self.reader.remove()
        deadline = time.monotonic() + 2
        while not lock.is_unlocked and time.monotonic() < deadline and not self.halt.is_set():
            self.halt.wait(0.05)
        if lock.is_unlocked and self._door.contact_pin is not None:
            pin = self._factory.pin(self._door.contact_pin)
            pin.drive_high()  # door opens
            self.halt.wait(1.0)
            pin.drive_low()
        # the repeat-card debounce must pass before the same card can count again
        self.halt.wait(self._door.reader.repeat_ms / 1000)

    def _motion(self, pin: int, active: bool) -> None:
        mock = self._factory.pin(pin)
        if active:
            mock.drive_high()
        else:
            mock.drive_low()
