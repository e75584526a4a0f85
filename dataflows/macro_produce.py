"""FRED observations (new or revised only) -> Kafka topic `macrodata`, key = alias. Run with recovery (-r)
so the memory of what was published survives restarts."""

from pipelines.producer import producer_dataflow
from marketstream.runtime import PRODUCER_NEEDS, lazy_flow
from pipelines.connectors import macro_source

build_flow = producer_dataflow("macro_produce", "macrodata", macro_source)
__getattr__ = lazy_flow(build_flow, PRODUCER_NEEDS)
