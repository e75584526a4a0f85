from datetime import datetime, timedelta, timezone

import pyarrow as pa

from marketstream.batching import BufferBudget, TableBatcher


class Clock:
    def __init__(self):
        self.now = datetime(2026, 11, 24, 15, 0, tzinfo=timezone.utc)

    def __call__(self):
        return self.now


def rows(*values) -> pa.Table:
    return pa.table({"v": list(values)})


def flat(tables) -> list:
    return [t.column("v").to_pylist() for t in tables]


def test_holds_rows_until_the_end_of_input_when_young_and_within_budget():
    batcher = TableBatcher(timedelta(seconds=10), BufferBudget(1000), now=Clock())
    assert batcher.on_batch([rows(0, 1), rows(2, 3, 4, 5, 6)]) == ((), False)
    tables, discard = batcher.on_eof()
    assert flat(tables) == [[0, 1, 2, 3, 4, 5, 6]] and discard is True


def test_age_counts_from_the_first_row_not_the_last():
    clock = Clock()
    batcher = TableBatcher(timedelta(seconds=10), BufferBudget(1000), now=clock)
    batcher.on_batch([rows(1)])
    first_deadline = batcher.notify_at()
    clock.now += timedelta(seconds=9)
    batcher.on_batch([rows(2)])
    assert batcher.notify_at() == first_deadline == datetime(2026, 11, 24, 15, 0, 10, tzinfo=timezone.utc)
    tables, discard = batcher.on_notify()
    assert flat(tables) == [[1, 2]] and discard is True


def test_nothing_to_flush_emits_nothing():
    batcher = TableBatcher(timedelta(seconds=1), BufferBudget(1000), now=Clock())
    assert batcher.on_eof() == ((), True)
    assert batcher.notify_at() is None


def test_snapshot_restores_rows_and_deadline():
    clock = Clock()
    batcher = TableBatcher(timedelta(seconds=1), BufferBudget(1000), now=clock)
    batcher.on_batch([rows("a", "b")])
    restored = TableBatcher(timedelta(seconds=1), BufferBudget(1000), batcher.snapshot(), now=clock)
    assert restored.notify_at() == batcher.notify_at()
    assert flat(restored.on_eof()[0]) == [["a", "b"]]


def test_batchers_flush_early_when_the_process_holds_too_many_rows():
    budget = BufferBudget(5)
    first = TableBatcher(timedelta(seconds=10), budget, now=Clock())
    second = TableBatcher(timedelta(seconds=10), budget, now=Clock())
    assert first.on_batch([rows(1, 2, 3)]) == ((), False)
    assert budget.rows == 3
    out, discard = second.on_batch([rows(4, 5, 6)])  # 6 rows held > 5: flush
    assert flat(out) == [[4, 5, 6]] and discard is True
    assert budget.rows == 3
    flat(first.on_eof()[0])
    assert budget.rows == 0


def test_over_budget_the_batchers_holding_their_fair_share_flush_not_the_small_ones():
    budget = BufferBudget(10)
    large = TableBatcher(timedelta(seconds=10), budget, now=Clock())
    small = TableBatcher(timedelta(seconds=10), budget, now=Clock())
    assert large.on_batch([rows(*range(9))]) == ((), False)
    assert small.on_batch([rows(1, 2)]) == ((), False)  # 11 held > 10, but 2 rows < a fair share of 5
    out, discard = large.on_batch([rows(9)])
    assert flat(out) == [list(range(10))] and discard is True
    assert (budget.rows, budget.holders) == (2, 1)
