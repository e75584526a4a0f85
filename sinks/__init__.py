"""Sinks: the lake's writers (`delta`: Delta Lake tables, the default; `parquet`: plain Parquet files with
`LAKE_FORMAT=parquet`; with their layout, object store and Parquet encoding), Delta maintenance, the
backfill's merge, the bars table, the dead-letter sink and the Kafka producer sink."""
