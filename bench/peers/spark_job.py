"""The Spark contender of `make bench-peers`, run by `spark-submit` in the peers' environment (pyspark and
delta-spark; nothing of the project is importable here):

    spark_job.py BOOTSTRAP TOPIC TABLE_URI CHECKPOINT_DIR MESSAGE_SCHEMA_DDL

What most teams deploy for Kafka -> Delta: Structured Streaming reads the topic from its earliest offsets,
parses each trade with `from_json` and the trade contract's schema (given as DDL by bench/peers/run.py,
which reads it from `marketstream.trades`), keeps the Kafka partition and offset as lineage, derives the
New York trading date, and writes a Delta table partitioned by ticker and date through S3A with
`trigger(availableNow=True)`: everything in the topic now, then stop. Exactly-once by the checkpoint (on
local disk) and Delta's transaction ids.

Prints `BENCH <seconds>` from the start of the query (the session and its JVM are up) to its end, and
`STARTUP <seconds>` for the session's start-up before it.
"""

import sys
import time

_launched = time.perf_counter()

from pyspark.sql import SparkSession  # noqa: E402
from pyspark.sql import functions as F  # noqa: E402


def main(bootstrap: str, topic: str, table: str, checkpoint: str, message_ddl: str) -> None:
    spark = SparkSession.builder.appName("bench-peers-spark").getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    started = time.perf_counter()
    print(f"STARTUP {started - _launched:.3f}", flush=True)
    messages = (spark.readStream.format("kafka")
                .option("kafka.bootstrap.servers", bootstrap)
                .option("subscribe", topic)
                .option("startingOffsets", "earliest")
                .load())
    trade = F.from_json(F.col("value").cast("string"), message_ddl,
                        {"timestampFormat": "yyyy-MM-dd'T'HH:mm:ss[.SSSSSS]XXX", "mode": "PERMISSIVE"})
    trades = (messages
              .select(trade.alias("trade"), F.col("partition").alias("kafka_partition"),
                      F.col("offset").alias("kafka_offset"))
              .select("trade.*", "kafka_partition", "kafka_offset")
              .withColumnRenamed("symbol", "ticker")
              .withColumn("date", F.to_date(F.from_utc_timestamp("timestamp", "America/New_York"))))
    query = (trades.writeStream.format("delta")
             .partitionBy("ticker", "date")
             .option("checkpointLocation", checkpoint)
             .trigger(availableNow=True)
             .start(table))
    query.awaitTermination()
    print(f"BENCH {time.perf_counter() - started:.3f}", flush=True)
    spark.stop()


if __name__ == "__main__":
    main(*sys.argv[1:6])
