"""bars, news and bluesky tables -> s3://signals-data/ticker=…/date=…/ per-minute signals (bars of synthetic
trades: `_synthetic/`); see `pipelines.signals`."""

from bytewax.dataflow import Dataflow

from pipelines.signals import signals_dataflow


def flow() -> Dataflow:
    return signals_dataflow()
