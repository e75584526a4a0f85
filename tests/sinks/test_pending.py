"""The bound on writes in flight (no server)."""

import threading
from concurrent.futures import Future

import pytest

from sinks.pending import PendingWrites


def test_a_new_write_waits_for_the_oldest_once_the_limit_is_reached():
    # no timed waits: the suite also runs under a faked clock
    pending, oldest, newer = PendingWrites(2), Future(), Future()
    newer.set_result(None)
    pending.add(oldest)
    pending.add(newer)
    waiter = threading.Thread(target=pending.make_room)
    waiter.start()
    assert waiter.is_alive()  # it cannot return while the oldest write is in flight
    oldest.set_result(None)
    waiter.join()
    assert len(pending) == 1


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
