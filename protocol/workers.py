"""Worker threads that never die silently, on the unit and on the server alike.

A worker runs one step function in a loop. An unexpected error is logged with its
traceback, counted, and followed by a back-off (0.1 s doubling up to 30 s) before the next
step; one good step resets the back-off. Liveness and error counts are read by the unit's
status, the server's ``/healthz`` and the systemd watchdog.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

log = logging.getLogger(__name__)

BACKOFF_START_S = 0.1
BACKOFF_MAX_S = 30.0


def freeze_startup_objects() -> None:
    """Leave what start-up built (modules, classes, the app) out of every later garbage
    collection, once its own garbage is collected: a full collection then walks only what
    the process made since. In a long-running process, most objects alive at start are
    alive for good; walking them is the bulk of a full collection, and a collection holds
    every thread of the interpreter (docs/performance.md, National scale).
    """
    gc.collect()
    gc.freeze()


@dataclass(frozen=True)
class WorkerHealth:
    name: str
    alive: bool
    errors: int
    last_error: str | None


class Worker(threading.Thread):
    """A daemon thread calling ``step()`` until stopped; ``step`` waits on its own input."""

    def __init__(
        self,
        name: str,
        step: Callable[[], None],
        *,
        backoff_max_s: float = BACKOFF_MAX_S,
    ) -> None:
        super().__init__(name=name, daemon=True)
        self._step = step
        self._backoff_max_s = backoff_max_s
        self.stopping = threading.Event()
        self.errors = 0
        self.last_error: str | None = None
        self.last_error_at: float | None = None

    def run(self) -> None:
        pause = BACKOFF_START_S
        while not self.stopping.is_set():
            try:
                self._step()
            except Exception as exc:
                self.errors += 1
                self.last_error = f"{type(exc).__name__}: {exc}"[:200]
                self.last_error_at = time.time()
                log.exception(
                    "worker %s failed (error %d); again in %.1f s", self.name, self.errors, pause
                )
                self.stopping.wait(pause)
                pause = min(pause * 2, self._backoff_max_s)
            else:
                pause = BACKOFF_START_S

    def stop(self, timeout: float = 5.0) -> None:
        self.stopping.set()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(timeout)

    def health(self) -> WorkerHealth:
        return WorkerHealth(self.name, self.is_alive(), self.errors, self.last_error)


def all_alive(workers: Iterable[Worker]) -> bool:
    return all(w.is_alive() for w in workers)
