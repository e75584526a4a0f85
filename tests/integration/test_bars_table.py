"""The bars table's writer on the real object store: trades fold in as `Bar.merge` folds them, once each,
whatever is replayed and by whichever writer; a correction rewrites only its ticker's partition of that date."""

import random
import threading
import time
from datetime import datetime, timezone

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from marketstream import schemas
import pyarrow.compute  # noqa: F401 - pa.compute

from marketstream.bars import LEGACY_INCARNATION, MINUTE_US, Bar, trade_parts
from marketstream.calendar import exchange_date
from marketstream.lake import MAINTENANCE_COMMIT, lake_filesystem
from sinks.bars_table import COMPACT_AT_FILES, BarsSink, BarsWriter
from sinks.object_store import ObjectStore
from tests.conftest import make_settings
from tests.dataflows.test_bars import merged
from tests.integration.private_servers import PrivateMinio

pytestmark = pytest.mark.integration

START = 1_795_530_600_000_000  # 2026-11-24 14:30 UTC
NEXT_DAY = START + 24 * 60 * MINUTE_US
INCARNATION = "topic-id-1"
Trade = tuple[str, int, int, float, float]
"""(ticker, event time in µs, Kafka offset, price, size), all of Kafka partition 0."""


def tape(seed: int, days=(START,), tickers=("AAPL", "MSFT", "KO"), minutes: int = 3) -> list[Trade]:
    """Trades in offset order, a few per ticker and minute, their times shuffled within the minute."""
    rnd = random.Random(seed)
    trades = []
    for day in days:
        for ticker in tickers:
            for minute in range(minutes):
                for _ in range(rnd.randint(1, 12)):
                    trades.append((ticker, day + minute * MINUTE_US + rnd.randrange(MINUTE_US), len(trades),
                                   round(rnd.uniform(90, 110), 2), float(rnd.randint(1, 100))))
    return trades


def table_of(trades: list[Trade], partition: int = 0) -> pa.Table:
    def moment(us: int) -> datetime:
        return datetime.fromtimestamp(us / 1_000_000, timezone.utc)

    return pa.table({"ticker": [t[0] for t in trades],
                     "date": pa.array([exchange_date(moment(t[1])) for t in trades], pa.date32()),
                     "timestamp": pa.array([t[1] for t in trades], pa.timestamp("us", tz="UTC")),
                     "kafka_partition": pa.array([partition] * len(trades), pa.int32()),
                     "kafka_offset": pa.array([t[2] for t in trades], pa.int64()),
                     "price": [t[3] for t in trades], "size": [t[4] for t in trades]})


def parts(trades: list[Trade], incarnation: str = INCARNATION) -> pa.Table:
    """Bar parts of `trades` (consecutive ones), as the bars flow makes them."""
    return trade_parts(table_of(trades), incarnation)


class Writer:
    """A bars sink's one writer, as one run of bars_consume has it; `topic`: every trade, which it reads again
    where another writer holds part of a part."""

    def __init__(self, settings, bucket: str, incarnation: str = INCARNATION, topic: list[Trade] = ()):
        everything = table_of(list(topic))

        def reread(folder, incarnation_, partition, first, last):
            offsets = everything.column("kafka_offset")
            return everything.filter(pa.compute.and_(pa.compute.greater_equal(offsets, first),
                                                     pa.compute.less_equal(offsets, last)))

        self.incarnation = incarnation
        self.sink = BarsSink(bucket, settings.delta_storage_options(),
                             lambda: ObjectStore(settings.s3_storage_options(), retry_max_seconds=1), lambda: incarnation,
                             reread=reread)
        self.sink.list_parts()
        self.part = self.sink.build_part("bars", "bars", None)

    def write(self, *batches: list[Trade]) -> None:
        for batch in batches:
            self.part.write_batch([("", parts(batch, self.incarnation))])
        self.part.close()


@pytest.fixture
def bars_table(stack, settings, unique):
    bucket = f"bars-table-{unique}"
    return settings, bucket, lambda: DeltaTable(f"s3://{bucket}", storage_options=settings.delta_storage_options())


def stored(table: DeltaTable) -> dict:
    return {(r["ticker"], int(r["minute"].timestamp()) * 1_000_000): r for r in table.to_pyarrow_table().to_pylist()}


