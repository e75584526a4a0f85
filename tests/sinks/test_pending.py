"""The bound on writes in flight (no server)."""

import threading
from concurrent.futures import Future, ThreadPoolExecutor

import pytest

from sinks.pending import PendingWrites


def test_a_new_write_waits_for_the_oldest_once_the_limit_is_reached():
    pending, gate = PendingWrites(2), threading.Event()
    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(gate.wait)
        pending.add(first)
        pending.add(pool.submit(lambda: None))
        made_room = threading.Event()
        waiter = threading.Thread(target=lambda: (pending.make_room(), made_room.set()))
        waiter.start()
        assert not made_room.wait(0.2)  # the oldest write is still in flight
        gate.set()
        assert made_room.wait(5) and len(pending) == 1 and first.done()
        waiter.join()


def test_a_failed_write_is_raised_by_the_wait_that_meets_it():
    pending, failed = PendingWrites(4), Future()
    failed.set_exception(OSError("store down"))
    done = Future()
    done.set_result(None)
    pending.add(done)
    pending.add(failed)
    with pytest.raises(OSError, match="store down"):
        pending.wait_all()


def test_a_limit_below_one_is_refused():
    with pytest.raises(ValueError):
        PendingWrites(0)
