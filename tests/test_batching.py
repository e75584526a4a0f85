from datetime import datetime, timedelta, timezone

from marketstream.batching import SizeOrAgeBatcher


class Clock:
    def __init__(self):
        self.now = datetime(2026, 11, 24, 15, 0, tzinfo=timezone.utc)

    def __call__(self):
        return self.now


def test_emits_full_batches_at_the_row_limit_and_keeps_the_rest():
    batcher = SizeOrAgeBatcher(3, timedelta(seconds=10), now=Clock())
    out, discard = batcher.on_batch(list(range(7)))
    assert out == [[0, 1, 2], [3, 4, 5]]
    assert discard is False
    assert batcher.on_eof() == (([6],), True)


def test_age_counts_from_the_first_row_not_the_last():
    clock = Clock()
    batcher = SizeOrAgeBatcher(100, timedelta(seconds=10), now=clock)
    batcher.on_batch([1])
    first_deadline = batcher.notify_at()
    clock.now += timedelta(seconds=9)
    batcher.on_batch([2])
    assert batcher.notify_at() == first_deadline == datetime(2026, 11, 24, 15, 0, 10, tzinfo=timezone.utc)
    assert batcher.on_notify() == (([1, 2],), True)


def test_nothing_to_flush_emits_nothing():
    batcher = SizeOrAgeBatcher(5, timedelta(seconds=1), now=Clock())
    assert batcher.on_eof() == ((), True)
    assert batcher.notify_at() is None


def test_snapshot_restores_rows_and_deadline():
    clock = Clock()
    batcher = SizeOrAgeBatcher(5, timedelta(seconds=1), now=clock)
    batcher.on_batch(["a", "b"])
    restored = SizeOrAgeBatcher(5, timedelta(seconds=1), batcher.snapshot(), now=clock)
    assert restored.notify_at() == batcher.notify_at()
    assert restored.on_eof() == ((["a", "b"],), True)
