"""Finnhub company news for every ticker in companies_info -> Kafka topic `finnhub`, key = ticker. Run with
recovery (-r) so the ids already published survive restarts."""

from bytewax.dataflow import Dataflow

from marketstream.datasets import NEWS
from pipelines.api_sources import news_source
from pipelines.producer import producer_dataflow
from pipelines.runtime import COMPANIES_PRODUCER_NEEDS, build_or_exit

build_flow = producer_dataflow(NEWS, news_source)


def flow() -> Dataflow:
    return build_or_exit(build_flow, COMPANIES_PRODUCER_NEEDS)
