"""The bars table's writer on the real object store: parts fold in as `Bar.merge` folds them, once each,
whatever is replayed and by whichever writer; a correction rewrites only its ticker's partition of that date."""

import random
import threading
import time

import pytest
from deltalake import DeltaTable

from marketstream.bars import MINUTE_US, Bar, bar_rows
from sinks.bars_table import BarsSink
from sinks.object_store import ObjectStore
from tests.conftest import make_settings
from tests.dataflows.test_bars import merged
from tests.integration.private_servers import PrivateMinio

pytestmark = pytest.mark.integration

START = 1_795_530_600_000_000  # 2026-11-24 14:30 UTC
NEXT_DAY = START + 24 * 60 * MINUTE_US


def parts_of_a_tape(seed: int, days=(START,)) -> list[tuple[str, Bar]]:
    """Parts as the bars flow emits them: per ticker and minute, consecutive runs of trades in offset order."""
    rnd = random.Random(seed)
    parts, offset = [], 0
    for day in days:
        for ticker in ("AAPL", "MSFT", "KO"):
            for minute in range(3):
                bar = None
                for _ in range(rnd.randint(1, 12)):
                    trade = Bar.of_trade(day + minute * MINUTE_US + rnd.randrange(MINUTE_US), offset, f"t{offset}",
                                         round(rnd.uniform(90, 110), 2), float(rnd.randint(1, 100)))
                    offset += 1
                    bar = trade if bar is None else bar.merge(trade)
                    if rnd.random() < 0.3:  # the part ends here: the rest are corrections
                        parts.append((ticker, bar))
                        bar = None
                if bar is not None:
                    parts.append((ticker, bar))
    return parts


class Writer:
    """A bars sink's one writer, as one run of bars_consume has it."""

    def __init__(self, settings, bucket: str):
        self.sink = BarsSink(bucket, settings.delta_storage_options(),
                             lambda: ObjectStore(settings.s3_storage_options(), retry_max_seconds=1))
        self.sink.list_parts()
        self.part = self.sink.build_part("bars", "bars", None)

    def write(self, *batches: list) -> None:
        for batch in batches:
            self.part.write_batch([("", bar_rows(batch))])
        self.part.close()


@pytest.fixture
def bars_table(stack, settings, unique):
    bucket = f"bars-table-{unique}"
    return settings, bucket, lambda: DeltaTable(f"s3://{bucket}", storage_options=settings.delta_storage_options())


def stored(table: DeltaTable) -> dict:
    return {(r["ticker"], int(r["minute"].timestamp()) * 1_000_000): r for r in table.to_pyarrow_table().to_pylist()}


def assert_bars_of(rows: dict, parts) -> None:
    bars = merged(parts)
    assert rows.keys() == bars.keys()
    for slot, bar in bars.items():
        row = rows[slot]
        assert (row["open"], row["high"], row["low"], row["close"], row["volume"], row["trades"]) == \
            (bar.open, bar.high, bar.low, bar.close, bar.volume, bar.trades)
        assert (row["first_offset"], row["last_offset"]) == (bar.first_offset, bar.last_offset)
        assert row["vwap"] == pytest.approx(bar.vwap, rel=1e-12)


def test_parts_fold_into_what_bar_merge_gives_and_replays_change_nothing(bars_table):
    settings, bucket, table = bars_table
    parts = parts_of_a_tape(5, days=(START, NEXT_DAY))
    half = len(parts) // 2
    # the first half, then a replay of it with the rest: minutes added, minutes corrected, in both dates
    Writer(settings, bucket).write(parts[:half], parts)
    rows = stored(table())
    assert_bars_of(rows, parts)
    versions = table().version()
    Writer(settings, bucket).write(parts, parts[half:])  # a restarted writer replays it all
    assert table().version() == versions  # nothing to commit
    assert stored(table()) == rows


def test_a_correction_rewrites_its_partition_of_that_date_as_one_file_and_nothing_else(bars_table):
    settings, bucket, table = bars_table
    minutes = {ticker: [(ticker, Bar.of_trade(START + m * MINUTE_US, 10 * i + m, "x", 1.0, 1.0)) for m in range(3)]
               for i, ticker in enumerate(("AAPL", "MSFT"))}
    writer = Writer(settings, bucket)
    writer.part.write_batch([("", bar_rows([*minutes["AAPL"][:2], *minutes["MSFT"]]))])
    writer.part.write_batch([("", bar_rows(minutes["AAPL"][2:]))])
    writer.part.snapshot()
    before = set(table().file_uris())
    assert len([uri for uri in before if "ticker=AAPL" in uri]) == 2
    late = ("AAPL", Bar.of_trade(START + MINUTE_US + 7, 9, "y", 2.0, 1.0))
    new_minute = ("AAPL", Bar.of_trade(START + 5 * MINUTE_US, 8, "z", 3.0, 1.0))
    writer.write([late, new_minute])  # one commit
    after = set(table().file_uris())
    assert before - after == {uri for uri in before if "ticker=AAPL" in uri}
    assert len(after - before) == 1 and "ticker=AAPL" in (after - before).pop()
    assert_bars_of(stored(table()), [*minutes["AAPL"], *minutes["MSFT"], late, new_minute])


@pytest.mark.parametrize("down", ["when a restarted writer starts", "in the middle of a run"])
def test_a_writer_waits_out_a_store_that_is_down_and_loses_nothing(stack, tmp_path, down):
    minio = PrivateMinio(tmp_path / "data")
    settings = make_settings(**minio.settings)
    bucket = "bars-outage"
    parts = parts_of_a_tape(11, days=(START, NEXT_DAY))
    first_day = [part for part in parts if part[1].minute_us < NEXT_DAY]
    minio.start()
    try:
        writer = Writer(settings, bucket)
        writer.part.write_batch([("", bar_rows(first_day[: len(first_day) // 2]))])
        writer.part.snapshot()
        minio.stop()
        done = threading.Event()

        def write_the_rest() -> None:  # replays, corrections of stored minutes, and the next day's minutes
            (Writer(settings, bucket) if down.startswith("when") else writer).write(parts)
            done.set()

        threading.Thread(target=write_the_rest, daemon=True).start()
        time.sleep(3)
        assert not done.is_set()
        minio.start()
        assert done.wait(120), "the writer did not finish after MinIO came back"
        assert_bars_of(stored(DeltaTable(f"s3://{bucket}", storage_options=settings.delta_storage_options())), parts)
    finally:
        minio.stop()
