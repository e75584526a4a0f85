"""Handing freed memory back to the operating system; keeping the garbage collector off what lives for good.

glibc's malloc keeps freed blocks for reuse; with Arrow tables of many sizes freed on several threads, the
held-but-unused part grew to ~80 MB of the consumers' peak RSS in the benchmark. `malloc_trim` returns it.
It costs a few milliseconds, so it runs at most once per `MIN_INTERVAL_SECONDS`, after large frees, and
before each cut of a flush into files (the Delta sink), whose copy of the rows is the peak's moment: 280-285
MB against 294-300 at the peak of a 500 000-trade drain in the benchmark.

Between two trims a block freed inside the heap still counts in RSS, and glibc puts ever larger blocks there:
after freeing a block it had mapped on its own, it raises the size from which blocks get pages of their
own to that block's (up to 32 MB). `allocate_large_blocks_apart` fixes that size at `MMAP_THRESHOLD_BYTES`,
so the column buffers of decoded and sorted batches are handed back the moment they are freed. The consumers
of `pipelines.consumer` call it when their flow is built: ~20 MB less at the peak of a drain in the
benchmark, the same speed within its noise. The bars' consumer does not: its aggregations reuse such
blocks, and with the threshold its drains of 2 M trades took 11.1-11.7 s against 10.2-10.4 s without (four
rounds each on a quiet machine), for ~10 MB less. Both are no-ops where the C library is not glibc.

`exempt_startup_objects_from_collection`: the memory allocated at start stays put, and Python's cyclic
collector no longer walks it in each of its full passes.

`keep_pyarrow_from_loading_pandas`: pyarrow imports pandas, if installed, on its first `pa.array` or
`pa.scalar` of the process (and any compute call given a Python value) only to ask whether the value is a
pandas object; pandas then holds ~40 MB for good. A consumer never hands pyarrow pandas objects, so it lets
pyarrow find pandas absent at start: 42 MB less at the peak of a 500 000-trade drain (239 against 281 MB).
What asks pyarrow for pandas outright (`Table.to_pandas`) still imports it then, as does any `import pandas`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
import sys
import threading
import time

import pyarrow as pa

MIN_INTERVAL_SECONDS = 0.25
MMAP_THRESHOLD_BYTES = 32 * 1024
MAX_MAPPED_BLOCKS = 16_384
"""Blocks mapped apart at once, at most; past it glibc takes them from the heap again. Each is a mapping of
the process, and the kernel allows ~65 000 (`vm.max_map_count`), which Python's arenas, thread stacks and
libraries share: a consumer holding far more rows than its default budget must not exhaust them."""
_M_MMAP_THRESHOLD, _M_MMAP_MAX = -3, -4  # mallopt's parameters, from glibc's malloc.h

try:
    _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    _malloc_trim, _mallopt = _libc.malloc_trim, _libc.mallopt
except (OSError, AttributeError):
    _malloc_trim = _mallopt = None

_lock = threading.Lock()
_last = 0.0


def release_free_memory(*, before_copy: bool = False) -> bool:
    """Return freed heap memory to the OS, unless that was done less than a moment ago; True if done.
    `before_copy`: even so, as a large copy is about to be made (a flush cut into files), so that what was
    freed since does not add to the peak the copy makes."""
    global _last
    if _malloc_trim is None:
        return False
    with _lock:
        now = time.monotonic()
        if now - _last < MIN_INTERVAL_SECONDS and not before_copy:
            return False
        _last = now
    _malloc_trim(0)
    return True


def allocate_large_blocks_apart() -> bool:
    """Blocks of `MMAP_THRESHOLD_BYTES` or more get pages of their own from now on, returned to the OS when
    the block is freed; True if set. glibc's own `MALLOC_MMAP_THRESHOLD_`, if the user set it, wins."""
    if _mallopt is None or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    return _mallopt(_M_MMAP_MAX, MAX_MAPPED_BLOCKS) == 1 and _mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1


def exempt_startup_objects_from_collection() -> None:
    """Everything alive once a flow is built and its servers answer (modules, classes, settings, the flow:
    what lives as long as the process) is left out of the cyclic garbage collector's passes (`gc.freeze`),
    so that its full collections walk only what the flow makes. They come every few thousand polls, as
    confluent-kafka's message objects are tracked: in a drain of 2 M trades, 22 of them walked the startup
    objects for 0.86 s of the worker's time; 0.09 s after. Objects made later are collected as before."""
    gc.freeze()


def keep_pyarrow_from_loading_pandas() -> bool:
    """pyarrow stops looking for pandas in this process unless asked for pandas outright; True if it found
    none. Call it before threads start: an `import pandas` on another thread meanwhile would fail. Should
    pandas be imported later by other means, pyarrow reads pandas objects handed to it as plain sequences
    (a NaN stays NaN) until something asks it for pandas outright: hand it none."""
    if "pandas" in sys.modules:
        return False  # loaded already: nothing to spare
    absent = _PandasAbsent()
    sys.meta_path.insert(0, absent)
    try:
        pa.scalar(0)  # pyarrow looks for pandas once, on first use, and remembers it is missing
    finally:
        sys.meta_path.remove(absent)
    return "pandas" not in sys.modules


class _PandasAbsent:
    """An import finder for which pandas is not installed (pyarrow's import of it, being compiled, is not
    stopped by a `None` in `sys.modules`)."""

    def find_spec(self, name: str, path=None, target=None):
        if name == "pandas":
            raise ModuleNotFoundError("pandas is kept out of this process", name=name)
        return None
