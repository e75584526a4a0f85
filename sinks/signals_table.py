"""The signals tables (`marketstream.signals`): ticker-days of signals rows replaced whole, one commit per date.

`SignalsWriter.replace(day, tickers, rows)` writes `rows` (every signals row of those tickers on `day`) as one
Parquet file per ticker (`sinks.bars_table.put_ticker_day_files`, the bars' own file writer) and commits them
replacing those tickers' partitions of `day`, in one atomic commit (`sinks.delta_commits.DeltaCommitter`):
a reader sees a ticker-day as it was or as it is now, never half. Every commit of a date carries its
transaction id (`marketstream:signals:<date>`, its version counting the date's commits), so delta-rs refuses
a commit prepared on a table another writer has changed on that date since, and it is prepared again. The
commit that ends a round also records which versions of the source tables the table now reflects
(`marketstream:signals:source:<name>`, version = the source table's version), so a writer that restarts —
after a crash anywhere, a kill -9 included — computes again every ticker-day changed since the last round
that ended, and a round cut short is done again whole.

Delivery guarantee: a signals row is a function of the source tables' rows (`marketstream.signals.compute`),
and a ticker-day is replaced whole, so doing a round again (a restart, a lost answer) gives the same rows,
never a row twice. Not shown: several independent writers of one signals table (run one deployment).
"""

from __future__ import annotations

from datetime import date

import pyarrow as pa

from marketstream.runs import key_runs
from marketstream.signals import TABLE_SCHEMA
from sinks.bars_table import put_ticker_day_files
from sinks.delta_commits import Commit, DeltaCommitter, TableView
from sinks.object_store import ObjectStore

PARTITION_BY = ["ticker", "date"]


def date_app_id(day: date) -> str:
    return f"marketstream:signals:{day.isoformat()}"


def source_app_id(name: str) -> str:
    return f"marketstream:signals:source:{name}"


class SignalsWriter:
    """One signals table as this process writes it (created if missing)."""

    def __init__(self, uri: str, bucket: str, folder: str, storage_options: dict[str, str], store: ObjectStore,
                 compression: str = "zstd"):
        self.uri = uri
        self._bucket, self._folder, self._store, self._compression = bucket, folder, store, compression
        store.ensure_bucket(bucket)
        self._committer = DeltaCommitter(uri, storage_options, TABLE_SCHEMA, PARTITION_BY)

    def source_versions(self, names: list[str]) -> dict[str, int]:
        """The version of each source table the signals reflect (-1: none yet)."""
        return {name: self._committer.committed_version(source_app_id(name)) for name in names}

    def replace(self, day: date, tickers: list[str], rows: pa.Table, sources: dict[str, int] | None = None) -> None:
        """`tickers`' partitions of `day` replaced by `rows` (their signals rows); with `sources`, the commit
        also records those source versions (the last commit of a round)."""
        rows = rows.select(TABLE_SCHEMA.names).cast(TABLE_SCHEMA)
        files = [(ticker, day_of, rows.slice(start, count))
                 for (ticker, day_of), start, count in key_runs(rows, PARTITION_BY)]

        def prepare(view: TableView) -> Commit:
            adds = put_ticker_day_files(self._store, self._bucket, self._folder, files, self._committer.stats_columns,
                                        self._compression, "signals")
            versions = {date_app_id(day): view.version(date_app_id(day)) + 1}
            versions.update({source_app_id(name): version for name, version in (sources or {}).items()})
            return Commit(adds, versions, [("date", "=", day.isoformat()), ("ticker", "in", sorted(tickers))])

        self._committer.commit(prepare)

    def record_sources(self, sources: dict[str, int]) -> None:
        """A round that changed no ticker-day: only the source versions recorded."""
        self._committer.commit(lambda view: Commit([], {source_app_id(name): version for name, version in sources.items()}))
