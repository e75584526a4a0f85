import ctypes.util
import gc
import os
import subprocess
import sys
import weakref

import pytest

from marketstream import memory
from marketstream.datasets import STOCK
from marketstream.settings import load_settings
from pipelines import consumer


@pytest.mark.skipif(memory._malloc_trim is None, reason="not glibc")
def test_freed_memory_is_returned_at_most_once_per_interval(monkeypatch):
    calls = []
    monkeypatch.setattr(memory, "_malloc_trim", lambda pad: calls.append(pad) or 1)
    monkeypatch.setattr(memory, "_last", 0.0)
    interval = memory.MIN_INTERVAL_SECONDS
    clock = iter([1000.0, 1000.0 + interval * 0.4, 1000.0 + interval * 1.2])
    monkeypatch.setattr(memory.time, "monotonic", lambda: next(clock))

    assert memory.release_free_memory() is True
    assert memory.release_free_memory() is False  # within the interval: too soon
    assert memory.release_free_memory() is True  # past it
    assert calls == [0, 0]


@pytest.mark.skipif(memory._malloc_trim is None, reason="not glibc")
def test_freed_memory_is_returned_before_a_copy_however_recently_it_was(monkeypatch):
    calls = []
    monkeypatch.setattr(memory, "_malloc_trim", lambda pad: calls.append(pad) or 1)
    monkeypatch.setattr(memory, "_last", 0.0)
    clock = iter([1000.0, 1000.0, 1000.0])
    monkeypatch.setattr(memory.time, "monotonic", lambda: next(clock))

    assert memory.release_free_memory() is True
    assert memory.release_free_memory(before_copy=True) is True
    assert memory.release_free_memory() is False  # the copy's trim counts as the last one
    assert calls == [0, 0]


def test_glibc_trim_is_found_on_linux():
    if "libc.so.6" not in (ctypes.util.find_library("c") or ""):
        pytest.skip("not glibc")
    assert memory._malloc_trim is not None


def _arrow_pool_after_importing_marketstream(env: dict) -> str:
    code = "import marketstream, pyarrow; print(pyarrow.default_memory_pool().backend_name)"
    env = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"} | env
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout.strip()


def test_arrow_uses_the_system_allocator_in_marketstream_processes():
    """Arrow's C++ code (the Parquet writer) takes the pool chosen when pyarrow loads, not `set_memory_pool`."""
    assert _arrow_pool_after_importing_marketstream({}) == "system"


def test_a_users_arrow_allocator_choice_wins():
    assert _arrow_pool_after_importing_marketstream({"ARROW_DEFAULT_MEMORY_POOL": "jemalloc"}) == "jemalloc"


_MAPPED_APART = """
import ctypes, sys
from marketstream import memory

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

mallinfo2 = ctypes.CDLL("libc.so.6").mallinfo2
mallinfo2.restype = MallInfo2
memory.MAX_MAPPED_BLOCKS = mallinfo2().hblks + int(sys.argv[1])  # the blocks mapped apart already count
memory.allocate_large_blocks_apart()
before = mallinfo2().hblkhd
# above the fixed threshold, below glibc's default (128 kB); many, as glibc serves a block from free heap
# space it has before it considers the threshold
blocks = [bytearray(48 * 1024) for _ in range(64)]
print(mallinfo2().hblkhd - before)
"""


def _bytes_mapped_apart_for_64_blocks_of_48_kb(env: dict, more_blocks: int = 1_000) -> int:
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_MMAP_THRESHOLD_"} | env
    return int(subprocess.run([sys.executable, "-c", _MAPPED_APART, str(more_blocks)], env=env, capture_output=True,
                              text=True, check=True).stdout)


@pytest.mark.skipif(memory._mallopt is None, reason="not glibc")
def test_blocks_above_the_threshold_get_pages_of_their_own_once_set():
    assert memory.MMAP_THRESHOLD_BYTES < 48 * 1024
    assert _bytes_mapped_apart_for_64_blocks_of_48_kb({}) >= 32 * 48 * 1024


@pytest.mark.skipif(memory._mallopt is None, reason="not glibc")
def test_blocks_past_the_most_mapped_at_once_come_from_the_heap():
    assert 0 < _bytes_mapped_apart_for_64_blocks_of_48_kb({}, more_blocks=8) <= 8 * 52 * 1024


@pytest.mark.skipif(memory._mallopt is None, reason="not glibc")
def test_a_users_mmap_threshold_wins():
    assert _bytes_mapped_apart_for_64_blocks_of_48_kb({"MALLOC_MMAP_THRESHOLD_": str(1 << 20)}) == 0


def test_building_a_consumer_flow_sets_the_threshold(monkeypatch):
    calls = []
    monkeypatch.setattr(consumer, "allocate_large_blocks_apart", lambda: calls.append(1) or True)
    consumer.build_consumer_flow(STOCK, load_settings(), lake_sink=object(), dead_letter_sink=object())
    assert calls == [1]


def test_startup_objects_are_left_out_of_collections_and_later_cycles_are_still_collected():
    class Node:
        pass

    before = Node()
    before.self = before
    gc.collect()
    try:
        memory.exempt_startup_objects_from_collection()
        assert gc.get_freeze_count() > 0
        # frozen: out of every generation the collector walks (by identity: `in` would compare with `==`)
        assert not any(tracked is before for tracked in gc.get_objects())
        later = Node()
        later.self = later
        gone = weakref.ref(later)
        del later
        gc.collect()
        assert gone() is None
    finally:
        gc.unfreeze()
