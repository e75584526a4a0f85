"""Every LAKE_MAINTENANCE_INTERVAL_SECONDS: compact, vacuum and checkpoint each Delta table of the lake
(`sinks.delta_maintenance`), one table per Bytewax partition, so it runs where the other dataflows run and
spreads over workers like them. The schedule is the polling source's: a failed run (a compaction that lost
a race with a streaming commit, the store down) is retried with backoff, and each table's next run is due
one interval after its last one.

Delivery guarantee: not applicable; it writes no data rows. Run it once per lake (one process): two
maintenance runs on one table are safe (the Delta protocol lets one commit win) but wasted work.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone

import bytewax.operators as op
from bytewax.connectors.stdio import StdOutSink
from bytewax.dataflow import Dataflow
from bytewax.outputs import Sink

from marketstream.calendar import exchange_date
from marketstream.datasets import lake_tables
from marketstream.settings import Settings
from pipelines.runtime import build_or_exit
from pipelines.maintenance import maintain
from sinks.delta_maintenance import MaintenanceReport
from sources.polling import PollingSource, TransientError

log = logging.getLogger(__name__)


class TableMaintenance:
    """A `Poller` over one table: each poll maintains it and reports what changed."""

    def __init__(self, name: str, uri: str, settings: Settings, today: Callable[[datetime], date] = exchange_date):
        self._name = name
        self._uri = uri
        self._settings = settings
        self._today = today
        self._interval = timedelta(seconds=settings.lake_maintenance_interval_seconds)

    def initial_state(self) -> None:
        return None

    def poll(self, state: None, now: datetime) -> tuple[list[MaintenanceReport], datetime]:
        from deltalake import DeltaTable

        settings = self._settings
        options = settings.delta_storage_options()
        try:
            if not DeltaTable.is_deltatable(self._uri, storage_options=options):
                return [], now + self._interval
            report = maintain(settings, self._name, self._uri, today=self._today(now))
        except Exception as exc:  # noqa: BLE001 - lost races and outages: the next try may succeed
            raise TransientError(f"maintaining {self._uri} failed: {str(exc).splitlines()[0][:300]}") from None
        return [report], now + self._interval

    def close(self) -> None:
        pass


def describe(report: MaintenanceReport) -> str:
    return (f"{report.uri}: version {report.version_before} -> {report.version_after}, files {report.files_before} -> "
            f"{report.files_after} ({report.files_compacted} compacted into {report.files_written}, "
            f"{report.files_repaired} written again with full statistics, {report.files_vacuumed} vacuumed) "
            f"in {report.seconds:.1f} s")


def build_maintenance_flow(settings: Settings, tables: dict[str, str], *,
                           now: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
                           today: Callable[[datetime], date] = exchange_date, sink: Sink | None = None) -> Dataflow:
    """`tables`: name -> URI. With `PRODUCE_FOR_SECONDS` the flow ends that long after it starts."""
    flow = Dataflow("lake_maintenance")
    names = {uri: name for name, uri in tables.items()}
    source = PollingSource(list(tables.values()), lambda uri: TableMaintenance(names[uri], uri, settings, today),
                           now=now, run_for=settings.produce_for_seconds)
    reports = op.input("tables", flow, source)
    op.output("log", op.map("describe", reports, describe), sink or StdOutSink())
    return flow


def flow() -> Dataflow:
    def build(settings):
        return build_maintenance_flow(settings, lake_tables(settings.stock_synthetic_prefix, settings.bars_bucket))

    return build_or_exit(build, ("s3",))
