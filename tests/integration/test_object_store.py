"""The object store's listings on the real MinIO."""

import pytest

from sinks.object_store import ObjectStore
from tests.conftest import make_settings

pytestmark = pytest.mark.integration


@pytest.fixture
def store(stack, unique):
    store = ObjectStore(make_settings().s3_storage_options())
    bucket = f"it-store-{unique}"
    store.ensure_bucket(bucket)
    yield store, bucket
    store.filesystem.rm(bucket, recursive=True)


def test_a_small_bucket_is_listed_whole_across_pages(store):
    store, bucket = store
    keys = [f"ticker=T{i}/date=2026-11-24/part-{i}.parquet" for i in range(7)] + ["top.parquet"]
    store.put_many(bucket, {key: b"x" for key in keys})

    assert sorted(store.list_all_keys(bucket, limit=8, page_size=3)) == sorted(keys)
    assert store.list_all_keys(bucket, limit=7, page_size=3) is None  # one more than allowed: stops


def test_an_empty_bucket_lists_as_no_keys(store):
    store, bucket = store
    assert store.list_all_keys(bucket, limit=0) == []


def test_prefixes_are_listed_one_level_deep(store):
    store, bucket = store
    store.put_many(bucket, {"a/b/1.parquet": b"x", "a/b/2.parquet": b"x", "a/b/c/3.parquet": b"x"})
    assert store.list_names(bucket, ["a/b", "a/none"]) == {"a/b": ["1.parquet", "2.parquet"], "a/none": []}


def test_objects_are_written_whole_also_from_a_thread_running_an_event_loop(store):
    import asyncio

    store, bucket = store
    objects = {f"ticker=T{i}/date=2026-11-24/part-{i}.parquet": bytes([i]) * (i * 1000 + 1) for i in range(20)}

    async def inside_a_loop() -> None:  # as under Playwright's sync API, which runs one in the main thread
        store.put_many(bucket, objects)

    asyncio.run(inside_a_loop())
    assert {key: store.filesystem.cat_file(f"{bucket}/{key}") for key in objects} == objects
