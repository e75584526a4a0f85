"""Trades (Alpaca live or synthetic, see sources.stock_trades) -> Kafka topic `stock_trades`, key = ticker."""

from pipelines.producer import producer_dataflow
from marketstream.runtime import COMPANIES_PRODUCER_NEEDS, lazy_flow
from pipelines.connectors import stock_trade_source

build_flow = producer_dataflow("stock_produce", "stock_trades", stock_trade_source)
__getattr__ = lazy_flow(build_flow, COMPANIES_PRODUCER_NEEDS)
