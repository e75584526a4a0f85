"""The Quix Streams contender of `make bench-peers`, run with the peers' environment (quixstreams with its
S3 and Parquet extras; nothing of the project is importable here):

    quix_app.py BOOTSTRAP TOPIC BUCKET CONSUMER_GROUP

The closest Python rival: an `Application` reads the topic from its earliest offsets (JSON values) into
Quix's `S3FileSink` with `ParquetFormat` (zstd) on the store's endpoint. At-least-once: the sink writes a
file per topic partition at each checkpoint (every 5 s, Quix's default) and only then are the offsets
committed; after a crash the messages since the last commit are written again. The sink keeps Quix's own
layout (`<topic>/<partition>/<first offset>.parquet`), values as the messages carry them: it has no
partitioning by column.

The run stops itself once the group's committed offsets reach the topic's high watermarks (a thread
compares them every 0.2 s), so every message was consumed, written and committed. The store's keys come
from the environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT_URL_S3`),
as Quix reads them. Prints `BENCH <seconds>` from the application's start to its stop.
"""

import sys
import threading
import time

from confluent_kafka import Consumer, TopicPartition
from quixstreams import Application
from quixstreams.sinks.community.file.formats import ParquetFormat
from quixstreams.sinks.community.file.s3 import S3FileSink


def wait_until_committed_to_the_end(bootstrap: str, topic: str, group: str) -> None:
    watcher = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        partitions = [TopicPartition(topic, p) for p in watcher.list_topics(topic, timeout=10).topics[topic].partitions]
        ends = {p.partition: watcher.get_watermark_offsets(p, timeout=10)[1] for p in partitions}
        while any(done.offset < ends[done.partition] for done in watcher.committed(partitions, timeout=10)):
            time.sleep(0.2)
    finally:
        watcher.close()


def main(bootstrap: str, topic: str, bucket: str, group: str) -> None:
    app = Application(broker_address=bootstrap, consumer_group=group, auto_offset_reset="earliest",
                      processing_guarantee="at-least-once", auto_create_topics=False, loglevel="WARNING")
    sink = S3FileSink(bucket=bucket, format=ParquetFormat(compression="zstd"))
    app.dataframe(app.topic(topic, value_deserializer="json")).sink(sink)

    def stop_at_the_end() -> None:
        wait_until_committed_to_the_end(bootstrap, topic, group)
        app.stop()

    threading.Thread(target=stop_at_the_end, daemon=True).start()
    started = time.perf_counter()
    app.run()
    print(f"BENCH {time.perf_counter() - started:.3f}", flush=True)
    with open("/proc/self/status") as status:  # its own peak: wait4's counts the benchmark's memory at the fork
        print(f"PEAK_RSS_MB {int(next(line.split()[1] for line in status if line.startswith('VmHWM:'))) / 1024:.1f}",
              flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:5])
