"""stock_trades -> s3://stock-data/ticker=…/date=…/ (real trades inside NYSE sessions; synthetic apart)."""

from bytewax.dataflow import Dataflow

from marketstream.datasets import STOCK
from pipelines.consumer import consumer_dataflow


def flow() -> Dataflow:
    return consumer_dataflow(STOCK)
