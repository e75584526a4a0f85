import ctypes.util

import pytest

from marketstream import memory


@pytest.mark.skipif(memory._malloc_trim is None, reason="not glibc")
def test_freed_memory_is_returned_at_most_once_per_interval(monkeypatch):
    calls = []
    monkeypatch.setattr(memory, "_malloc_trim", lambda pad: calls.append(pad) or 1)
    monkeypatch.setattr(memory, "_last", 0.0)
    clock = iter([1000.0, 1000.4, 1001.2])
    monkeypatch.setattr(memory.time, "monotonic", lambda: next(clock))

    assert memory.release_free_memory() is True
    assert memory.release_free_memory() is False  # 0.4 s later: too soon
    assert memory.release_free_memory() is True  # 1.2 s after the first
    assert calls == [0, 0]


def test_glibc_trim_is_found_on_linux():
    if "libc.so.6" not in (ctypes.util.find_library("c") or ""):
        pytest.skip("not glibc")
    assert memory._malloc_trim is not None
