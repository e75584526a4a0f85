"""The writes a sink partition has in flight, bounded in number and in rows: what makes a slow store slow
the dataflow down (backpressure) instead of filling memory.

Delivery guarantee: not applicable; it only waits. A failed write's exception is raised by the wait that
meets it, so a sink never reports a write done that was not.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future


class PendingWrites:
    """Futures of writes in flight, in the order they were started: at most `limit` of them, holding at most
    `max_rows` rows together (a larger write still starts, alone)."""

    def __init__(self, limit: int, max_rows: int | None = None):
        if limit < 1 or (max_rows is not None and max_rows < 1):
            raise ValueError("limit and max_rows must be at least 1")
        self.limit = limit
        self.max_rows = max_rows
        self.rows = 0
        self._writes: deque[tuple[Future, int]] = deque()

    def _wait_oldest(self) -> None:
        future, rows = self._writes[0]
        future.result()
        self._writes.popleft()
        self.rows -= rows

    def make_room(self, rows: int = 0) -> None:
        """Wait for the oldest writes until one of `rows` rows may start."""
        while self._writes and (len(self._writes) >= self.limit or
                                (self.max_rows is not None and self.rows + rows > self.max_rows)):
            self._wait_oldest()

    def add(self, future: Future, rows: int = 0) -> None:
        self._writes.append((future, rows))
        self.rows += rows

    def wait_all(self) -> None:
        """Wait for every write in flight, oldest first."""
        while self._writes:
            self._wait_oldest()

    def __len__(self) -> int:
        return len(self._writes)
