"""`marketstream sql` and `marketstream maintain` over Delta tables written by a real consumer."""

import io
import os
import subprocess
import sys
from datetime import date

import pytest
from deltalake import DeltaTable

from pipelines.cli import maintain, sql
from tests.integration.kafka_helpers import produce
from tests.conftest import STACK_ENV
from tests.integration.test_fault_tolerance import consumer, trade

pytestmark = pytest.mark.integration


def answer(settings, query: str, tables: dict[str, str], **options) -> str:
    out = io.StringIO()
    assert sql(settings, query, tables, out=out, **options) == 0
    return out.getvalue()


def test_sql_answers_over_the_tables_and_travels_back_to_an_earlier_version(lake):
    settings, topic, bucket = lake
    tables = {"stock": f"s3://{bucket}", "stock_synthetic": f"s3://{bucket}/_synthetic"}
    produce(settings, topic, [trade(i) for i in range(600)])
    assert consumer(topic, bucket, lake_format="delta").wait(120) == 0
    first = answer(settings, "SELECT count(*) AS n FROM stock", tables)
    assert first.split() == ["n", "600"]
    after_first = DeltaTable(f"s3://{bucket}", storage_options=settings.delta_storage_options()).version()

    produce(settings, topic, [trade(i) for i in range(600, 1000)])
    assert consumer(topic, bucket, lake_format="delta").wait(120) == 0
    by_day = answer(settings, "SELECT date, count(*) AS n FROM stock GROUP BY date ORDER BY date", tables)
    assert by_day.split()[2:] == ["2026-11-23", "334", "2026-11-24", "333", "2026-11-25", "333"]
    assert answer(settings, "SELECT count(*) AS n FROM stock", tables, versions=[f"stock={after_first}"]).split() == [
        "n", "600"]

    maintain(settings, tables, vacuum=False, today=date(2026, 11, 26))
    assert answer(settings, "SELECT count(DISTINCT trade_id) AS n FROM stock", tables).split() == ["n", "1000"]


def test_a_wrong_query_ends_with_one_line(stack, tmp_path):
    done = subprocess.run([sys.executable, "-m", "pipelines.cli", "sql", "SELEC nonsense"], cwd=tmp_path,
                          env={**os.environ, **STACK_ENV}, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert done.stderr.startswith("marketstream sql:")
