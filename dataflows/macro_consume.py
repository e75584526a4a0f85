"""macrodata -> s3://macro-data/alias=…/year=…/"""

from marketstream import schemas
from marketstream.consumer_flow import Dataset, build_consumer_flow
from marketstream.macro import parse_macro
from marketstream.runtime import consumer_needs, lazy_flow

MACRO_OBSERVATIONS = Dataset(
    name="macrodata",
    topic="macrodata",
    bucket="macro-data",
    schema=schemas.MACRO_OBSERVATIONS,
    partitioning=schemas.MACRO_OBSERVATIONS_PARTITIONING,
    few_values=schemas.MACRO_OBSERVATIONS_FEW_VALUES,
    parse=parse_macro,
)

__getattr__ = lazy_flow(lambda settings: build_consumer_flow(MACRO_OBSERVATIONS, settings), consumer_needs(MACRO_OBSERVATIONS.bucket))
