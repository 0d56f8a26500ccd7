"""Polls a card reader from our own thread, with a sleep and a repeat-card debounce."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from edge.hardware import CardReader, HardwareError

log = logging.getLogger(__name__)


class CardPoller(threading.Thread):
    """Calls ``on_card(uid)`` once per presentation of a card.

    A card held in the field is seen on every poll; it counts again only after it has
    been out of the field for ``repeat_ms``. A reader that fails is retried with a growing
    pause and reported through ``on_fault`` so the technician sees it in the status.
    """

    def __init__(
        self,
        reader: CardReader,
        on_card: Callable[[bytes], None],
        *,
        poll_interval_ms: int = 50,
        repeat_ms: int = 2000,
        on_fault: Callable[[str | None], None] = lambda message: None,
        name: str = "card-poller",
    ) -> None:
        super().__init__(name=name, daemon=True)
        self.reader = reader
        self._on_card = on_card
        self._on_fault = on_fault
        self._interval = poll_interval_ms / 1000
        self._repeat = repeat_ms / 1000
        self._stopping = threading.Event()
        self._last_uid: bytes | None = None
        self._last_seen = 0.0

    def stop(self) -> None:
        self._stopping.set()

    def run(self) -> None:
        backoff = self._interval
        faulty = False
        while not self._stopping.is_set():
            try:
                uid = self.reader.read_uid()
            except HardwareError as exc:
                if not faulty:
                    log.error("card reader fault: %s", exc)
                    self._on_fault(str(exc))
                faulty = True
                backoff = min(backoff * 2, 5.0)
                self._stopping.wait(backoff)
                continue
            if faulty:
                log.info("card reader answers again")
                self._on_fault(None)
                faulty = False
                backoff = self._interval
            if uid is not None:
                self._seen(uid, time.monotonic())
            self._stopping.wait(self._interval)

    def _seen(self, uid: bytes, now: float) -> None:
        repeat = uid == self._last_uid and now - self._last_seen < self._repeat
        self._last_uid, self._last_seen = uid, now
        if repeat:
            return
        try:
            self._on_card(uid)
        except Exception:  # the next card must still be read
            log.exception("card handler failed")
