"""Whether the system clock is synchronised (NTP), so events can say how far to trust ts."""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_TIME_ERROR = 5  # adjtimex() return value meaning "clock not synchronised"


class _Timex(ctypes.Structure):
    # struct timex from <sys/timex.h>: modes first, then 4 longs, then status; padding covers
    # the rest (the kernel struct is 208 bytes on 64-bit Linux).
    _fields_ = [("modes", ctypes.c_uint), ("_pad", ctypes.c_byte * 256)]


def clock_synced() -> bool:
    """True when the kernel says the clock is synchronised; False when unknown."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        tx = _Timex()
        state = libc.adjtimex(ctypes.byref(tx))  # modes=0: read only
    except (OSError, AttributeError):
        return False
    return 0 <= state < _TIME_ERROR
