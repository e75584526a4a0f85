"""The lake's destination: an S3-compatible object store (MinIO). Objects are written through obstore (Rust's
object_store crate, as delta-rs; signing and HTTP off the GIL, a fifth of s3fs's CPU per PUT); a bucket is
found through obstore too (`marketstream.buckets`), and only created, listed by folder or read through s3fs,
which is loaded the first time one of those is needed.

Each object is written with one PUT of its complete bytes, so a reader sees either the whole file or none
of it; there are no partial files to clean up after a crash. While the store is unreachable or failing,
`put` retries with capped exponential backoff and does not return, so the dataflow waits (backpressure)
instead of dropping data. Rejected credentials are not transient and raise at once. An outage is logged
as two lines (`marketstream.outages`): when the first attempt fails and when one succeeds again.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import obstore
from obstore.exceptions import BaseError
from obstore.store import S3Store

from marketstream.buckets import bucket_exists, plain_error, s3_store, split_location
from marketstream.outages import Backoff, retry

if TYPE_CHECKING:
    import s3fs

log = logging.getLogger(__name__)

PUTS_AT_ONCE = 8
"""Concurrent PUTs of one object store client: each in flight holds a connection and a copy of its bytes."""


class ObjectStore:
    """`storage_options`: keyword arguments for `s3fs.S3FileSystem` (key, secret, endpoint_url, ...);
    `retry_max_seconds`: the longest pause between two attempts."""

    def __init__(self, storage_options: dict, *, retry_max_seconds: float = 30.0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._fs: s3fs.S3FileSystem | None = None
        self._fs_lock = threading.Lock()
        self._storage_options = storage_options
        self._writers: dict[str, S3Store] = {}
        self._writers_lock = threading.Lock()
        self._puts = ThreadPoolExecutor(PUTS_AT_ONCE, thread_name_prefix="object-store-put")
        self._max_backoff = retry_max_seconds
        self._sleep = sleep

    @property
    def filesystem(self) -> s3fs.S3FileSystem:
        """The s3fs client, made (and s3fs loaded) on first use."""
        with self._fs_lock:
            if self._fs is None:
                import s3fs

                self._fs = s3fs.S3FileSystem(
                    **self._storage_options,
                    skip_instance_cache=True,
                    use_listings_cache=False,  # listings are read once per prefix; keeping them only costs memory
                    # botocore's default CRC32 of every upload runs in Python on the event loop's thread and holds
                    # the GIL the decoder needs; S3 and MinIO check the PUT by its signed payload hash anyway
                    config_kwargs={"connect_timeout": 5, "read_timeout": 60, "retries": {"max_attempts": 1},
                                   "request_checksum_calculation": "when_required"},
                )
                self._fs.retries = 1  # `_retrying` below owns retries, with backoff and logging
            return self._fs

    def _retrying(self, what: str, action: Callable[[], object]) -> object:
        def refusal(error: Exception) -> Exception | None:
            if isinstance(error, PermissionError):
                return PermissionError(f"object store refused {what}: check S3_ACCESS_KEY / S3_SECRET_KEY ({error})")
            return None

        return retry(what, action,
                     Backoff("object store", "object_store", longest=self._max_backoff, sleep=self._sleep), refusal)

    def ensure_bucket(self, location: str) -> None:
        """Create the bucket of `location` (`bucket` or `bucket/folder…`) if it does not exist."""
        bucket, _ = split_location(location)
        writer = self._writer(bucket)

        def create() -> None:
            if bucket_exists(writer):
                return
            try:
                self.filesystem.mkdir(bucket)
                log.info("object store: created bucket %s", bucket)
            except FileExistsError:
                pass  # it exists, possibly created by another worker a moment ago

        self._retrying(f"creating bucket {bucket}", create)

    def list_names(self, bucket: str, prefixes: list[str]) -> dict[str, list[str]]:
        """Object names directly under each `bucket/prefix`, listed concurrently (empty where none)."""

        async def names(prefix: str) -> list[str]:
            # one LIST request: `_ls` would list the parent as well whenever the prefix is empty
            listed = await fs._lsdir(f"{bucket}/{prefix}".rstrip("/"), refresh=True)
            return [entry["name"].rsplit("/", 1)[-1] for entry in listed if entry["type"] == "file"]

        async def everything() -> list[list[str]]:
            return await asyncio.gather(*(names(prefix) for prefix in prefixes))

        fs = self.filesystem
        listed = self._retrying(f"listing {len(prefixes)} prefixes of s3://{bucket}", lambda: _run(fs, everything))
        return dict(zip(prefixes, listed))

    def list_all_keys(self, bucket: str, limit: int, page_size: int = 1000) -> list[str] | None:
        """The key of every object in `bucket`, or None if it holds more than `limit` (the listing stops
        there: a page of up to `page_size` keys per request)."""

        async def everything() -> list[str] | None:
            keys: list[str] = []
            page = {"Bucket": bucket, "MaxKeys": page_size}
            while True:
                listed = await fs._call_s3("list_objects_v2", **page)
                keys.extend(entry["Key"] for entry in listed.get("Contents", ()))
                if len(keys) > limit:
                    return None
                if not listed.get("IsTruncated"):
                    return keys
                page["ContinuationToken"] = listed["NextContinuationToken"]

        fs = self.filesystem
        return self._retrying(f"listing s3://{bucket}", lambda: _run(fs, everything))

    def put(self, bucket: str, key: str, data: bytes) -> None:
        self.put_many(bucket, {key: data})

    def put_many(self, location: str, objects: dict[str, bytes]) -> None:
        """Write several objects under `location` (`bucket` or `bucket/folder…`) concurrently, each with one
        PUT; retried as a whole (rewrites are idempotent) until every one is stored."""
        if objects:
            first = next(iter(objects))
            what = f"writing s3://{location}/{first}" + (f" and {len(objects) - 1} more" if len(objects) > 1 else "")
            bucket, folder = split_location(location)
            if folder:
                objects = {f"{folder}/{key}": data for key, data in objects.items()}
            writer = self._writer(bucket)
            self._retrying(what, lambda: _put_all(writer, objects, self._puts))

    def _writer(self, bucket: str) -> S3Store:
        with self._writers_lock:
            if bucket not in self._writers:
                self._writers[bucket] = s3_store(bucket, self._storage_options)
            return self._writers[bucket]


def _run(fs: s3fs.S3FileSystem, coroutine: Callable) -> object:
    import fsspec.asyn

    return fsspec.asyn.sync(fs.loop, coroutine)


def _put_all(writer: S3Store, objects: dict[str, bytes], puts: ThreadPoolExecutor) -> None:
    # obstore's blocking call on a pool, not its asyncio one: a caller may already run an event loop
    # (Playwright's sync API does), where `asyncio.run` is refused
    try:
        for _ in puts.map(lambda item: obstore.put(writer, *item), objects.items()):
            pass
    except BaseError as exc:  # a refusal becomes the PermissionError `_retrying` knows; the rest is retried
        raise plain_error(exc) from None
