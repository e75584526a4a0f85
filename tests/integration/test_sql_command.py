"""`marketstream sql` as a user runs it (`main([...])`, in process) over Delta tables on a MinIO of this
module's own: time travel per table and as of a time, the store down, every output format read back,
DuckDB locked down, the row limit of the table format."""

from __future__ import annotations

import csv
import io
import json
import os
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable, write_deltalake

from marketstream import schemas
from marketstream.lake import lake_filesystem
from marketstream.settings import get_settings
from pipelines.cli import main
from tests.integration.private_lake import commands_on, started_minio
from tests.integration.private_servers import free_port

pytestmark = pytest.mark.integration

STOCK = "s3://stock-data"
SYNTHETIC = "s3://stock-data/_synthetic"
TYPED = "s3://macro-data"  # the `macro` view: a table of every column type the lake may hold
START = datetime(2026, 11, 24, 14, 30, tzinfo=timezone.utc)
STOCK_COMMITS, SYNTHETIC_COMMITS, ROWS_PER_COMMIT = 6, 2, 300


def trades(first: int, count: int) -> pa.Table:
    schema = pa.unify_schemas([schemas.STOCK_TRADES_PARTITIONING, schemas.STOCK_TRADES])
    return pa.Table.from_pylist([
        {"ticker": ["AAPL", "MSFT", "BRK.B"][n % 3], "date": date(2026, 11, 24), "trade_id": str(n),
         "timestamp": START + timedelta(microseconds=n * 1_000_003), "price": 100 + n / 7, "size": float(n % 500 + 1),
         "exchange": "V", "conditions": ["@", "I"] if n % 2 else None, "tape": "C", "source": "alpaca",
         "kafka_partition": n % 6, "kafka_offset": n} for n in range(first, first + count)], schema=schema)


TYPED_ROWS = pa.table({
    "keyword": pa.array(["stock market", "a/b", "100%"]),
    "flag": pa.array([True, None, False]),
    "tiny": pa.array([1, None, -128], pa.int8()), "small": pa.array([1, 2, None], pa.int16()),
    "whole": pa.array([1, 2, 3], pa.int32()), "big": pa.array([2**62, None, -(2**63)], pa.int64()),
    "single": pa.array([1.5, None, -0.0], pa.float32()), "double": pa.array([0.1, float("inf"), None], pa.float64()),
    "money": pa.array([Decimal("12345.6789"), None, Decimal("-0.0001")], pa.decimal128(18, 4)),
    "text": pa.array(["é\u2028\x1b[31m", None, ""]), "raw": pa.array([b"\x00\xff", None, b""], pa.binary()),
    "day": pa.array([date(2026, 11, 24), None, date(1990, 1, 1)], pa.date32()),
    "at": pa.array([START, None, START + timedelta(microseconds=1)], pa.timestamp("us", tz="UTC")),
    "local": pa.array([datetime(2026, 11, 24, 9, 30), None, datetime(2000, 2, 29)], pa.timestamp("us")),
    "codes": pa.array([["@", None], None, []], pa.list_(pa.string())),
    "pair": pa.array([{"x": 1, "y": "z"}, None, {"x": None, "y": None}], pa.struct([("x", pa.int64()), ("y", pa.string())])),
    "tags": pa.array([[("k", 1)], None, []], pa.map_(pa.string(), pa.int64())),
})


@pytest.fixture(scope="module")
def minio(tmp_path_factory):
    server, settings = started_minio(tmp_path_factory.mktemp("minio"), ["stock-data", "macro-data"])
    options = settings.delta_storage_options()
    for commit in range(STOCK_COMMITS):
        write_deltalake(STOCK, trades(commit * ROWS_PER_COMMIT, ROWS_PER_COMMIT), mode="append",
                        partition_by=["ticker", "date"], storage_options=options)
        if commit < SYNTHETIC_COMMITS:  # interleaved: as of any time, each table has its own version
            write_deltalake(SYNTHETIC, trades(10_000 + commit * 10, 10), mode="append",
                            partition_by=["ticker", "date"], storage_options=options)
    write_deltalake(TYPED, TYPED_ROWS, partition_by=["keyword"], storage_options=options)
    yield server
    server.stop()


