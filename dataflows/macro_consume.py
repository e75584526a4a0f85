"""macrodata -> s3://macro-data/alias=…/year=…/"""

from marketstream.datasets import MACRO_OBSERVATIONS
from marketstream.runtime import consumer_needs, lazy_flow
from pipelines.consumer import build_consumer_flow

__getattr__ = lazy_flow(lambda settings: build_consumer_flow(MACRO_OBSERVATIONS, settings), consumer_needs(MACRO_OBSERVATIONS.bucket))
