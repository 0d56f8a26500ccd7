"""Polls a card reader from our own thread, with a sleep and a repeat-card debounce."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from edge.hardware import CardReader, HardwareError
from protocol.workers import Worker

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 5.0


class CardPoller(Worker):
    """Calls ``on_card(uid)`` once per presentation of a card.

    A card held in the field is seen on every poll; it counts again only after it has
    been out of the field for ``repeat_ms``. A reader that fails is reinitialised and
    retried with a growing pause (up to ``MAX_BACKOFF_S``) and reported through
    ``on_fault`` so the technician sees it in the status; the door stays locked meanwhile. Any
    other error (a bug in an adapter) is logged with its traceback and counted by the
    worker, which backs off and polls again.
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
        super().__init__(name, self._poll, backoff_max_s=MAX_BACKOFF_S)
        self.reader = reader
        self._on_card = on_card
        self._on_fault = on_fault
        self._interval = poll_interval_ms / 1000
        self._repeat = repeat_ms / 1000
        self._last_uid: bytes | None = None
        self._last_seen = 0.0
        self._backoff = self._interval
        self._faulty = False
        self.reinits = 0  # successful reinitialisations of a failing reader

    def _poll(self) -> None:
        try:
            uid = self.reader.read_uid()
        except HardwareError as exc:
            self._fault(str(exc))
            self._backoff = min(self._backoff * 2, MAX_BACKOFF_S)
            self.stopping.wait(self._backoff)
            self._reinit()
            return
        except Exception as exc:
            self._fault(f"{type(exc).__name__}: {exc}")
            raise  # the worker logs the traceback, counts it and backs off
        if self._faulty:
            log.info("card reader answers again")
            self._on_fault(None)
            self._faulty = False
            self._backoff = self._interval
        if uid is not None:
            self._seen(uid, time.monotonic())
        self.stopping.wait(self._interval)

    def _reinit(self) -> None:
        """Reset and configure a failing reader again (a chip reset by a supply dip reads
        no card until then); a reader that still fails is tried again after the next,
        longer, pause."""
        reinit = getattr(self.reader, "reinit", None)
        if reinit is None or self.stopping.is_set():
            return
        try:
            reinit()
        except HardwareError as exc:
            log.debug("card reader not back yet: %s", exc)
        else:
            self.reinits += 1
            log.info("card reader reinitialised")

    def _fault(self, message: str) -> None:
        if not self._faulty:
            log.error("card reader fault: %s", message)
            self._on_fault(message)
        self._faulty = True

    def _seen(self, uid: bytes, now: float) -> None:
        repeat = uid == self._last_uid and now - self._last_seen < self._repeat
        self._last_uid, self._last_seen = uid, now
        if repeat:
            return
        try:
            self._on_card(uid)
        except Exception:  # the next card must still be read
            self.errors += 1
            log.exception("card handler failed")