@pytest.fixture
def lake(minio, monkeypatch, tmp_path):
    """The settings `main` reads: this module's MinIO; the working folder is the test's."""
    monkeypatch.chdir(tmp_path)
    with commands_on(minio, monkeypatch) as settings:
        yield settings


def sql(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["sql", *args])
    out, err = capsys.readouterr()
    return code, out, err


def one_line(err: str) -> str:
    assert err.count("\n") == 1 and err.startswith("marketstream sql: "), err
    return err


def commit_times(settings, uri: str) -> list[datetime]:
    listing = lake_filesystem(settings).ls(f"{uri.removeprefix('s3://')}/_delta_log", detail=True, refresh=True)
    return [entry["LastModified"] for entry in sorted(listing, key=lambda e: e["name"]) if entry["name"].endswith(".json")]


COUNTS = "SELECT (SELECT count(*) FROM stock) AS stock, (SELECT count(*) FROM stock_synthetic) AS synthetic"


def test_each_table_travels_to_its_own_version_and_the_others_read_their_latest(lake, capsys):
    code, out, _ = sql(capsys, COUNTS, "--format", "json", "--version", "stock=2")
    assert code == 0 and json.loads(out) == {"stock": 3 * ROWS_PER_COMMIT, "synthetic": 20}
    code, out, _ = sql(capsys, COUNTS, "--format", "json", "--version", "stock=4", "--version", "stock_synthetic=0")
    assert code == 0 and json.loads(out) == {"stock": 5 * ROWS_PER_COMMIT, "synthetic": 10}


@pytest.mark.parametrize("pin, says", [
    ("stock_synthetic=5", "--version stock_synthetic=5: stock_synthetic has versions 0..1, the first committed at "),
    ("stock=-1", "--version stock=-1: a version is a whole number from 0; stock has versions 0..5, the first committed at "),
    ("stock=1.5", "--version stock=1.5: a version is a whole number from 0; stock has versions 0..5"),
    ("stock=99999999999999999999999", "--version stock=99999999999999999999999: stock has versions 0..5"),
    ("nope=1", "--version 'nope=1': no table 'nope' (tables: bars, bars_synthetic, bluesky, macro, news, signals, signals_synthetic, stock, "),
    ("news=0", "--version news=0: news has no versions (no Delta table at s3://finnhub-data)"),
])
def test_a_pin_the_table_cannot_honour_is_one_line_saying_what_it_has(lake, capsys, pin, says):
    code, out, err = sql(capsys, COUNTS, "--version", pin)
    assert code == 2 and out == ""
    assert says in one_line(err)


def test_as_of_reads_every_table_at_its_last_version_committed_by_then(lake, capsys):
    stock, synthetic = commit_times(lake, STOCK), commit_times(lake, SYNTHETIC)
    between = synthetic[1] + (stock[2] - synthetic[1]) / 2  # after stock v1 and synthetic v1, before stock v2
    assert stock[1] < between < stock[2]
    code, out, _ = sql(capsys, COUNTS, "--format", "json", "--as-of", between.isoformat())
    assert code == 0 and json.loads(out) == {"stock": 2 * ROWS_PER_COMMIT, "synthetic": 20}
    code, out, _ = sql(capsys, COUNTS, "--format", "json", "--as-of", synthetic[0].isoformat(), "--version", "stock=3")
    assert code == 0 and json.loads(out) == {"stock": 4 * ROWS_PER_COMMIT, "synthetic": 10}  # a pin beats --as-of
    code, _, err = sql(capsys, COUNTS, "--as-of", stock[0].isoformat())  # stock_synthetic's first commit came after
    assert code == 2 and "stock_synthetic has versions 0..1, the first committed at " in one_line(err)


