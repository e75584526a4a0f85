"""`make bench-peers` judges what each contender stored, and gives Spark the trade contract's schema."""

import pyarrow as pa
import pytest

from bench.peers import run as peers
from marketstream import trades


@pytest.mark.parametrize(("stored", "verdict"), [
    (["b0", "b1", "b2"], "every trade once"),
    (["b0", "b1", "b2", "b1"], "WRONG: 4 rows, 3 distinct trades, 0 of 3 missing"),
    (["b0", "b2"], "WRONG: 2 rows, 2 distinct trades, 1 of 3 missing"),
    (["b0", "b1", "x"], "WRONG: 3 rows, 3 distinct trades, 1 of 3 missing"),
    ([], "WRONG: 0 rows, 0 distinct trades, 3 of 3 missing"),
])
def test_a_contender_that_loses_or_doubles_a_trade_is_reported_wrong(monkeypatch, stored, verdict):
    monkeypatch.setattr(peers, "stored_trade_ids", lambda settings, bucket: pa.chunked_array([stored], pa.string()))
    found = peers.correctness(None, 3)("bucket")
    assert found["verdict"] == verdict
    assert found["correct"] == (verdict == "every trade once")


def test_spark_parses_a_trade_message_with_the_contracts_columns():
    ddl = peers.trade_message_ddl()
    names = [part.split("`")[1] for part in ddl.split(", ")]
    assert names == ["symbol", *(f.name for f in trades.COLUMNS if f.name not in ("ticker", "date"))]
    assert "`timestamp` TIMESTAMP" in ddl and "`conditions` ARRAY<STRING>" in ddl and "`size` DOUBLE" in ddl
