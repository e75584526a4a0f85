"""stock_trades -> s3://bars-data/ticker=…/date=…/ one-minute OHLCV bars (synthetic trades' bars in `_synthetic/`)."""

from bytewax.dataflow import Dataflow

from pipelines.bars import bars_dataflow


def flow() -> Dataflow:
    return bars_dataflow()
