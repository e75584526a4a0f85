"""FRED observations (new or revised only) -> Kafka topic `macrodata`, key = alias. Run with recovery (-r)
so the memory of what was published survives restarts."""

from bytewax.dataflow import Dataflow

from marketstream.datasets import MACRO
from pipelines.api_sources import macro_source
from pipelines.producer import producer_dataflow
from pipelines.runtime import PRODUCER_NEEDS, build_or_exit

build_flow = producer_dataflow(MACRO, macro_source)


def flow() -> Dataflow:
    return build_or_exit(build_flow, PRODUCER_NEEDS)
