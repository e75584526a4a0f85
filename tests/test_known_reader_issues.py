"""Upstream reader faults the README warns of, pinned on files written the way the project writes them:
when one of these tests fails, the library has fixed the fault, and the README's warning and the
differential test's exclusion (`tests.query_predicates.asks_float_zero_among`) can go."""

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from hypothesis import given, settings, strategies as st

from sinks.files import encode_parquet


def _file(tmp_path, values: list[float | None]) -> ds.Dataset:
    table = pa.table({"sentiment": pa.array(values, pa.float64()),
                      "kafka_offset": pa.array(range(len(values)), pa.int64())})
    path = tmp_path / "part.parquet"
    path.write_bytes(encode_parquet(table, "zstd"))
    return ds.dataset(path)


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 50))
def test_pyarrow_is_in_misses_the_zeros_of_a_row_group_of_zeros_only(tmp_path_factory, zeros):
    """Parquet's rule has writers record such a row group's minimum as -0.0; pyarrow then takes the row group
    to hold only -0.0 and finds no 0.0 in it. `=` and a row group with any other value or a null are right."""
    tmp_path = tmp_path_factory.mktemp("zeros")
    dataset = _file(tmp_path, [0.0] * zeros)
    statistics = pq.ParquetFile(dataset.files[0]).metadata.row_group(0).column(0).statistics
    assert (statistics.min, statistics.max, statistics.null_count) == (-0.0, 0.0, 0)
    assert dataset.to_table(filter=pc.field("sentiment").isin([0.0])).num_rows == 0  # the fault: all are 0.0
    assert dataset.to_table(filter=pc.field("sentiment") == 0.0).num_rows == zeros
    assert _file(tmp_path, [0.0] * zeros + [None]).to_table(filter=pc.field("sentiment").isin([0.0])).num_rows == zeros
    assert _file(tmp_path, [0.0] * zeros + [0.5]).to_table(filter=pc.field("sentiment").isin([0.0])).num_rows == zeros
