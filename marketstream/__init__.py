"""marketstream: real-time ingestion of market data into Kafka and a partitioned Parquet lake."""

import os

# Arrow picks its allocator once, when pyarrow loads, so this is the one place early enough. The system
# allocator hands freed memory back (marketstream.memory); the bundled mimalloc kept ~25 MB of the
# consumers' short-lived Parquet buffers. A user's own setting wins.
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
