"""stock_consume run by `python -m bytewax.run` with several workers and processes writes the same rows."""

import subprocess
import sys

import orjson
import pytest

from marketstream import schemas
from marketstream.lake import lake_filesystem, read_table
from tests.conftest import make_settings
from tests.integration.kafka_helpers import produce

pytestmark = pytest.mark.integration


def lake_rows(settings, bucket):
    table = read_table(settings, bucket, schemas.STOCK_TRADES_PARTITIONING)
    return sorted(zip(table.column("trade_id").to_pylist(), table.column("ticker").to_pylist(),
                      table.column("kafka_offset").to_pylist()))


@pytest.mark.parametrize("runner", [["bytewax.run", "-w", "2"], ["bytewax.testing", "-p", "2"]], ids=["w2", "p2"])
def test_several_workers_write_the_same_rows_as_one(stack, unique, runner):
    settings = make_settings(kafka_topic_partitions=4)
    topic = f"it_parallel_{unique}"
    tickers = ["AAPL", "MSFT", "NVDA", "AMZN", "BRK.B"]
    produce(settings, topic, [
        (t.encode(), orjson.dumps({"symbol": t, "price": 10.0 + i, "size": 1, "timestamp": "2026-11-24T15:00:00Z",
                                   "trade_id": f"{t}{i}", "source": "alpaca"}))
        for i in range(200) for t in tickers
    ])
    results = {}
    for label, args in {"single": ["bytewax.run"], "parallel": runner}.items():
        bucket = f"it-par-{label}-{unique}"
        factory = f"tests.integration.flows:stock_consume({topic!r}, {bucket!r})"
        subprocess.run([sys.executable, "-m", args[0], factory, *args[1:]], check=True, timeout=180)
        results[label] = lake_rows(settings, bucket)
        lake_filesystem(settings).rm(bucket, recursive=True)
    assert len(results["single"]) == 1000
    assert results["parallel"] == results["single"]
