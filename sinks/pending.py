"""The writes a sink partition has in flight, bounded: what makes a slow store slow the dataflow down
(backpressure) instead of filling memory.

Delivery guarantee: not applicable; it only waits. A failed write's exception is raised by the wait that
meets it, so a sink never reports a write done that was not.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future


class PendingWrites:
    """Futures of writes in flight, in the order they were started, at most `limit` of them."""

    def __init__(self, limit: int):
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.limit = limit
        self._futures: deque[Future] = deque()

    def make_room(self) -> None:
        """Wait for the oldest writes until another may start."""
        while len(self._futures) >= self.limit:
            self._futures.popleft().result()

    def add(self, future: Future) -> None:
        self._futures.append(future)

    def wait_all(self) -> None:
        """Wait for every write in flight, oldest first."""
        while self._futures:
            self._futures.popleft().result()

    def __len__(self) -> int:
        return len(self._futures)
