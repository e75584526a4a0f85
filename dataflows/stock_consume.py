"""stock_trades -> s3://stock-data/ticker=…/date=…/ (real trades inside NYSE sessions; synthetic apart)."""

from marketstream.datasets import STOCK_TRADES
from marketstream.runtime import consumer_needs, lazy_flow
from pipelines.consumer import build_consumer_flow

__getattr__ = lazy_flow(lambda settings: build_consumer_flow(STOCK_TRADES, settings), consumer_needs(STOCK_TRADES.bucket))
