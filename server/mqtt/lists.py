"""Keeps every unit's retained access list in step with members and badges.

Changes only mark units dirty; one thread recomputes and publishes, so a burst of API
calls (a batch enrolment) becomes one list per unit, not one per call.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

from protocol.messages import AccessList, encode
from server.store import Store

log = logging.getLogger(__name__)


class AccessListPublisher(threading.Thread):
    """The thread that recomputes and publishes the access lists of units marked dirty."""

    def __init__(self, store: Store, publish: Callable[[str, bytes], bool]) -> None:
        super().__init__(name="access-lists", daemon=True)
        self.store = store
        self._publish = publish
        self._dirty: set[str] = set()
        self._all = False
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self.published: dict[str, int] = {}

    def invalidate(self, device_ids: Iterable[str] | None = None) -> None:
        """Republish the lists of these units (all units when None)."""
        with self._lock:
            if device_ids is None:
                self._all = True
            else:
                self._dirty.update(device_ids)
        self._wake.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        self.join(timeout=5)

    def run(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(5.0)
            self._wake.clear()
            with self._lock:
                every, dirty = self._all, self._dirty
                self._all, self._dirty = False, set()
            if every:
                dirty |= {d["device_id"] for d in self.store.devices()}
            failed = {device_id for device_id in sorted(dirty) if not self._publish_one(device_id)}
            if failed:
                with self._lock:
                    self._dirty |= failed  # retried on the next wake (or within 5 s)

    def _publish_one(self, device_id: str) -> bool:
        try:
            centre_id = self.store.device(device_id)["centre_id"]
            now = time.time()
            grants = self.store.grants_for_centre(centre_id, now)
            version = self.store.next_list_version(device_id, len(grants), now)
            payload = encode(AccessList(version, now, centre_id, grants))
            if not self._publish(device_id, payload):
                return False
        except Exception:
            log.exception("access list for %s not published", device_id)
            return False
        log.info("access list v%d for %s: %d badges", version, device_id, len(grants))
        self.published[device_id] = version
        return True
