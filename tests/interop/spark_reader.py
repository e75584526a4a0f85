"""A Spark reader of the lake for tests/interop, run by `spark-submit` in the peers' environment (pyspark
and delta-spark; nothing of the project is importable here).

Reads one request a line on standard input, a JSON object:

    {"uri": "s3a://bucket/prefix", "version": 3, "columns": ["ticker", ...], "predicate": {...} | null,
     "output": "/tmp/answer"}

and answers each with one line on standard output, `{"ok": true}` once the rows of the table at that
version (`versionAsOf`) for which the predicate holds are written to `output` as Parquet (timestamps in
microseconds), or `{"error": "..."}`. A predicate is a tree as tests/interop/test_spark_reads_the_lake.py
sends it (`compare`, `among`, `like`, `isnull`, `all`, `any`), its literals tagged with their kind, and
becomes a Spark Column expression: Spark's SQL semantics (three-valued logic, LIKE) decide, as they would
for a user's query.
"""

import json
import operator
import sys
from datetime import date, datetime
from functools import reduce

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

COMPARE = {"=": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt,
           ">=": operator.ge}


def literal(tagged: dict):
    (kind, value), = tagged.items()
    if kind == "timestamp":
        return datetime.fromisoformat(value)
    if kind == "date":
        return date.fromisoformat(value)
    if kind == "float":
        return float(value)
    return value


def condition(predicate: dict):
    kind = predicate["op"]
    if kind in ("all", "any"):
        return reduce(operator.and_ if kind == "all" else operator.or_, map(condition, predicate["parts"]))
    column = F.col(predicate["column"])
    if kind == "isnull":
        return column.isNotNull() if predicate["negated"] else column.isNull()
    if kind == "compare":
        return COMPARE[predicate["operator"]](column, F.lit(literal(predicate["value"])))
    if kind == "among":
        among = column.isin([literal(value) for value in predicate["values"]])
        return ~among if predicate["negated"] else among
    if kind == "like":
        return column.like(predicate["pattern"])
    raise ValueError(f"no predicate {kind!r}")


def answer(spark: SparkSession, request: dict) -> None:
    frame = spark.read.format("delta").option("versionAsOf", request["version"]).load(request["uri"])
    if request.get("predicate"):
        frame = frame.filter(condition(request["predicate"]))
    frame.select(*request["columns"]).write.mode("overwrite").parquet(request["output"])


def main() -> None:
    spark = (SparkSession.builder.appName("interop-reader")
             .config("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
             # small tables, hundreds of queries: a few partitions for the log's replay and the answers
             .config("spark.databricks.delta.snapshotPartitions", "2")
             .config("spark.sql.shuffle.partitions", "2")
             .getOrCreate())
    spark.sparkContext.setLogLevel("WARN")
    print(json.dumps({"ready": spark.version}), flush=True)
    for line in sys.stdin:
        try:
            answer(spark, json.loads(line))
            reply = {"ok": True}
        except Exception as failed:  # noqa: BLE001 - the test reports it; the reader serves the next request
            reply = {"error": f"{type(failed).__name__}: {' '.join(str(failed).split())[:2000]}"}
        print(json.dumps(reply), flush=True)
    spark.stop()


if __name__ == "__main__":
    main()
