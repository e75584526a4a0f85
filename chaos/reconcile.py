"""What a chaos run checks at the end, as pure functions of what was read back (the run reads Kafka and the
lake; these say what is wrong):

- `deliveries`: each expected key stored exactly once: which are lost, which doubled, which stored
  without being expected;
- `bars_differences`: every bar equal to the SQL aggregate of its trades table, one row a minute;
- `outside_layout`: the objects of a bucket that are neither a table's log, a data file in its partition
  folders, nor a dead letter's original.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field

AGGREGATE = """
    SELECT ticker, minute, open, high, low, close, volume, trades, vwap FROM (
        SELECT ticker, time_bucket(INTERVAL 1 MINUTE, timestamp) AS minute,
               first(price ORDER BY timestamp, kafka_offset) AS open, max(price) AS high, min(price) AS low,
               last(price ORDER BY timestamp, kafka_offset) AS close, sum(size) AS volume, count(*) AS trades,
               sum(price * size) / sum(size) AS vwap
        FROM {trades} GROUP BY ALL)
    ORDER BY ticker, minute"""
"""The one-minute bars of a trades table, as the bar contract defines them (README, *One-minute bars*)."""
BARS = "SELECT ticker, minute, open, high, low, close, volume, trades, vwap FROM {bars} ORDER BY ticker, minute"


@dataclass
class Deliveries:
    expected: int
    stored: int
    lost: list = field(default_factory=list)
    doubled: list = field(default_factory=list)
    unexpected: list = field(default_factory=list)

    @property
    def exact(self) -> bool:
        return not (self.lost or self.doubled or self.unexpected)

    def summary(self, examples: int = 5) -> dict:
        return {"expected": self.expected, "stored": self.stored, "lost": len(self.lost),
                "doubled": len(self.doubled), "unexpected": len(self.unexpected),
                "examples": {"lost": [str(k) for k in self.lost[:examples]],
                             "doubled": [str(k) for k in self.doubled[:examples]],
                             "unexpected": [str(k) for k in self.unexpected[:examples]]}}


def deliveries(expected: Iterable[Hashable], stored: Iterable[Hashable]) -> Deliveries:
    """`stored` (a key per stored row) against `expected` (each key once; a key listed twice is expected
    once): lost = expected, never stored; doubled = stored more than once; unexpected = stored, not expected."""
    wanted = set(expected)
    counts = Counter(stored)
    return Deliveries(
        expected=len(wanted), stored=sum(counts.values()),
        lost=sorted((key for key in wanted if key not in counts), key=str),
        doubled=sorted((key for key, count in counts.items() if count > 1), key=str),
        unexpected=sorted((key for key in counts if key not in wanted), key=str))


def bars_differences(connection, trades: str, bars: str, tolerance: float = 1e-9) -> list[str]:
    """How the bars table `bars` differs from the SQL aggregate of the trades table `trades` (both names
    of relations `connection`, a DuckDB connection, knows): one line per minute missing, extra, doubled or
    with other values; empty when they agree."""
    expected = {row[:2]: row for row in connection.sql(AGGREGATE.format(trades=trades)).fetchall()}
    got: dict[tuple, list] = {}
    for row in connection.sql(BARS.format(bars=bars)).fetchall():
        got.setdefault(row[:2], []).append(row)
    problems = []
    for key, want in expected.items():
        have = got.get(key)
        if not have:
            problems.append(f"{key[0]} {key[1]}: no bar, the trades make {want[2:]}")
        elif len(have) > 1:
            problems.append(f"{key[0]} {key[1]}: {len(have)} bars")
        elif have[0][2:8] != want[2:8] or abs(have[0][8] - want[8]) > tolerance * abs(want[8]):
            problems.append(f"{key[0]} {key[1]}: bar {have[0][2:]}, the trades make {want[2:]}")
    problems += [f"{key[0]} {key[1]}: a bar without trades" for key in got if key not in expected]
    return problems


def outside_layout(keys: Iterable[str], partition_columns: Iterable[str], kept_apart_prefix: str = "") -> list[str]:
    """The object keys (relative to their bucket) that are not part of a Delta table at the bucket's root
    or under `kept_apart_prefix` (its `_delta_log/`, Parquet files in its hive partition folders) or a
    dead letter's original (`_dead_letters/`)."""
    partitions = "/".join(f"{re.escape(column)}=[^/]+" for column in partition_columns)
    table = rf"(?:_delta_log/[^/]+|{partitions}/[^/]+\.parquet)"
    prefix = rf"(?:{re.escape(kept_apart_prefix)}/)?" if kept_apart_prefix else ""
    allowed = re.compile(rf"^(?:{prefix}{table}|_dead_letters/.+)$")
    return sorted(key for key in keys if not allowed.match(key))
