"""Window-batching of keyed Arrow tables: emit a key's rows once they reach a row count or an age, and at
end of input.

Unlike `bytewax.operators.collect`, whose timeout restarts with every item, the age here is counted from
the first row of a batch, so a steady trickle still flushes within `max_age`. Rows travel as Arrow
tables, so a batch of 50 000 rows is a handful of objects, cheap to hold and to snapshot.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pyarrow as pa
from bytewax.operators import StatefulBatchLogic

_NOTHING: tuple = ()


class TableBatcher(StatefulBatchLogic[pa.Table, pa.Table, tuple[list[pa.Table], datetime | None]]):
    def __init__(self, max_rows: int, max_age: timedelta, state=None, now=lambda: datetime.now(timezone.utc)):
        self._max_rows = max_rows
        self._max_age = max_age
        self._now = now
        self._tables, self._deadline = state if state is not None else ([], None)
        self._rows = sum(t.num_rows for t in self._tables)

    def on_batch(self, values: list[pa.Table]):
        if not self._tables:
            self._deadline = self._now() + self._max_age
        self._tables.extend(values)
        self._rows += sum(t.num_rows for t in values)
        if self._rows < self._max_rows:
            return _NOTHING, StatefulBatchLogic.RETAIN
        table = pa.concat_tables(self._tables)
        full = table.num_rows - table.num_rows % self._max_rows
        out = [table.slice(start, self._max_rows) for start in range(0, full, self._max_rows)]
        rest = table.slice(full)
        self._tables, self._rows = ([rest], rest.num_rows) if rest.num_rows else ([], 0)
        return out, (StatefulBatchLogic.RETAIN if self._rows else StatefulBatchLogic.DISCARD)

    def on_notify(self):
        return self._flush()

    def on_eof(self):
        return self._flush()

    def _flush(self):
        tables, self._tables, self._rows = self._tables, [], 0
        return ((pa.concat_tables(tables),) if tables else _NOTHING), StatefulBatchLogic.DISCARD

    def notify_at(self) -> datetime | None:
        return self._deadline if self._tables else None

    def snapshot(self):
        return (list(self._tables), self._deadline)
