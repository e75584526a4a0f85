"""Bounded memory of what a producer already published, small enough to live in Bytewax state."""

from __future__ import annotations

from collections.abc import Hashable


class RecentlySeen:
    """The last `capacity` ids remembered, oldest forgotten first. Picklable, for snapshots."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self._ids: dict[Hashable, None] = {}

    def __contains__(self, item: Hashable) -> bool:
        return item in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, item: Hashable) -> bool:
        """Remember `item`; False if it was already remembered."""
        if item in self._ids:
            return False
        self._ids[item] = None
        while len(self._ids) > self.capacity:
            del self._ids[next(iter(self._ids))]
        return True
