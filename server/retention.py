"""The retention purge, run by the server every ``retention_interval_minutes`` (and by
``telecentre-server purge``): raw events and unknown cards past ``event_retention_days``
(folded into daily counts first), visits and credit days past ``visit_retention_days``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from protocol.workers import Worker
from server.domain.audit import AuditEvent
from server.domain.privacy import RETENTION_ACTOR, check_retention
from server.settings import Settings, SettingsError
from server.store import Store

log = logging.getLogger(__name__)


def retention_days(settings: Settings) -> tuple[int, int]:
    """(event_retention_days, visit_retention_days), or SettingsError naming the bad one."""
    try:
        return (
            check_retention("event_retention_days", settings.event_retention_days),
            check_retention("visit_retention_days", settings.visit_retention_days),
        )
    except ValueError as exc:
        raise SettingsError(str(exc)) from None


def apply_retention(store: Store, settings: Settings, *, actor: str, now: float) -> dict[str, int]:
    """Purge what is past its retention; log and audit what went (when anything did)."""
    event_days, visit_days = retention_days(settings)
    removed = store.purge(event_days=event_days, visit_days=visit_days, now=now)
    rows = {k: v for k, v in removed.items() if k != "days_counted"}
    if any(rows.values()):
        log.info(
            "retention: removed %s; %d days added to the daily counts",
            ", ".join(f"{n} {table}" for table, n in rows.items() if n),
            removed["days_counted"],
        )
        store.audit(
            AuditEvent(
                actor,
                "retention.purged",
                "retention",
                None,
                now,
                after={
                    "removed": removed,
                    "event_retention_days": event_days,
                    "visit_retention_days": visit_days,
                },
            )
        )
    return removed


class RetentionWorker(Worker):
    """Applies the retention at start, then every ``retention_interval_minutes``."""

    def __init__(
        self, store: Store, settings: Settings, *, clock: Callable[[], float] = time.time
    ) -> None:
        super().__init__("retention", self._step)
        retention_days(settings)  # a bad setting stops the start, with its name
        self.store = store
        self.settings = settings
        self.interval_s = settings.retention_interval_minutes * 60
        self._clock = clock
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self.requested = 1  # runs asked for; the first one is at start
        self.done = 0  # the last request a finished run covered
        self.last: dict[str, int] | None = None  # what the last run removed
        self.tried = threading.Event()  # set once the first run is over, done or failed

    def request(self) -> int:
        """Run now; returns the number ``done`` reaches once a run started after this call
        is over."""
        with self._lock:
            self.requested += 1
            ticket = self.requested
        self._wake.set()
        return ticket

    def stop(self, timeout: float = 5.0) -> None:
        self.stopping.set()
        self._wake.set()
        super().stop(timeout)

    def _step(self) -> None:
        with self._lock:
            due = self.requested > self.done
        if not due and not self._wake.wait(self.interval_s):
            with self._lock:
                self.requested += 1  # the interval is over
        if self.stopping.is_set():
            return
        self._wake.clear()
        with self._lock:
            ticket = self.requested
        try:
            self.last = apply_retention(
                self.store, self.settings, actor=RETENTION_ACTOR, now=self._clock()
            )
        finally:
            self.tried.set()
        self.done = ticket
