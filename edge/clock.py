"""Whether the system clock is synchronised (NTP), so events can say how far to trust ts."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys
import threading
import time
from collections.abc import Callable

_TIME_ERROR = 5  # adjtimex() return value meaning "clock not synchronised"


class _Timex(ctypes.Structure):
    # struct timex from <sys/timex.h>: modes first, then 4 longs, then status; padding covers
    # the rest (the kernel struct is 208 bytes on 64-bit Linux).
    _fields_ = [("modes", ctypes.c_uint), ("_pad", ctypes.c_byte * 256)]


@functools.cache
def _adjtimex() -> Callable[..., int] | None:
    # find_library may run a subprocess: look it up once, not on every badge.
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").adjtimex
    except (OSError, AttributeError):
        return None


def clock_synced() -> bool:
    """True when the kernel says the clock is synchronised; False when unknown."""
    adjtimex = _adjtimex()
    if adjtimex is None:
        return False
    state = adjtimex(ctypes.byref(_Timex()))  # modes=0: read only
    return 0 <= state < _TIME_ERROR


class CachedSync:
    """``clock_synced``, asked of the kernel at most every ``every_s`` seconds.

    A badge asks twice whether the clock is synchronised (its rules, its event). After
    the seconds between two cards the kernel call is out of every cache and costs tens
    of microseconds before the relay; synchronisation changes far more slowly than that.
    """

    def __init__(
        self,
        ask: Callable[[], bool] = clock_synced,
        *,
        every_s: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ask = ask
        self.every_s = every_s
        self.monotonic = monotonic
        self._value = False
        self._asked_at: float | None = None

    def __call__(self) -> bool:
        now = self.monotonic()
        if self._asked_at is None or now - self._asked_at >= self.every_s:
            self._value = self.ask()
            self._asked_at = now
        return self._value


class TrustedClock:
    """The unit's idea of the time, floored by what its server signed.

    A Pi without a real-time clock may boot in 1970 and stay unsynchronised for a while.
    Every valid signed message carries the server's ``issued_at``: real time is at least
    that. The newest one is the *anchor*, kept with the monotonic time it arrived, so a
    command's expiry can be checked without a synchronised clock.
    """

    def __init__(
        self,
        *,
        wall: Callable[[], float] = time.time,
        synced: Callable[[], bool] = clock_synced,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.wall = wall
        self.synced = synced
        self.monotonic = monotonic
        self._lock = threading.Lock()
        self.anchor: float | None = None
        self.anchor_mono = 0.0

    def observe(self, issued_at: float) -> None:
        """A valid signed message said it was issued at ``issued_at``."""
        with self._lock:
            if self.anchor is None or issued_at > self.anchor:
                self.anchor = issued_at
                self.anchor_mono = self.monotonic()

    def now(self) -> float:
        """Wall time when synchronised, else max(wall time, newest signed issued_at)."""
        now = self.wall()
        if self.synced():
            return now
        with self._lock:
            return now if self.anchor is None else max(now, self.anchor)

    def estimate(self) -> float | None:
        """anchor + time elapsed since it arrived; None without an anchor."""
        with self._lock:
            if self.anchor is None:
                return None
            return self.anchor + (self.monotonic() - self.anchor_mono)
