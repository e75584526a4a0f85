"""Trades (Alpaca live or synthetic, see sources.stock_trades) -> Kafka topic `stock_trades`, key = ticker."""

from bytewax import operators as op
from bytewax.connectors.kafka import KafkaSinkMessage
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.outputs import Sink

from marketstream.runtime import lazy_flow
from marketstream.settings import Settings, get_settings
from marketstream.trades import Trade
from sinks.kafka import KafkaProducerSink
from sources.stock_trades import StockTradeSource

TOPIC = "stock_trades"


def to_message(trade: Trade) -> KafkaSinkMessage:
    return KafkaSinkMessage(key=trade.symbol.encode(), value=trade.to_json())


def build_flow(
    settings: Settings | None = None, *, topic: str = TOPIC, source: Source | None = None, sink: Sink | None = None
) -> Dataflow:
    settings = settings or get_settings()
    if source is None:
        settings.require("postgres_host", "postgres_db", "postgres_user", "postgres_password")
        if settings.stock_source == "alpaca":
            settings.require("api_key_alpaca", "api_secret_alpaca")
    flow = Dataflow("stock_produce")
    trades = op.input("trades", flow, source or StockTradeSource(settings))
    messages = op.map("to_message", trades, to_message)
    op.output("kafka_out", messages, sink or KafkaProducerSink(settings, topic))
    return flow


__getattr__ = lazy_flow(build_flow)
