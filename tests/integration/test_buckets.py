"""A bucket through obstore on the real MinIO (`marketstream.buckets`), the consumers' start-up checks made
with it (`marketstream.preflight`), and a consumer's process never loading s3fs and botocore for them."""

import json
import subprocess
import sys

import pyarrow as pa
import pytest

from marketstream import buckets, preflight
from marketstream.settings import ConfigError
from pipelines.runtime import consumer_needs
from sinks.object_store import ObjectStore
from tests.conftest import make_settings
from tests.integration.private_servers import REPO

pytestmark = pytest.mark.integration


@pytest.fixture
def bucket(stack, unique):
    store = ObjectStore(make_settings().s3_storage_options())
    name = f"it-buckets-{unique}"
    yield store, name
    if store.filesystem.exists(name):
        store.filesystem.rm(name, recursive=True)


def _client(name: str, **changes):
    return buckets.s3_store(name, {**make_settings().s3_storage_options(), **changes})


def test_a_bucket_is_found_or_not_and_its_first_keys_and_folders_are_listed(bucket):
    store, name = bucket
    assert not buckets.bucket_exists(_client(name))
    store.ensure_bucket(name)
    assert buckets.bucket_exists(_client(name))
    keys = [f"ticker=T{i:02d}/date=2026-11-24/part-{i}.parquet" for i in range(12)] + ["_delta_log/0.json", "top"]
    store.put_many(name, {key: b"x" for key in keys})
    assert list(buckets.first_keys(_client(name), 5)) == sorted(keys)[:5]
    assert sorted(buckets.first_keys(_client(name), 100)) == sorted(keys)
    assert sorted(buckets.top_level_prefixes(_client(name))) == sorted({key.split("/")[0] for key in keys if "/" in key})


def test_a_location_in_a_bucket_is_created_written_and_checked_under_its_folder(bucket):
    """The sinks take `bucket/folder` where tables live in a folder of a bucket (found by the fresh-clone CI:
    a LIST for `bucket/folder` as if it were a bucket was retried forever)."""
    store, name = bucket
    store.ensure_bucket(f"{name}/news")
    assert buckets.bucket_exists(_client(name))
    store.put_many(f"{name}/news", {"ticker=A/part-0.parquet": b"x", "_delta_log/0.json": b"{}"})
    assert sorted(store.filesystem.find(name)) == [f"{name}/news/_delta_log/0.json", f"{name}/news/ticker=A/part-0.parquet"]
    assert sorted(buckets.first_keys(_client(name), 10, "news")) == ["_delta_log/0.json", "ticker=A/part-0.parquet"]
    assert sorted(buckets.top_level_prefixes(_client(name), "news")) == ["_delta_log", "ticker=A"]
    assert buckets.top_level_prefixes(_client(name)) == ["news"]
    preflight.lake_format_of(f"{name}/news")(make_settings(lake_format="delta"))
    with pytest.raises(ConfigError, match=f"bucket {name}/news holds a Delta table"):
        preflight.lake_format_of(f"{name}/news")(make_settings(lake_format="parquet"))
    store.put(f"{name}/bluesky", "date=2026-11-24/keyword=x/part-0.parquet", b"x")
    with pytest.raises(ConfigError, match=f"bucket {name}/bluesky holds plain Parquet files"):
        preflight.lake_format_of(f"{name}/bluesky")(make_settings(lake_format="delta"))
    preflight.lake_format_of(f"{name}/empty")(make_settings(lake_format="delta"))


def test_a_refused_secret_is_a_permission_error_and_a_closed_port_a_connection_error(bucket):
    _, name = bucket
    with pytest.raises(PermissionError, match="403"):
        buckets.bucket_exists(_client(name, secret="not-the-secret-42"))
    with pytest.raises(ConnectionError, match="error sending request"):
        buckets.bucket_exists(_client(name, endpoint_url="http://127.0.0.1:1"))
    with pytest.raises(ConfigError, match="S3_CA_BUNDLE /nonexistent/ca.pem: cannot read it"):
        _client(name, client_kwargs={"verify": "/nonexistent/ca.pem"})


def test_the_lake_format_check_refuses_a_mix_and_names_the_setting(bucket):
    store, name = bucket
    check = preflight.lake_format_of(name)
    check(make_settings(lake_format="delta"))  # no bucket yet: nothing to mix with
    store.ensure_bucket(name)
    check(make_settings(lake_format="parquet"))
    store.put(name, "ticker=AAPL/date=2026-11-24/part-0.parquet", b"x")
    check(make_settings(lake_format="parquet"))
    with pytest.raises(ConfigError, match="holds plain Parquet files and no Delta table .LAKE_FORMAT=delta."):
        check(make_settings(lake_format="delta"))
    store.put(name, "_delta_log/00000000000000000000.json", b"{}")
    check(make_settings(lake_format="delta"))
    with pytest.raises(ConfigError, match="holds a Delta table .LAKE_FORMAT=parquet.: set LAKE_FORMAT=delta"):
        check(make_settings(lake_format="parquet"))


