"""Whether the system clock is synchronised (NTP), so events can say how far to trust ts."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys
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
