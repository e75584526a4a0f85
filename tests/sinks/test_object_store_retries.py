"""The object store client's retries, against an address where nothing listens (no server)."""

import socket

import pytest

from sinks.object_store import ObjectStore


class Stop(Exception):
    pass


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_an_unreachable_store_is_retried_with_capped_backoff_and_nothing_is_dropped():
    pauses = []

    def sleep(seconds):
        pauses.append(seconds)
        if len(pauses) == 6:
            raise Stop  # the test has seen enough: the write would go on being retried

    store = ObjectStore({"key": "k", "secret": "s", "endpoint_url": f"http://127.0.0.1:{closed_port()}"},
                        retry_max_seconds=2, sleep=sleep)
    with pytest.raises(Stop):
        store.put_many("bucket", {"a.parquet": b"1", "b.parquet": b"2"})
    assert pauses == [0.5, 1.0, 2.0, 2.0, 2.0, 2.0]
