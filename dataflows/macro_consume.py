"""macrodata -> s3://macro-data/alias=…/year=…/"""

from bytewax.dataflow import Dataflow

from marketstream.datasets import MACRO
from pipelines.consumer import consumer_dataflow


def flow() -> Dataflow:
    return consumer_dataflow(MACRO)
