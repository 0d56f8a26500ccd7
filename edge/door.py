"""One door: the strike relocks on a timer, and the contact raises forced/held alarms.

Fail secure: the lock starts locked, each unlock (re)arms a single relock timer, and
nothing but that timer, or stopping the agent, locks it again. A second grant while open
extends the window; it never toggles the relay.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from edge.config import DoorConfig
from edge.hardware import DoorContact, DoorLock

log = logging.getLogger(__name__)

# A contact opening this soon after the relock still belongs to the granted passage.
RELOCK_GRACE_S = 1.0


class Door:
    """Drives one strike and watches its contact; reports alarms through ``on_alarm``."""

    def __init__(
        self,
        config: DoorConfig,
        lock: DoorLock,
        contact: DoorContact | None = None,
        *,
        on_alarm: Callable[[str, str], None] = lambda door_id, kind: None,
        monotonic: Callable[[], float] | None = None,
    ) -> None:
        self.config = config
        self.lock = lock
        self.contact = contact
        self._on_alarm = on_alarm
        self._now = monotonic or time.monotonic
        self._mutex = threading.Lock()
        self._relock_timer: threading.Timer | None = None
        self._held_timer: threading.Timer | None = None
        self._locked_at = self._now() - RELOCK_GRACE_S
        self._alarm_raised = False
        self.lock.lock()
        if contact is not None:
            contact.on_change(self._contact_changed)

    @property
    def id(self) -> str:
        return self.config.id

    def open_for(self, seconds: float | None = None) -> None:
        """Energise the strike now and relock after ``seconds`` (the configured window)."""
        seconds = self.config.unlock_seconds if seconds is None else seconds
        with self._mutex:
            if self._relock_timer is not None:
                self._relock_timer.cancel()
            self.lock.unlock()
            self._relock_timer = threading.Timer(seconds, self._relock)
            self._relock_timer.daemon = True
            self._relock_timer.start()

    def _relock(self) -> None:
        with self._mutex:
            if self._relock_timer is not threading.current_thread():
                return  # a later grant re-armed the window after this timer had fired
            self.lock.lock()
            self._locked_at = self._now()
            self._relock_timer = None

    def close(self) -> None:
        with self._mutex:
            for timer in (self._relock_timer, self._held_timer):
                if timer is not None:
                    timer.cancel()
            self.lock.lock()
        self.lock.close()
        if self.contact is not None:
            self.contact.close()

    def _contact_changed(self, closed: bool) -> None:
        with self._mutex:
            if closed:
                if self._held_timer is not None:
                    self._held_timer.cancel()
                    self._held_timer = None
                raised, self._alarm_raised = self._alarm_raised, False
                if raised:
                    self._on_alarm(self.id, "door_closed")
                return
            authorised = self.lock.is_unlocked or self._now() - self._locked_at < RELOCK_GRACE_S
            self._held_timer = threading.Timer(self.config.held_open_seconds, self._held_open)
            self._held_timer.daemon = True
            self._held_timer.start()
            if not authorised:
                self._alarm_raised = True
                log.warning("door %s forced open", self.id)
                self._on_alarm(self.id, "door_forced")

    def _held_open(self) -> None:
        with self._mutex:
            self._held_timer = None
            self._alarm_raised = True
        log.warning("door %s held open", self.id)
        self._on_alarm(self.id, "door_held")
