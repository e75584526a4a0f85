"""Finnhub company news for every ticker in companies_info -> Kafka topic `finnhub`, key = ticker. Run with
recovery (-r) so the ids already published survive restarts."""

from pipelines.producer import producer_dataflow
from marketstream.runtime import COMPANIES_PRODUCER_NEEDS, lazy_flow
from pipelines.connectors import news_source

build_flow = producer_dataflow("news_produce", "finnhub", news_source)
__getattr__ = lazy_flow(build_flow, COMPANIES_PRODUCER_NEEDS)
