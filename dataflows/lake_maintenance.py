"""Every LAKE_MAINTENANCE_INTERVAL_SECONDS: compact, vacuum and checkpoint each Delta table of the lake."""

from marketstream.cli import lake_tables
from marketstream.maintenance_flow import build_maintenance_flow
from marketstream.runtime import lazy_flow

__getattr__ = lazy_flow(lambda settings: build_maintenance_flow(settings, lake_tables(settings)), ("s3",))
