"""Trades (Alpaca live or synthetic, see sources.stock_trades) -> Kafka topic `stock_trades`, key = ticker."""

from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.outputs import Sink

from marketstream.producer_flow import build_producer_flow
from marketstream.runtime import lazy_flow
from marketstream.settings import Settings, get_settings
from sources.stock_trades import StockTradeSource

TOPIC = "stock_trades"


def build_flow(
    settings: Settings | None = None, *, topic: str = TOPIC, source: Source | None = None, sink: Sink | None = None
) -> Dataflow:
    settings = settings or get_settings()
    if source is None:
        settings.require("postgres_host", "postgres_db", "postgres_user", "postgres_password")
        if settings.stock_source == "alpaca":
            settings.require("api_key_alpaca", "api_secret_alpaca")
    return build_producer_flow("stock_produce", settings, source or StockTradeSource(settings), topic, sink)


__getattr__ = lazy_flow(build_flow)
