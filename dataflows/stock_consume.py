"""stock_trades -> s3://stock-data/ticker=…/date=…/ (real trades inside NYSE sessions; synthetic apart)."""

from marketstream import schemas
from marketstream.consumer_flow import Dataset, build_consumer_flow
from marketstream.runtime import consumer_needs, lazy_flow
from marketstream.trades import decode_trades, outside_session, parse_trade, synthetic_apart

STOCK_TRADES = Dataset(
    name="stock_trades",
    topic="stock_trades",
    bucket="stock-data",
    schema=schemas.STOCK_TRADES,
    partitioning=schemas.STOCK_TRADES_PARTITIONING,
    few_values=schemas.STOCK_TRADES_FEW_VALUES,
    parse=parse_trade,
    decode_batch=decode_trades,
    prefix=synthetic_apart,
    skip=outside_session,
)

__getattr__ = lazy_flow(lambda settings: build_consumer_flow(STOCK_TRADES, settings), consumer_needs(STOCK_TRADES.bucket))
