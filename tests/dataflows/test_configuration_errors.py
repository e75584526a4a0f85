"""A dataflow started without the settings it needs stops before connecting, naming the variables."""

import os
import subprocess
import sys

import pytest

SCRUBBED = {k: v for k, v in os.environ.items() if not k.startswith(("S3_", "POSTGRES_", "API_", "KAFKA_"))}


@pytest.mark.parametrize(
    ("module", "expected"),
    [
        ("dataflows.stock_consume", "missing required settings S3_ENDPOINT_URL, S3_ACCESS_KEY, S3_SECRET_KEY"),
        ("dataflows.stock_produce", "missing required settings POSTGRES_HOST, POSTGRES_DB, POSTGRES_USER, POSTGRES_PASSWORD"),
    ],
)
def test_missing_settings_stop_the_dataflow_with_one_clear_line(tmp_path, module, expected):
    result = subprocess.run([sys.executable, "-m", "bytewax.run", module], cwd=tmp_path, env=SCRUBBED,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("marketstream: configuration error: " + expected)
    assert "Traceback" not in result.stderr


def test_malformed_setting_is_named(tmp_path):
    env = {**SCRUBBED, "BATCH_MAX_ROWS": "lots"}
    result = subprocess.run([sys.executable, "-m", "bytewax.run", "dataflows.stock_consume"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "configuration error: invalid setting BATCH_MAX_ROWS" in result.stderr
