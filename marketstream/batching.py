"""Window-batching of keyed Arrow tables: emit a key's rows once they reach a row count or an age, and at
end of input.

Unlike `bytewax.operators.collect`, whose timeout restarts with every item, the age here is counted from
the first row of a batch, so a steady trickle still flushes within `max_age`. Rows travel as Arrow
tables, so a batch of 50 000 rows is a handful of objects, cheap to hold and to snapshot. A process-wide
`BufferBudget` caps the rows held across all keys.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pyarrow as pa
from bytewax.operators import StatefulBatchLogic

_NOTHING: tuple = ()
COMPACT_AFTER_TABLES = 16


class BufferBudget:
    """Rows held by all batchers of this process. Past `limit`, a batcher that receives rows flushes what
    it holds, so memory stays bounded however many keys (tickers x dates x partitions) are open."""

    def __init__(self, limit: int):
        self.limit = limit
        self.rows = 0
        self._lock = threading.Lock()

    def add(self, rows: int) -> bool:
        """Count `rows` more; True if the process now holds more than its limit."""
        with self._lock:
            self.rows += rows
            return self.rows > self.limit

    def release(self, rows: int) -> None:
        with self._lock:
            self.rows -= rows


class TableBatcher(StatefulBatchLogic[pa.Table, pa.Table, tuple[list[pa.Table], datetime | None]]):
    def __init__(self, max_rows: int, max_age: timedelta, budget: BufferBudget, state=None,
                 now=lambda: datetime.now(timezone.utc)):
        self._max_rows = max_rows
        self._max_age = max_age
        self._budget = budget
        self._now = now
        self._tables, self._deadline = state if state is not None else ([], None)
        self._rows = sum(t.num_rows for t in self._tables)
        budget.add(self._rows)

    def on_batch(self, values: list[pa.Table]):
        if not self._tables:
            self._deadline = self._now() + self._max_age
        self._tables.extend(values)
        if len(self._tables) > COMPACT_AFTER_TABLES:
            # many small tables cost far more memory than their rows: keep one contiguous table instead
            self._tables = [pa.concat_tables(self._tables).combine_chunks()]
        added = sum(t.num_rows for t in values)
        self._rows += added
        over_budget = self._budget.add(added)
        if self._rows < self._max_rows:
            return self._flush() if over_budget else (_NOTHING, StatefulBatchLogic.RETAIN)
        table = pa.concat_tables(self._tables)
        full = table.num_rows - table.num_rows % self._max_rows
        out = [table.slice(start, self._max_rows) for start in range(0, full, self._max_rows)]
        rest = table.slice(full)
        self._budget.release(full)
        self._tables, self._rows = ([rest], rest.num_rows) if rest.num_rows else ([], 0)
        return out, (StatefulBatchLogic.RETAIN if self._rows else StatefulBatchLogic.DISCARD)

    def on_notify(self):
        return self._flush()

    def on_eof(self):
        return self._flush()

    def _flush(self):
        tables, rows, self._tables, self._rows = self._tables, self._rows, [], 0
        self._budget.release(rows)
        return ((pa.concat_tables(tables),) if tables else _NOTHING), StatefulBatchLogic.DISCARD

    def notify_at(self) -> datetime | None:
        return self._deadline if self._tables else None

    def snapshot(self):
        return (list(self._tables), self._deadline)
