"""The SQL engine: which lake tables a query names, DuckDB locked down over Arrow datasets, the result
streamed in batches and cut at the limit. No server: the tables are in-memory Arrow datasets."""

import tempfile
from datetime import datetime, timezone

import pyarrow as pa
import pyarrow.dataset as ds
import pytest
from hypothesis import given, settings, strategies as st

from pipelines.query import BATCH_ROWS, BadRequest, QueryFailed, connect, run, tables_named, utc_schema

TABLES = ["stock", "stock_synthetic", "macro", "news", "bluesky", "bars", "bars_synthetic"]


@pytest.mark.parametrize("query, named", [
    ("SELECT count(*) FROM stock", ["stock"]),
    ('SELECT * FROM "Stock_Synthetic" s JOIN BARS b USING (ticker)', ["stock_synthetic", "bars"]),
    ("SELECT * FROM macro; SELECT * FROM news", ["macro", "news"]),  # macro is also a DuckDB keyword
    ("SELECT 'stock' AS word -- FROM bars\n/* FROM news */", []),  # strings and comments name no table
    ("WITH x AS (FROM bluesky) PIVOT x ON keyword USING count(*)", ["bluesky"]),
    ("SELEC nonsense FROM", []),
])
def test_the_tables_a_query_names_are_those_among_its_identifiers(query, named):
    assert sorted(tables_named(query, TABLES)) == sorted(named)


@given(st.sampled_from(TABLES), st.randoms())
def test_a_table_is_named_in_any_case(name, random):
    spelt = "".join(c.upper() if random.random() < 0.5 else c for c in name)
    assert tables_named(f"SELECT * FROM {spelt} WHERE true", TABLES) == [name]


class Collected:
    """An output that keeps what it was given."""

    def __init__(self):
        self.schema, self.batches = None, []

    def begin(self, schema):
        self.schema = schema

    def write(self, batch):
        self.batches.append(batch)

    @property
    def rows(self) -> int:
        return sum(batch.num_rows for batch in self.batches)


SPILL = tempfile.TemporaryDirectory(prefix="test-query-spill-")
"""DuckDB's spill folder, the one place a locked connection may still write: a folder of its own."""


def numbers(rows: int, allow_files: bool = False, memory_limit: str = "1GB"):
    """A locked connection with one view, `numbers`: n = 0 .. rows - 1."""
    table = pa.table({"n": pa.array(range(rows), pa.int64())})
    return connect({"numbers": ds.dataset(table)}, allow_files=allow_files, memory_limit=memory_limit,
                   spill_directory=SPILL.name)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 3 * BATCH_ROWS), st.one_of(st.none(), st.integers(1, 3 * BATCH_ROWS)))
def test_at_most_limit_rows_come_out_and_a_cut_is_known(rows, limit):
    output = Collected()
    outcome = run(numbers(rows), "SELECT n FROM numbers ORDER BY n", output, limit)
    expected = rows if limit is None else min(rows, limit)
    assert outcome.rows == output.rows == expected
    assert outcome.cut == (limit is not None and rows > limit)
    assert [n for batch in output.batches for n in batch.column("n").to_pylist()] == list(range(expected))


def test_the_result_comes_out_in_batches_not_whole():
    output = Collected()
    run(numbers(5 * BATCH_ROWS), "SELECT n, n * 2 AS m FROM numbers", output, None)
    assert output.rows == 5 * BATCH_ROWS and len(output.batches) >= 5
    assert max(batch.num_rows for batch in output.batches) <= BATCH_ROWS


@pytest.mark.parametrize("statement", [
    "SELECT * FROM read_csv('/etc/passwd')",
    "COPY (SELECT 1) TO '{folder}/copied.csv'",
    "ATTACH '{folder}/other.duckdb'",
    "INSTALL httpfs",
    "LOAD httpfs",
    "SET enable_external_access = true",
    "SET memory_limit = '100GB'",
    "SELECT * FROM glob('/etc/*')",
])
def test_a_locked_connection_refuses_files_extensions_and_settings(tmp_path, statement):
    with pytest.raises(QueryFailed) as refused:
        run(numbers(3), statement.format(folder=tmp_path), Collected(), None)
    assert "\n" not in str(refused.value)
    assert not (tmp_path / "copied.csv").exists() and not (tmp_path / "other.duckdb").exists()


def test_allowing_files_lets_a_query_read_and_write_them(tmp_path):
    connection = numbers(3, allow_files=True)
    run(connection, f"COPY (SELECT n FROM numbers) TO '{tmp_path}/copied.csv'", Collected(), None)
    output = Collected()
    run(connection, f"SELECT sum(n) AS total FROM read_csv('{tmp_path}/copied.csv')", output, None)
    assert output.batches[0].column("total").to_pylist() == [3]


def test_the_views_answer_under_the_lock_and_the_memory_limit_holds():
    output = Collected()
    run(numbers(10, memory_limit="256MB"), "SELECT count(*) AS n, current_setting('memory_limit') AS limit FROM numbers",
        output, None)
    assert output.batches[0].to_pylist() == [{"n": 10, "limit": "244.1 MiB"}]


def test_a_memory_limit_duckdb_cannot_read_is_refused(tmp_path):
    with pytest.raises(BadRequest, match="memory limit 'lots'"):
        connect({}, allow_files=False, memory_limit="lots", spill_directory=str(tmp_path))


def test_a_failure_while_running_is_one_line():
    with pytest.raises(QueryFailed, match="^Invalid Input Error: boom$"):
        run(numbers(3), "SELECT error('boom') FROM numbers", Collected(), None)
    with pytest.raises(QueryFailed, match="^Parser Error: syntax error at or near \"SELEC\"$"):
        run(numbers(3), "SELEC 1", Collected(), None)


def test_zoned_timestamps_come_out_in_utc_nested_ones_too(tmp_path):
    moment = datetime(2026, 11, 24, 14, 30, 0, 123456, tzinfo=timezone.utc)
    kinds = pa.timestamp("us", tz="UTC")
    table = pa.table({"at": pa.array([moment], kinds), "ats": pa.array([[moment]], pa.list_(kinds)),
                      "s": pa.array([{"at": moment}], pa.struct([("at", kinds)])),
                      "naive": pa.array([moment.replace(tzinfo=None)], pa.timestamp("us"))})
    connection = connect({"t": ds.dataset(table)}, allow_files=False, memory_limit="1GB", spill_directory=str(tmp_path))
    output = Collected()
    run(connection, "SELECT * FROM t", output, None)
    assert [field.type for field in output.schema] == [kinds, pa.list_(kinds), pa.struct([("at", kinds)]), pa.timestamp("us")]
    assert output.batches[0].to_pylist() == table.to_pylist()


def test_utc_schema_leaves_everything_but_the_zone_alone():
    schema = pa.schema([("a", pa.timestamp("ns", tz="Etc/UTC")), ("m", pa.map_(pa.string(), pa.timestamp("ms", tz="+01:00"))),
                        ("b", pa.int32())], metadata={b"k": b"v"})
    assert utc_schema(schema) == pa.schema([("a", pa.timestamp("ns", tz="UTC")),
                                            ("m", pa.map_(pa.string(), pa.timestamp("ms", tz="UTC"))),
                                            ("b", pa.int32())], metadata={b"k": b"v"})