def test_the_checks_say_refused_credentials_as_a_setting_and_wait_for_a_store_away(bucket):
    _, name = bucket
    for check in (preflight.lake_format_of(name), preflight.object_store_for(lambda settings: name)):
        with pytest.raises(ConfigError, match="refused the credentials: check S3_ACCESS_KEY / S3_SECRET_KEY"):
            check(make_settings(s3_secret_key="not-the-secret-42"))
        with pytest.raises(preflight.Unreachable, match=r"http://127.0.0.1:1 \(S3_ENDPOINT_URL\)"):
            check(make_settings(s3_endpoint_url="http://127.0.0.1:1"))
        plain = make_settings().s3_endpoint_url
        with pytest.raises(ConfigError, match="answers in plain HTTP: check the scheme of S3_ENDPOINT_URL"):
            check(make_settings(s3_endpoint_url=plain.replace("http://", "https://")))


_WHAT_A_CONSUMER_LOADS = """
import json, sys
from marketstream import preflight
from pipelines.runtime import consumer_needs
from sinks.object_store import ObjectStore
from tests.conftest import make_settings
import dataflows.stock_consume, dataflows.bars_consume
settings = make_settings()
preflight.wait_for(settings, consumer_needs(sys.argv[1]))
ObjectStore(settings.s3_storage_options()).ensure_bucket(sys.argv[1])
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ("s3fs", "botocore", "aiobotocore"))))
"""


def test_a_consumer_starting_on_its_bucket_never_loads_s3fs_and_creates_a_missing_one_with_it(bucket):
    store, name = bucket

    def loaded() -> list[str]:
        done = subprocess.run([sys.executable, "-c", _WHAT_A_CONSUMER_LOADS, name], cwd=REPO, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout.splitlines()[-1])

    assert "s3fs" in loaded()  # the bucket was missing: created through s3fs
    assert store.filesystem.exists(name)
    assert loaded() == []
    preflight.wait_for(make_settings(), consumer_needs(name))


@pytest.mark.parametrize("folder", ["", "_synthetic"])
def test_the_bars_flow_refuses_a_bars_bucket_holding_a_table_of_other_data_and_takes_its_own(bucket, folder):
    """Seen in the bench: a bars bucket holding a trades table made bars_consume retry reading it forever."""
    from deltalake import DeltaTable

    from marketstream.datasets import STOCK
    from pipelines.bars import BARS_NEEDS
    from sinks.bars_table import PARTITION_BY, TABLE_SCHEMA

    store, name = bucket
    settings = make_settings(bars_bucket=name)
    preflight.wait_for(settings, BARS_NEEDS)  # no bucket yet: the flow creates it
    store.ensure_bucket(name)
    store.put_many(name, {f"{folder}/_delta_log/_commit_being_written.json.tmp".lstrip("/"): b"{}"})
    preflight.wait_for(settings, BARS_NEEDS)  # a log without a commit yet: a table being created, taken
    uri = f"s3://{name}/{folder}".rstrip("/")
    DeltaTable.create(uri, TABLE_SCHEMA, partition_by=PARTITION_BY, storage_options=settings.delta_storage_options())
    preflight.wait_for(settings, BARS_NEEDS)  # a bars table: taken
    store.filesystem.rm(name, recursive=True)
    store.ensure_bucket(name)
    trades = f"s3://{name}/{folder}".rstrip("/")
    DeltaTable.create(trades, pa.schema([*STOCK.partitioning, *STOCK.schema]), partition_by=STOCK.partitioning.names,
                      storage_options=settings.delta_storage_options())
    location = f"{name}/{folder}".rstrip("/")
    with pytest.raises(ConfigError, match=rf"^{location} holds a Delta table of other data \(partitioned by ticker, "
                                          r"date; without minute, open, high, low\), not a bars table: set "
                                          r"BARS_BUCKET to a bucket of its own$"):
        preflight.wait_for(settings, BARS_NEEDS)


def test_the_signals_flow_refuses_a_signals_bucket_holding_the_bars(bucket):
    from deltalake import DeltaTable

    from pipelines.signals import SIGNALS_NEEDS
    from sinks.bars_table import PARTITION_BY, TABLE_SCHEMA

    store, name = bucket
    settings = make_settings(signals_bucket=name)
    store.ensure_bucket(name)
    DeltaTable.create(f"s3://{name}", TABLE_SCHEMA, partition_by=PARTITION_BY, storage_options=settings.delta_storage_options())
    with pytest.raises(ConfigError, match=rf"^{name} holds a Delta table of other data \(partitioned by ticker, date; "
                                          r"without news_count, posts_count, news_count_15m, posts_count_15m\), not a "
                                          r"signals table: set SIGNALS_BUCKET to a bucket of its own$"):
        preflight.wait_for(settings, SIGNALS_NEEDS)