def assert_bars_of(rows: dict, trades: list[Trade]) -> None:
    bars = merged([(ticker, Bar.of_trade(at, offset, "", price, size)) for ticker, at, offset, price, size in trades])
    assert rows.keys() == bars.keys()
    for slot, bar in bars.items():
        row = rows[slot]
        assert (row["open"], row["high"], row["low"], row["close"], row["volume"], row["trades"]) == \
            (bar.open, bar.high, bar.low, bar.close, bar.volume, bar.trades)
        assert (row["first_offset"], row["last_offset"]) == (bar.first_offset, bar.last_offset)
        assert row["vwap"] == pytest.approx(bar.vwap, rel=1e-12)


def test_trades_fold_into_what_bar_merge_gives_and_replays_change_nothing(bars_table):
    settings, bucket, table = bars_table
    trades = tape(5, days=(START, NEXT_DAY))
    half = len(trades) // 2
    # the first half, then a replay of it with the rest: minutes added, minutes corrected, in both dates
    Writer(settings, bucket, topic=trades).write(trades[:half], trades)
    rows = stored(table())
    assert_bars_of(rows, trades)
    assert all(row["held_through"] for row in rows.values())
    versions = table().version()
    Writer(settings, bucket, topic=trades).write(trades, trades[half:])  # a restarted writer replays it all
    assert table().version() == versions  # nothing to commit
    assert stored(table()) == rows


def test_only_the_held_offsets_topic_ids_and_partitions_are_dictionary_encoded(bars_table):
    """A bar's numbers are nearly all distinct: their dictionaries made the files larger and slower to write."""
    settings, bucket, table = bars_table
    trades = tape(7)
    Writer(settings, bucket, topic=trades).write(trades)
    fs = lake_filesystem(settings)
    paths = table().file_uris()
    assert len(paths) == 3  # a file per ticker
    for uri in paths:
        with fs.open(uri.removeprefix("s3://"), "rb") as handle:
            group = pq.ParquetFile(handle).metadata.row_group(0)
        encodings = {group.column(i).path_in_schema: group.column(i).encodings for i in range(group.num_columns)}
        assert {path for path, used in encodings.items() if "RLE_DICTIONARY" in used} == {
            "held_through.list.element.incarnation", "held_through.list.element.kafka_partition"}
        assert len(encodings) == len(schemas.BARS) + 2  # the struct's three fields


def test_a_correction_rewrites_its_partition_of_that_date_as_one_file_and_nothing_else(bars_table):
    settings, bucket, table = bars_table
    aapl = [("AAPL", START + m * MINUTE_US, m, 1.0, 1.0) for m in range(3)]
    msft = [("MSFT", START + m * MINUTE_US, 10 + m, 1.0, 1.0) for m in range(3)]
    writer = Writer(settings, bucket)
    writer.part.write_batch([("", parts([*aapl[:2], *msft]))])
    writer.part.write_batch([("", parts(aapl[2:]))])
    writer.part.snapshot()
    before = set(table().file_uris())
    assert len([uri for uri in before if "ticker=AAPL" in uri]) == 2
    late = ("AAPL", START + MINUTE_US + 7, 19, 2.0, 1.0)
    new_minute = ("AAPL", START + 5 * MINUTE_US, 18, 3.0, 1.0)
    writer.write([new_minute, late])  # one commit
    after = set(table().file_uris())
    assert before - after == {uri for uri in before if "ticker=AAPL" in uri}
    assert len(after - before) == 1 and "ticker=AAPL" in (after - before).pop()
    assert_bars_of(stored(table()), [*aapl, *msft, late, new_minute])


def test_a_tickers_partition_is_kept_to_a_few_files(bars_table):
    settings, bucket, table = bars_table
    writer = Writer(settings, bucket)
    trades = [("AAPL", START + m * MINUTE_US, m, 100.0 + m, 1.0) for m in range(2 * COMPACT_AT_FILES)]
    for trade in trades:  # a minute a batch: a file each, until the partition is written again as one
        writer.part.write_batch([("", parts([trade]))])
    writer.part.close()
    files = [uri for uri in table().file_uris() if "ticker=AAPL" in uri]
    assert len(files) < COMPACT_AT_FILES
    assert_bars_of(stored(table()), trades)


