"""Trades (Alpaca live or synthetic, see sources.stock_trades) -> Kafka topic `stock_trades`, key = ticker."""

from bytewax.dataflow import Dataflow

from marketstream.datasets import STOCK
from pipelines.api_sources import stock_trade_source
from pipelines.producer import producer_dataflow
from pipelines.runtime import COMPANIES_PRODUCER_NEEDS, build_or_exit

build_flow = producer_dataflow(STOCK, stock_trade_source)


def flow() -> Dataflow:
    return build_or_exit(build_flow, COMPANIES_PRODUCER_NEEDS)
