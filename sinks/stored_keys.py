"""Which natural keys (an article's id, a post's uri, an observation's series, date and vintage) each partition
of a Delta table holds, so that a record published twice is stored once.

The API producers are at-least-once: one killed after publishing and before its next snapshot publishes
those records again, at new Kafka offsets, where the offsets' transaction versions cannot recognise them.
Their key can: `KeyCheck.new_rows` leaves out every row whose key the partition holds in the snapshot a
commit is prepared against, whoever wrote it, and every row repeating the key of an earlier row of the same
commit, so the first arrival is the one kept.

What a partition holds is read from the table the first time a commit touches it, then kept in step with
this writer's own commits (`StoredKeys.committed`); when the snapshot shows a file this writer did not
commit there (another writer's, compaction's) or lacks one it knew, the partition is read again. At most
`capacity` partitions are remembered, the least recently used forgotten first.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field

import pyarrow as pa

from sinks.delta_commits import TableView

Partition = tuple[tuple[str, object], ...]
"""A partition as its (column, value) pairs, in path order."""


def row_keys(rows: pa.Table, columns: tuple[str, ...]) -> list[tuple]:
    """Each row's key, as a tuple of Python values."""
    return list(zip(*(rows.column(name).to_pylist() for name in columns)))


@dataclass
class _Held:
    files: set[str]
    keys: set[Hashable]


@dataclass
class KeyCheck:
    """The key check of one commit attempt, against one snapshot of the table."""

    stored: "StoredKeys"
    view: TableView
    planned: dict[Partition, set[Hashable]] = field(default_factory=dict)
    """Per partition, the keys of the rows this attempt adds."""
    added: dict[str, set[Hashable]] = field(default_factory=dict)
    """Per file path this attempt adds, its keys."""

    def new_rows(self, partition: Partition, rows: pa.Table) -> pa.Table:
        """The `rows` of `partition` whose key is neither stored there nor among the rows this attempt adds
        already (the first of repeated keys kept)."""
        known = self.stored.held(self.view, partition)
        planned = self.planned.setdefault(partition, set())
        keep = []
        for key in row_keys(rows, self.stored.columns):
            keep.append(key not in known and key not in planned)
            if keep[-1]:
                planned.add(key)
        return rows if all(keep) else rows.filter(pa.array(keep, pa.bool_()))

    def adding(self, path: str, rows: pa.Table) -> None:
        """This attempt adds the file at `path` (relative to the table) holding `rows`."""
        self.added[path] = set(row_keys(rows, self.stored.columns))


class StoredKeys:
    """The keys (`columns`, file columns) each partition of one Delta table holds, as this writer knows them."""

    def __init__(self, columns: tuple[str, ...], capacity: int = 1024):
        self.columns = columns
        self._capacity = capacity
        self._held: OrderedDict[Partition, _Held] = OrderedDict()
        self._own: dict[str, set[Hashable]] = {}
        """Keys of files this writer committed, until a snapshot of their partition shows them."""
        self._lock = threading.Lock()

    def check(self, view: TableView) -> KeyCheck:
        return KeyCheck(self, view)

    def held(self, view: TableView, partition: Partition) -> set[Hashable]:
        """The keys `partition` holds in `view`."""
        filters = [(name, "=", value) for name, value in partition]
        files = set(view.files(filters))
        with self._lock:
            known = self._held.pop(partition, None)
            if known is not None and known.files <= files and all(path in self._own for path in files - known.files):
                for path in files - known.files:
                    known.keys |= self._own.pop(path)
                known.files = files
            else:
                known = None
        if known is None:
            stored = view.read(filters, columns=list(self.columns))
            known = _Held(files, set(row_keys(stored, self.columns)))
        with self._lock:
            for path in files:
                self._own.pop(path, None)
            self._held[partition] = known
            while len(self._held) > self._capacity:
                forgotten = self._held.popitem(last=False)[1]
                for path in forgotten.files:
                    self._own.pop(path, None)
        return known.keys

    def committed(self, check: KeyCheck, paths: Iterable[str]) -> None:
        """The attempt `check` prepared landed, adding the files at `paths`."""
        with self._lock:
            for path in paths:
                self._own[path] = check.added[path]