def test_independent_writers_of_one_table_fold_each_trade_once(bars_table):
    """Two deployments read the same trades, each cutting them into its own batches, and commit at the same
    time; one of them is stopped half-way."""
    settings, bucket, table = bars_table
    trades = tape(23, tickers=("AAPL", "MSFT", "KO", "T", "XOM"), minutes=8)
    cuts = {"a": [0, 37, 80, 150, len(trades)], "b": [0, 11, 60, 61, 120, 200, len(trades)]}
    assert len(trades) > 200
    errors = []

    def deployment(name: str, stop_after: int | None) -> None:
        try:
            writer, bounds = Writer(settings, bucket, topic=trades), cuts[name]
            for n, (start, end) in enumerate(zip(bounds, bounds[1:])):
                if n == stop_after:
                    return
                writer.part.write_batch([("", parts(trades[start:end]))])
                writer.part.snapshot()
        except Exception as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=deployment, args=("a", 2)), threading.Thread(target=deployment, args=("b", None))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(180)
    assert not errors
    assert_bars_of(stored(table()), trades)


def test_trades_of_a_recreated_topic_fold_into_the_minutes_they_belong_to(bars_table):
    settings, bucket, table = bars_table
    old = tape(3)
    Writer(settings, bucket, "incarnation-1").write(old)
    new = [(ticker, at + 1, offset, price, size) for ticker, at, offset, price, size in tape(4)]  # offsets from 0 again
    Writer(settings, bucket, "incarnation-2", topic=new).write(new, new[:5])
    rows = stored(table())
    both = merged([(t, Bar.of_trade(at, off + (10_000 if n else 0), "", p, s))
                   for n, part in enumerate((old, new)) for t, at, off, p, s in part])
    assert rows.keys() == both.keys()
    for slot, bar in both.items():
        assert (rows[slot]["trades"], rows[slot]["volume"]) == (bar.trades, bar.volume)
    assert {entry["incarnation"] for row in rows.values() for entry in row["held_through"]} == {"incarnation-1", "incarnation-2"}


def test_a_table_written_before_held_offsets_existed_is_upgraded_and_its_rows_hold_what_they_did(bars_table):
    from deltalake import write_deltalake

    settings, bucket, table = bars_table
    options = settings.delta_storage_options()
    trades = tape(9)
    Writer(settings, f"{bucket}-scratch").write(trades[:40])
    # the rows as the previous version wrote them, in a table without the held_through column
    legacy = DeltaTable(f"s3://{bucket}-scratch", storage_options=options).to_pyarrow_table().drop_columns(["held_through"])
    ObjectStore(settings.s3_storage_options()).ensure_bucket(bucket)
    write_deltalake(f"s3://{bucket}", legacy, partition_by=["ticker", "date"], storage_options=options)
    assert "held_through" not in table().to_pyarrow_table().column_names
    Writer(settings, bucket, topic=trades).write(trades)  # upgrades the table; replays the 40 it holds, folds the rest
    assert table().metadata().configuration.get(LEGACY_INCARNATION) == INCARNATION
    assert_bars_of(stored(table()), trades)
    # a recreated topic: the rows written before the upgrade do not hold its trades
    Writer(settings, bucket, "incarnation-2").write([(t, at + 1, off, p, s) for t, at, off, p, s in trades[:10]])
    assert sum(row["trades"] for row in stored(table()).values()) == len(trades) + 10


def test_lake_maintenance_compacts_a_bars_partition_by_the_writers_own_commit(bars_table):
    settings, bucket, table = bars_table
    writer = Writer(settings, bucket)
    trades = [("AAPL", START + m * MINUTE_US, m, 100.0, 1.0) for m in range(5)]
    for trade in trades:
        writer.part.write_batch([("", parts([trade]))])
    writer.part.close()
    assert len(table().file_uris()) == 5
    rewriter = BarsWriter(f"s3://{bucket}", bucket, "", settings.delta_storage_options(),
                          ObjectStore(settings.s3_storage_options()), INCARNATION)
    assert rewriter.rewrite(exchange_date(datetime.fromtimestamp(START / 1e6, timezone.utc)), ["AAPL"]) == 5
    assert len(table().file_uris()) == 1
    assert table().history(1)[0][MAINTENANCE_COMMIT] == "rewrite"  # a maintenance run for readers of the log
    assert_bars_of(stored(table()), trades)


