"""finnhub -> s3://finnhub-data/ticker=…/date=…/ (date: New York date of the article)."""

from bytewax.dataflow import Dataflow

from marketstream.datasets import NEWS
from pipelines.consumer import consumer_dataflow


def flow() -> Dataflow:
    return consumer_dataflow(NEWS)
