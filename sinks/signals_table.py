"""The signals tables (`marketstream.signals`): ticker-days of signals rows replaced whole, one commit per date.

`SignalsWriter.replace(day, tickers, rows, computed_from)` writes `rows` (every signals row of those tickers on
`day`, computed from the source tables at the versions `computed_from`) as one Parquet file per ticker
(`sinks.bars_table.put_ticker_day_files`, the bars' own file writer) and commits them replacing those tickers'
partitions of `day`, in one atomic commit (`sinks.delta_commits.DeltaCommitter`): a reader sees a ticker-day
as it was or as it is now, never half. The commit that ends a round (`last=True`, or `record_sources` for a
round that changed no ticker-day) also records which versions of the source tables the table now reflects
(`marketstream:signals:source:<name>`, version = the source table's version), so a writer that restarts —
after a crash anywhere, a kill -9 included — computes again every ticker-day changed since the last round
that ended, and a round cut short is done again whole.

Several writers (a second deployment started by mistake, a slow one, one killed mid-round): every commit also
sets `marketstream:signals:computed:<name>` to the source versions its rows were computed from, so any two
commits prepared on the same table version share transaction ids and delta-rs lets only the first land; the
other is prepared again on the table as it now is. There, a commit whose source versions are older than those
another commit's rows were computed from (or than the recorded ones) is not made: `SupersededRound` ends its
round, whose rows could replace newer ones. So the versions computed from only grow, rows never go back to
older sources, and a round records its versions only when no newer rows landed during it: whenever the table
records source versions, every ticker-day holds rows computed from those versions or newer ones, and a
ticker-day whose sources did not change since them holds exactly their SQL join. A round from the recorded
versions (by any writer) therefore leaves every row equal to the join (`tests/integration/test_signals.py`).

Delivery guarantee: a signals row is a function of the source tables' rows (`marketstream.signals.compute`),
and a ticker-day is replaced whole, so doing a round again (a restart, a lost answer, a superseded round) gives
the same rows, never a row twice, whatever number of writers.
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


def source_app_id(name: str) -> str:
    return f"marketstream:signals:source:{name}"


def computed_app_id(name: str) -> str:
    return f"marketstream:signals:computed:{name}"


class SupersededRound(Exception):
    """Another writer committed rows computed from newer source versions than this round's: its commits would
    replace them with older ones; the round is given up (the next one starts from the table as it is)."""


class SignalsWriter:
    """One signals table as this process writes it (created if missing)."""

    def __init__(self, uri: str, bucket: str, folder: str, storage_options: dict[str, str], store: ObjectStore,
                 compression: str = "zstd"):
        self.uri = uri
        self._bucket, self._folder, self._store, self._compression = bucket, folder, store, compression
        store.ensure_bucket(bucket)
        self._committer = DeltaCommitter(uri, storage_options, TABLE_SCHEMA, PARTITION_BY)

    def source_versions(self, names: list[str]) -> dict[str, int]:
        """The version of each source table the signals reflect (-1: none yet), as of now: another writer's
        rounds count too."""
        self._committer.refresh()
        return {name: self._committer.committed_version(source_app_id(name)) for name in names}

    def replace(self, day: date, tickers: list[str], rows: pa.Table, computed_from: dict[str, int], *,
                last: bool = False) -> None:
        """`tickers`' partitions of `day` replaced by `rows` (their signals rows, computed from the source
        versions `computed_from`); with `last`, the commit also records those versions (it ends a round).
        Raises `SupersededRound` when newer rows landed since the round read its sources."""
        rows = rows.select(TABLE_SCHEMA.names).cast(TABLE_SCHEMA)
        files = [(ticker, day_of, rows.slice(start, count))
                 for (ticker, day_of), start, count in key_runs(rows, PARTITION_BY)]

        def prepare(view: TableView) -> Commit:
            versions = _versions_unless_superseded(view, computed_from, last)
            adds = put_ticker_day_files(self._store, self._bucket, self._folder, files, self._committer.stats_columns,
                                        self._compression, "signals")
            return Commit(adds, versions, [("date", "=", day.isoformat()), ("ticker", "in", sorted(tickers))])

        self._committer.commit(prepare)

    def record_sources(self, sources: dict[str, int]) -> None:
        """A round that changed no ticker-day: only the source versions recorded (`SupersededRound` as in
        `replace`)."""
        self._committer.commit(lambda view: Commit([], _versions_unless_superseded(view, sources, True)))


def _versions_unless_superseded(view: TableView, computed_from: dict[str, int], record: bool) -> dict[str, int]:
    """The transaction versions of a commit of rows computed from `computed_from`, or `SupersededRound` when
    the table holds rows computed from newer versions of a source, or records newer ones."""
    newer = {name: newest for name, version in computed_from.items()
             if (newest := max(view.version(computed_app_id(name)), view.version(source_app_id(name)))) > version}
    if newer:
        raise SupersededRound(", ".join(f"{name} v{version} already" for name, version in newer.items()))
    versions = {computed_app_id(name): version for name, version in computed_from.items()}
    if record:
        versions.update({source_app_id(name): version for name, version in computed_from.items()})
    return versions