@pytest.mark.parametrize("down", ["when a restarted writer starts", "in the middle of a run"])
def test_a_writer_waits_out_a_store_that_is_down_and_loses_nothing(stack, tmp_path, down):
    minio = PrivateMinio(tmp_path / "data")
    settings = make_settings(**minio.settings)
    bucket = "bars-outage"
    trades = tape(11, days=(START, NEXT_DAY))
    first_day = [trade for trade in trades if trade[1] < NEXT_DAY]
    minio.start()
    try:
        writer = Writer(settings, bucket, topic=trades)
        writer.part.write_batch([("", parts(first_day[: len(first_day) // 2]))])
        writer.part.snapshot()
        minio.stop()
        done = threading.Event()

        def write_the_rest() -> None:  # replays, corrections of stored minutes, and the next day's minutes
            (Writer(settings, bucket, topic=trades) if down.startswith("when") else writer).write(trades)
            done.set()

        threading.Thread(target=write_the_rest, daemon=True).start()
        time.sleep(3)
        assert not done.is_set()
        minio.start()
        assert done.wait(120), "the writer did not finish after MinIO came back"
        assert_bars_of(stored(DeltaTable(f"s3://{bucket}", storage_options=settings.delta_storage_options())), trades)
    finally:
        minio.stop()


def test_maintenance_writes_bars_files_without_full_statistics_again_through_the_bars_writer(bars_table, monkeypatch):
    import json

    import sinks.bars_table
    from pipelines.maintenance import maintain
    from sinks.delta_maintenance import partitions_lacking_stats

    settings, bucket, table = bars_table
    monkeypatch.setattr(sinks.bars_table, "files_stats",  # as the writer did before 2026-12: the minute only
                        lambda tables, columns: [json.dumps({"numRecords": rows.num_rows,
                                                             "minValues": {"minute": "2026-11-24T14:30:00Z"},
                                                             "maxValues": {"minute": "2026-11-24T14:32:00Z"}})
                                                 for rows in tables])
    trades = tape(31)
    Writer(settings, bucket).write(trades)
    monkeypatch.undo()
    lacking, files = partitions_lacking_stats(table())
    assert len(lacking) == 3 and files == 3
    day = exchange_date(datetime.fromtimestamp(START / 1e6, timezone.utc))
    report = maintain(make_settings(), "bars", f"s3://{bucket}", today=day, vacuum=False)
    assert report.files_repaired == 3
    assert partitions_lacking_stats(table()) == ([], 0)
    assert_bars_of(stored(table()), trades)
    filtered = table().to_pyarrow_dataset().to_table(filter=pa.compute.field("volume") > 0)
    assert filtered.num_rows == len(stored(table()))


def test_what_a_date_holds_is_read_only_where_the_table_has_files_of_it(bars_table):
    from sinks.bars_table import stored_held

    settings, bucket, table = bars_table
    options = settings.delta_storage_options()
    first_day = exchange_date(datetime.fromtimestamp(START / 1e6, timezone.utc))
    second_day = exchange_date(datetime.fromtimestamp(NEXT_DAY / 1e6, timezone.utc))
    ObjectStore(settings.s3_storage_options()).ensure_bucket(bucket)
    assert stored_held(f"s3://{bucket}", options, first_day).num_rows == 0  # no table yet
    trades = tape(11, days=(START,))
    Writer(settings, bucket, topic=trades).write(trades)
    held = stored_held(f"s3://{bucket}", options, first_day)
    assert held.num_rows > 0 and set(held.column("ticker").to_pylist()) == {"AAPL", "MSFT", "KO"}
    assert pa.compute.max(held.column("offset")).as_py() == len(trades) - 1
    assert stored_held(f"s3://{bucket}", options, second_day).num_rows == 0  # a date without files
    assert stored_held(f"s3://{bucket}", options, second_day).schema == held.schema
