"""Dataflow factories for tests that run `python -m bytewax.run` on isolated topics and buckets:
`python -m bytewax.run "tests.integration.flows:stock_consume('topic', 'bucket')" -w 2`."""

from dataclasses import replace

from marketstream.datasets import STOCK
from pipelines.consumer import build_consumer_flow
from pipelines.runtime import PRODUCER_NEEDS, build_or_exit, consumer_needs
from tests.conftest import make_settings


def stock_consume(topic: str, bucket: str, **settings):
    """As `python -m bytewax.run dataflows.stock_consume` runs it, on the stack's settings plus `settings`."""
    return build_or_exit(lambda config: build_consumer_flow(replace(STOCK, topic=topic, bucket=bucket), config),
                         consumer_needs(bucket), make_settings(**{"kafka_stop_at_end": True, **settings}))


def consume(dataset: str, topic: str, bucket: str, **settings):
    """As `python -m bytewax.run dataflows.<dataset>_consume` runs it, on `topic` -> `bucket`."""
    from marketstream.datasets import DATASETS

    return build_or_exit(lambda config: build_consumer_flow(replace(DATASETS[dataset], topic=topic, bucket=bucket), config),
                         consumer_needs(bucket), make_settings(**{"kafka_stop_at_end": True, **settings}))


def stock_consume_before_renaming(topic: str, bucket: str, **settings):
    """`stock_consume` as it was while the dataset was called `stock_trades` (flow id, transaction ids)."""
    dataset = replace(STOCK, name="stock_trades", former_names=(), topic=topic, bucket=bucket)
    return build_or_exit(lambda config: build_consumer_flow(dataset, config), consumer_needs(bucket),
                         make_settings(**{"kafka_stop_at_end": True, **settings}))


def macro_produce(topic: str, **settings):
    from dataflows.macro_produce import build_flow

    return build_or_exit(lambda config: build_flow(config, topic=topic), PRODUCER_NEEDS, make_settings(**settings))


def stock_consume_stalling_upload(topic: str, bucket: str, stalled_upload: int, **settings):
    """`stock_consume` whose upload number `stalled_upload` (counted from 1) never completes, while the
    uploads after it do: the order of completion a slow PUT gives, held until the test kills the process."""
    import threading

    from sinks.object_store import ObjectStore

    put_many, calls, lock = ObjectStore.put_many, [0], threading.Lock()

    def stalling_put_many(self, bucket_name, objects):
        with lock:
            calls[0] += 1
            stall = calls[0] == stalled_upload
        if stall:
            threading.Event().wait()
        put_many(self, bucket_name, objects)

    ObjectStore.put_many = stalling_put_many
    return stock_consume(topic, bucket, **settings)


def bars_consume(topic: str, bars_bucket: str, **settings):
    """As `python -m bytewax.run dataflows.bars_consume` runs it, reading `topic`, writing `bars_bucket`."""
    from pipelines.bars import BARS_NEEDS, build_bars_flow

    return build_or_exit(lambda config: build_bars_flow(config, topic=topic), BARS_NEEDS,
                         make_settings(**{"kafka_stop_at_end": True, "bars_bucket": bars_bucket, **settings}))


def signals_consume(prefix: str, **settings):
    """As `python -m bytewax.run dataflows.signals_consume` runs it, on the tables under `s3://<prefix>/`
    (`bars`, `news`, `bluesky` -> `signals`) instead of the lake's."""
    from pipelines.signals import SignalsTable, build_signals_flow

    bucket, _, folder = prefix.partition("/")
    table = SignalsTable("signals", f"s3://{prefix}/signals", bucket, f"{folder}/signals".strip("/"),
                         {name: f"s3://{prefix}/{name}" for name in ("bars", "news", "bluesky")})
    return build_or_exit(lambda config: build_signals_flow(config, [table]), ("s3",), make_settings(**settings))


def signals_consume_slow(prefix: str, seconds_before_each_commit: float, **settings):
    """`signals_consume` of a slow deployment: each commit waits `seconds_before_each_commit` once its rows are
    computed, so it comes after a faster writer's commits of newer source versions. Says on stderr when a round
    starts (`ROUND`) and when a commit of a date that does not end its round landed (`COMMITTED … last=False`)."""
    import sys
    import time

    from sinks.signals_table import SignalsWriter

    replace, source_versions = SignalsWriter.replace, SignalsWriter.source_versions

    def announced_source_versions(self, names):
        print("ROUND", file=sys.stderr, flush=True)
        return source_versions(self, names)

    def slow_replace(self, day, *args, **kwargs):
        time.sleep(seconds_before_each_commit)
        replace(self, day, *args, **kwargs)
        print(f"COMMITTED {day} last={kwargs.get('last', False)}", file=sys.stderr, flush=True)

    SignalsWriter.replace, SignalsWriter.source_versions = slow_replace, announced_source_versions
    return signals_consume(prefix, **settings)
