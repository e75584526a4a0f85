"""Finnhub company news for every ticker in companies_info -> Kafka topic `finnhub`, key = ticker. Run with
recovery (-r) so the ids already published survive restarts."""

from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.outputs import Sink

from marketstream.producer_flow import build_producer_flow
from marketstream.runtime import lazy_flow
from marketstream.settings import Settings, get_settings
from sources.finnhub_news import finnhub_news_source

TOPIC = "finnhub"


def build_flow(
    settings: Settings | None = None, *, topic: str = TOPIC, source: Source | None = None, sink: Sink | None = None
) -> Dataflow:
    settings = settings or get_settings()
    if source is None:
        settings.require("finnhub_api_key", "postgres_host", "postgres_db", "postgres_user", "postgres_password")
    return build_producer_flow("news_produce", settings, source or finnhub_news_source(settings), topic, sink)


__getattr__ = lazy_flow(build_flow)
