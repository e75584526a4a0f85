"""With real-looking secrets set, nothing a dataflow prints, logs or raises contains them."""

import os
import subprocess
import sys

import pytest

from tests.conftest import STACK, STACK_ENV
from fakes.alpaca import FakeAlpacaStream
from fakes.bluesky import FakeBluesky
from fakes.finnhub import FakeFinnhub
from fakes.fred import FakeFred

pytestmark = pytest.mark.integration

SECRETS = {
    "API_SECRET_ALPACA": "Zq8vN2kLmP4xR7tY1wB5cD9fG3hJ6sA0eU2iO8pQ",
    "FINNHUB_API_KEY": "ct4k9mpr01qn8a5bh2fgct4k9mpr01qn8a5bh2g0",
    "API_KEY_FRED": "8f3b2c1d9e7a6b5c4d3e2f1a0b9c8d7e",
    "BLUESKY_PASSWORD": "abcd-efgh-ijkl-mnop",
    "S3_SECRET_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "POSTGRES_PASSWORD": "Pg-S3cr3t-Value-9931",
    "KAFKA_SASL_PASSWORD": "kafka-sasl-secret-4471",
}


def run(module: str, env: dict, tmp_path) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("S3_", "POSTGRES_", "API_", "KAFKA_"))}
    full.update(STACK_ENV)
    full.update({"LOG_LEVEL": "DEBUG", "PRODUCE_FOR_SECONDS": "8", **SECRETS, **env})
    return subprocess.run([sys.executable, "-m", "bytewax.run", module], cwd=tmp_path, env=full,
                          capture_output=True, text=True, timeout=120)


def assert_no_secret(result: subprocess.CompletedProcess, expected: str) -> None:
    output = result.stdout + result.stderr
    assert expected in output, output[-3000:]
    for name, secret in SECRETS.items():
        assert secret not in output, f"{name} leaked"


def test_no_secret_in_the_output_of_failing_producers(stack, tmp_path):
    with FakeAlpacaStream() as alpaca, FakeFred() as fred, FakeFinnhub() as finnhub, FakeBluesky() as bluesky:
        fred.add("GDP", "2026-04-01", "1.0", "2026-07-30")
        companies = {"POSTGRES_PASSWORD": STACK["postgres_password"]}  # these read companies_info for real
        cases = [
            ("dataflows.stock_produce", {"STOCK_SOURCE": "alpaca", "API_KEY_ALPACA": "AKX2M4P6R8T0V2X4Z6B8",
                                         "ALPACA_STREAM_URL": alpaca.url, **companies}, "Alpaca rejected the credentials"),
            ("dataflows.macro_produce", {"FRED_API_URL": fred.root_url, "FRED_SERIES": "gdp:GDP"},
             "FRED rejected API_KEY_FRED"),
            ("dataflows.news_produce", {"FINNHUB_API_URL": finnhub.api_url, **companies},
             "Finnhub rejected FINNHUB_API_KEY"),
            ("dataflows.bluesky_produce", {"BLUESKY_API_URL": bluesky.url, "BLUESKY_IDENTIFIER": "me.bsky.social",
                                           **companies}, "Bluesky rejected BLUESKY_IDENTIFIER / BLUESKY_PASSWORD"),
        ]
        for module, env, expected in cases:
            result = run(module, env, tmp_path)
            assert result.returncode != 0
            assert_no_secret(result, expected)


def test_no_secret_in_the_output_of_a_consumer_whose_store_refuses_it(stack, tmp_path):
    result = run("dataflows.stock_consume", {"KAFKA_STOP_AT_END": "true"}, tmp_path)
    assert result.returncode != 0
    assert_no_secret(result, "check S3_ACCESS_KEY / S3_SECRET_KEY")
