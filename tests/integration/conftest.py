"""Fixtures of the integration tests."""

import pytest

from marketstream.lake import lake_filesystem
from tests.conftest import make_settings
from tests.integration.processes import kill_leftovers


def pytest_collection_modifyitems(items):
    """Every test here is an integration test, whether or not its module says so: `make test-clock-ahead`
    runs the others under a faked clock, where librdkafka's timed waits never end."""
    for item in items:
        if "tests/integration/" in str(item.path).replace("\\", "/"):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(autouse=True)
def kill_leftover_processes():
    """A test that fails while its consumer is stalled on purpose must not leave that consumer running."""
    yield
    kill_leftovers()


@pytest.fixture
def lake(stack, unique):
    """Settings, a topic of six partitions and a bucket of this test's own; the bucket is removed after."""
    settings = make_settings(kafka_topic_partitions=6)
    topic, bucket = f"it_faults_{unique}", f"it-faults-{unique}"
    yield settings, topic, bucket
    fs = lake_filesystem(settings)
    if fs.exists(bucket):
        fs.rm(bucket, recursive=True)
