"""Sinks: the Parquet lake writer (layout, object store, Parquet) and the Kafka producer sink."""
