"""FRED observations (new or revised only) -> Kafka topic `macrodata`, key = alias. Run with recovery (-r)
so the memory of what was published survives restarts."""

from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.outputs import Sink

from marketstream.producer_flow import build_producer_flow
from marketstream.runtime import lazy_flow
from marketstream.settings import Settings, get_settings
from sources.fred import fred_source

TOPIC = "macrodata"


def build_flow(
    settings: Settings | None = None, *, topic: str = TOPIC, source: Source | None = None, sink: Sink | None = None
) -> Dataflow:
    settings = settings or get_settings()
    if source is None:
        settings.require("api_key_fred")
    return build_producer_flow("macro_produce", settings, source or fred_source(settings), topic, sink)


__getattr__ = lazy_flow(build_flow)
