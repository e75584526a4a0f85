"""One bucket of the object store through obstore (Rust's object_store, as delta-rs): its client, built from
the s3fs storage options (`Settings.s3_storage_options`), whether the bucket exists, and the first keys it
holds. The writers and the consumers' start-up checks go through here, so a consumer never loads s3fs and
botocore (~38 MB of its RSS) unless it has a bucket to create.

Every call is one request or a few, never retried here (callers own retries). A store that refuses the
credentials raises PermissionError; one that cannot be reached or answers otherwise, ConnectionError; each
with the first line of what the store said, the full text kept as the cause (which
`preflight.object_store_refusal` reads for TLS refusals).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import obstore
from obstore.exceptions import BaseError, PermissionDeniedError, UnauthenticatedError
from obstore.store import S3Store

from marketstream.settings import ConfigError

_PROBE_PREFIX = "_marketstream-probe/"
"""Listed to learn whether a bucket exists: nothing is stored under it, so the answer is one short page."""


def split_location(location: str) -> tuple[str, str]:
    """Where the sinks write, `bucket` or `bucket/folder…` -> (`bucket`, `folder…`, empty for the bucket's root)."""
    bucket, _, folder = location.partition("/")
    return bucket, folder.strip("/")


def s3_store(bucket: str, storage_options: dict) -> S3Store:
    """An obstore client of `bucket`, from the s3fs `storage_options`."""
    client = storage_options.get("client_kwargs", {})
    endpoint = storage_options["endpoint_url"]
    options = {"connect_timeout": "5s", "timeout": "60s", "allow_http": endpoint.startswith("http://")}
    if isinstance(client.get("verify"), str):  # botocore's CA bundle: trusted beside the system's roots
        try:
            options["root_certificate"] = Path(client["verify"]).read_bytes()
        except OSError as exc:
            raise ConfigError(f"S3_CA_BUNDLE {client['verify']}: cannot read it ({exc})") from None
    return S3Store(bucket, endpoint=endpoint, access_key_id=storage_options["key"],
                   secret_access_key=storage_options["secret"], region=client.get("region_name") or "us-east-1",
                   client_options=options, retry_config={"max_retries": 0})  # callers own retries


def bucket_exists(store: S3Store) -> bool:
    """Whether the store holds `store`'s bucket (one LIST request)."""
    try:
        obstore.list_with_delimiter(store, prefix=_PROBE_PREFIX)
        return True
    except BaseError as exc:
        if "<Code>NoSuchBucket</Code>" in str(exc):
            return False
        raise plain_error(exc) from exc


def top_level_prefixes(store: S3Store, folder: str = "") -> list[str]:
    """The names of the folders directly under `folder` of the bucket (its root by default; one LIST request)."""
    try:
        listed = obstore.list_with_delimiter(store, prefix=f"{folder}/" if folder else None)["common_prefixes"]
    except BaseError as exc:
        raise plain_error(exc) from exc
    return [prefix.rstrip("/").rsplit("/", 1)[-1] for prefix in listed]


def first_keys(store: S3Store, limit: int, folder: str = "") -> Iterator[str]:
    """The keys under `folder` of the bucket (all of it by default), relative to it, in the store's order, at
    most `limit` of them."""
    seen, cut = 0, len(folder) + 1 if folder else 0
    try:
        for chunk in obstore.list(store, prefix=f"{folder}/" if folder else None, chunk_size=1000):
            for meta in chunk:
                if seen == limit:
                    return
                seen += 1
                yield meta["path"][cut:]
    except BaseError as exc:
        raise plain_error(exc) from exc


def _refused(exc: BaseException) -> bool:
    """Whether an obstore error is the store refusing the credentials (not worth retrying)."""
    text = str(exc)
    return (isinstance(exc, (PermissionDeniedError, UnauthenticatedError))
            or "status code: 403" in text or "status code: 401" in text)


def plain_error(exc: BaseError) -> Exception:
    """An obstore error as PermissionError (credentials refused) or ConnectionError, with its first line."""
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return PermissionError(first) if _refused(exc) else ConnectionError(first)
