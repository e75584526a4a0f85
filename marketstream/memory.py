"""Handing freed memory back to the operating system.

glibc's malloc keeps freed blocks for reuse; with Arrow tables of many sizes freed on several threads, the
held-but-unused part grew to ~80 MB of the consumers' peak RSS in the benchmark. `malloc_trim` returns it.
It costs a few milliseconds, so it runs at most once per `MIN_INTERVAL_SECONDS`, after large frees. A no-op
where the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
import time

MIN_INTERVAL_SECONDS = 0.25

try:
    _malloc_trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
except (OSError, AttributeError):
    _malloc_trim = None

_lock = threading.Lock()
_last = 0.0


def release_free_memory() -> bool:
    """Return freed heap memory to the OS, unless that was done less than a moment ago; True if done."""
    global _last
    if _malloc_trim is None:
        return False
    with _lock:
        now = time.monotonic()
        if now - _last < MIN_INTERVAL_SECONDS:
            return False
        _last = now
    _malloc_trim(0)
    return True
