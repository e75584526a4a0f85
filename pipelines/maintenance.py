"""Maintaining one table of the lake (`sinks.delta_maintenance`), with the rewriter its kind needs: the bars
tables are compacted and repaired by their own writer's commits (`sinks.bars_table.BarsWriter.rewrite`), the
others by delta-rs's optimize. `marketstream maintain` and `dataflows.lake_maintenance` both come here."""

from __future__ import annotations

import logging
from datetime import date

from deltalake import DeltaTable

from marketstream.datasets import BARS_TABLES
from marketstream.settings import Settings
from pipelines.connectors import shared_object_store
from sinks.bars_table import BarsWriter
from sinks.delta_maintenance import MaintenanceReport, maintain_table

log = logging.getLogger(__name__)


def bars_rewriter(settings: Settings, uri: str):
    """`rewrite(partition filter)` for the bars table at `uri`: its writer writes the ticker-day again; None
    for a table not yet upgraded by a bars writer of this version (it has no `held_through` to keep)."""
    options = settings.delta_storage_options()
    names = [field.name for field in DeltaTable(uri, storage_options=options).schema().fields]
    if "held_through" not in names:
        log.info("%s: left as it is until bars_consume of this version has written it once", uri)
        return lambda partition: 0
    bucket, _, folder = uri.removeprefix("s3://").partition("/")
    writer = BarsWriter(uri, bucket, folder, options, shared_object_store(settings)(), incarnation=None,
                        compression=settings.parquet_compression)

    def rewrite(partition: list[tuple[str, str, str]]) -> int:
        values = {name: value for name, _, value in partition}
        return writer.rewrite(date.fromisoformat(values["date"]), [values["ticker"]])

    return rewrite


def maintain(settings: Settings, name: str, uri: str, *, today: date, closed_after_days: int | None = None,
             vacuum: bool = True) -> MaintenanceReport:
    """Maintain the table `name` (a SQL name of `marketstream.datasets.lake_tables`) at `uri`."""
    return maintain_table(uri, settings.delta_storage_options(), today=today,
                          closed_after_days=settings.lake_compact_closed_after_days
                          if closed_after_days is None else closed_after_days,
                          target_file_bytes=settings.lake_target_file_mb * 1024 * 1024,
                          retention_hours=settings.lake_vacuum_retention_hours, vacuum=vacuum,
                          rewrite=bars_rewriter(settings, uri) if name in BARS_TABLES else None)
