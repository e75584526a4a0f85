"""bluesky -> s3://bluesky-data/date=…/keyword=…/ (date: UTC date the post was created)."""

from bytewax.dataflow import Dataflow

from marketstream.datasets import BLUESKY
from pipelines.consumer import consumer_dataflow


def flow() -> Dataflow:
    return consumer_dataflow(BLUESKY)
