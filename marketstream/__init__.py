"""marketstream: real-time ingestion of market data into Kafka and a partitioned Parquet lake."""
