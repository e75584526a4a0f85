"""Merging rows from outside Kafka (a historical backfill) into a Delta table of the lake.

`merge_new_rows` inserts the rows whose key (`keys`, e.g. ticker, date and trade id) the table does not
hold yet, within one partition (`partition`), and records `done_app_id` in the same commit (a Delta
transaction id, version 1): one atomic commit holds the rows and the mark that the unit of work is done.

Delivery guarantee: exactly-once per key. A row already in the table, whether a live consumer or an
earlier backfill stored it, is not inserted again, so a backfill run twice, or resumed after a crash
(nothing of an unfinished unit was committed), leaves the same rows. Concurrent commits (a consumer
streaming into other partitions, compaction) make the merge lose a race at worst: it is tried again on
the newer table, which is safe because the merge inserts only what is missing.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import CommitProperties, DeltaTable, Transaction

from sinks.delta_commits import open_or_create, racing


def _literal(value: object) -> str:
    text = value.isoformat() if hasattr(value, "isoformat") else str(value)
    return "'" + text.replace("'", "''") + "'"


def is_done(table: DeltaTable, done_app_id: str) -> bool:
    return table.transaction_version(done_app_id) is not None


def merge_new_rows(uri: str, storage_options: dict[str, str], schema: pa.Schema, partition_by: list[str],
                   rows: pa.Table, *, keys: list[str], partition: dict[str, object], done_app_id: str | None,
                   sleep: Callable[[float], None] = time.sleep) -> int:
    """Insert the `rows` (all of one `partition`) whose `keys` the table lacks, and mark `done_app_id`;
    returns the rows inserted. Rows repeating a key among themselves are inserted once. `done_app_id` None:
    no mark."""
    rows = rows.select(schema.names).cast(schema)
    if rows.num_rows:
        # one row per key, the first of each: a merge inserts every source row that has no match
        index = pa.array(range(rows.num_rows))
        firsts = rows.append_column("_row", index).group_by(keys, use_threads=False).aggregate([("_row", "min")])
        first_rows = firsts.column("_row_min")
        rows = rows.take(first_rows.take(pc.sort_indices(first_rows)))
    # the partition's own values first, so the merge reads only that partition's files
    predicate = " AND ".join([*(f"t.{name} = {_literal(value)}" for name, value in partition.items()),
                              *(f"t.{key} = s.{key}" for key in keys)])
    properties = CommitProperties(app_transactions=[Transaction(done_app_id, 1)] if done_app_id else None)

    def merge() -> dict:
        return (open_or_create(uri, storage_options, schema, partition_by)
                .merge(rows, predicate=predicate, source_alias="s", target_alias="t", commit_properties=properties)
                .when_not_matched_insert_all().execute())

    inserted = int(racing(f"{uri}: merging {partition}", merge, sleep=sleep).get("num_target_rows_inserted", 0))
    if not inserted:
        # nothing new: no commit was made, so the mark is committed on its own
        table = DeltaTable(uri, storage_options=storage_options)
        if done_app_id and not is_done(table, done_app_id):
            table.create_write_transaction([], mode="append", schema=schema, partition_by=partition_by,
                                           commit_properties=properties)
    return inserted