def test_as_of_a_time_before_a_table_existed_is_one_line_naming_it(lake, capsys):
    first = commit_times(lake, STOCK)[0]
    code, out, err = sql(capsys, "SELECT count(*) FROM stock", "--as-of", (first - timedelta(hours=1)).isoformat())
    assert code == 2 and out == ""
    assert f"stock has versions 0..5, the first committed at {first.astimezone(timezone.utc).isoformat()}".replace(
        "+00:00", "Z") in one_line(err)
    code, _, err = sql(capsys, "SELECT count(*) FROM stock", "--as-of", "2026-11-24 15:00")
    assert code == 2 and "give its offset" in one_line(err)


def test_a_table_with_nothing_stored_is_said_to_be_absent_not_an_error_of_the_others(lake, capsys):
    code, _, err = sql(capsys, "SELECT count(*) FROM news")
    assert code == 1 and "news: no Delta table at s3://finnhub-data" in one_line(err)
    code, out, _ = sql(capsys, "SELECT count(*) AS n FROM stock", "--format", "csv")
    assert code == 0 and out.split() == ['"n"', str(STOCK_COMMITS * ROWS_PER_COMMIT)]


def test_with_the_store_down_the_command_says_so_naming_s3_endpoint_url(lake, capsys, monkeypatch):
    monkeypatch.setenv("S3_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    get_settings.cache_clear()
    for args in (["SELECT count(*) FROM stock"], ["SELECT 1"], ["SELECT count(*) FROM stock", "--version", "stock=1"],
                 ["SELECT count(*) FROM stock", "--as-of", "2026-11-24T15:00:00Z"]):
        code, out, err = sql(capsys, *args)
        assert code == 3 and out == ""
        assert "(S3_ENDPOINT_URL)" in one_line(err) and "does not exist" not in err


def test_parquet_output_keeps_every_column_type_and_value(lake, capsys, tmp_path):
    code, out, err = sql(capsys, "SELECT * FROM macro", "--format", "parquet", "--output", str(tmp_path / "macro.parquet"))
    assert code == 0 and out == err == ""
    written = pq.read_table(tmp_path / "macro.parquet")
    stored = DeltaTable(TYPED, storage_options=lake.delta_storage_options()).to_pyarrow_table()
    assert [(f.name, f.type) for f in written.schema] == [(f.name, f.type) for f in stored.schema]
    assert written.sort_by("keyword").to_pylist() == stored.sort_by("keyword").to_pylist()
    code, _, _ = sql(capsys, "SELECT * FROM stock", "--format", "parquet", "--output", str(tmp_path / "stock.parquet"))
    stock = DeltaTable(STOCK, storage_options=lake.delta_storage_options()).to_pyarrow_table()
    written = pq.read_table(tmp_path / "stock.parquet")
    assert code == 0 and written.schema.remove_metadata() == pa.schema([f.with_nullable(True) for f in stock.schema])
    assert written.sort_by("kafka_offset").to_pylist() == stock.sort_by("kafka_offset").to_pylist()


def test_json_and_csv_output_read_back_as_the_stored_rows(lake, capsys, tmp_path):
    stored = DeltaTable(STOCK, storage_options=lake.delta_storage_options()).to_pyarrow_table().sort_by("kafka_offset")
    code, out, _ = sql(capsys, "SELECT * FROM stock ORDER BY kafka_offset", "--format", "json")
    assert code == 0
    read = [json.loads(line) for line in out.splitlines()]
    for line, row in zip(read, stored.to_pylist(), strict=True):
        assert line["timestamp"].endswith("Z") and datetime.fromisoformat(line["timestamp"]) == row["timestamp"]
        assert date.fromisoformat(line["date"]) == row["date"]
        assert {k: v for k, v in line.items() if k not in ("timestamp", "date")} == {
            k: v for k, v in row.items() if k not in ("timestamp", "date")}
    code, _, _ = sql(capsys, "SELECT * FROM stock ORDER BY kafka_offset", "--format", "csv", "--output",
                     str(tmp_path / "stock.csv"))
    rows = list(csv.DictReader(io.StringIO((tmp_path / "stock.csv").read_text())))
    assert code == 0 and len(rows) == stored.num_rows
    for line, row in zip(rows, stored.to_pylist()):
        assert (line["trade_id"], float(line["price"]), datetime.fromisoformat(line["timestamp"])) == (
            row["trade_id"], row["price"], row["timestamp"])
        assert (json.loads(line["conditions"]) if line["conditions"] else None) == row["conditions"]


def test_a_failed_query_leaves_no_output_file_and_an_existing_one_as_it_was(lake, capsys, tmp_path):
    target = tmp_path / "out.csv"
    target.write_text("before")
    code, _, err = sql(capsys, "SELECT error('boom') FROM stock", "--format", "csv", "--output", str(target))
    assert code == 1 and "boom" in one_line(err)
    assert target.read_text() == "before" and os.listdir(tmp_path) == ["out.csv"]
    code, _, err = sql(capsys, "SELECT 1", "--format", "parquet")
    assert code == 2 and "--format parquet writes a file: give it with --output FILE" in one_line(err)
    code, _, err = sql(capsys, "SELECT 1", "--format", "csv", "--output", str(tmp_path / "no" / "out.csv"))
    assert code == 2 and "does not exist" in one_line(err)


@pytest.mark.parametrize("statement", [
    "SELECT * FROM read_csv('/etc/passwd')",
    "COPY (SELECT * FROM stock) TO '{folder}/copied.csv'",
    "ATTACH '{folder}/attached.duckdb'",
    "INSTALL httpfs",
    "SET enable_external_access = true",
])
def test_duckdb_refuses_files_extensions_and_settings_in_one_line(lake, capsys, tmp_path, statement):
    code, out, err = sql(capsys, statement.format(folder=tmp_path))
    assert code == 1 and out == ""
    assert ("Permission Error" in err or "configuration has been locked" in err) and one_line(err)
    assert os.listdir(tmp_path) == []


def test_allow_files_lets_a_query_read_and_write_files(lake, capsys, tmp_path):
    code, _, err = sql(capsys, f"COPY (SELECT trade_id FROM stock) TO '{tmp_path}/copied.csv'", "--allow-files")
    assert code == 0, err
    code, out, _ = sql(capsys, f"SELECT count(*) AS n FROM read_csv('{tmp_path}/copied.csv')", "--allow-files",
                       "--format", "json")
    assert code == 0 and json.loads(out) == {"n": STOCK_COMMITS * ROWS_PER_COMMIT}


def test_the_table_format_shows_a_thousand_rows_and_says_it_cut(lake, capsys):
    total = STOCK_COMMITS * ROWS_PER_COMMIT
    code, out, err = sql(capsys, "SELECT trade_id FROM stock")
    assert code == 0 and len(out.splitlines()) == 1 + 1_000
    assert one_line(err) == ("marketstream sql: showing the first 1,000 rows of more; use --limit N (0 for all) "
                             "or --format csv\n")
    code, out, err = sql(capsys, "SELECT trade_id FROM stock", "--limit", "0")
    assert code == 0 and len(out.splitlines()) == 1 + total and err == ""
    code, out, err = sql(capsys, "SELECT trade_id FROM stock", "--format", "csv")
    assert code == 0 and len(out.splitlines()) == 1 + total and err == ""
    code, out, err = sql(capsys, "SELECT trade_id FROM stock LIMIT 1000")
    assert code == 0 and len(out.splitlines()) == 1 + 1_000 and err == ""  # exactly the limit: nothing cut
    code, out, err = sql(capsys, "SELECT trade_id FROM stock", "--format", "json", "--limit", "7")
    assert code == 0 and len(out.splitlines()) == 7 and "wrote the first 7 rows of more" in one_line(err)


def test_a_memory_limit_is_a_size(lake, capsys):
    code, out, _ = sql(capsys, "SELECT current_setting('memory_limit') AS m", "--memory-limit", "512MiB", "--format", "json")
    assert code == 0 and json.loads(out) == {"m": "512.0 MiB"}
    code, _, err = sql(capsys, "SELECT 1", "--memory-limit=-1GB")
    assert code == 2 and "--memory-limit '-1GB': a size such as 1GB" in one_line(err)
