"""A small run of `make bench`, so the harness keeps working. Its figures are not checked: benchmarks
are not tests, and timings on a shared 2-core machine mean little at this size."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import STACK_ENV

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def test_the_benchmark_runs_end_to_end_and_writes_its_results(stack):
    before = set((REPO / "bench" / "results").glob("*.json"))
    result = subprocess.run(
        [sys.executable, "-m", "bench.run", "--trades", "20000", "--tickers", "50", "--naive-rows", "2000",
         "--freshness-seconds", "3", "--freshness-rate", "2000", "--freshness-max-age", "1", "--producer-seconds", "2",
         "--day-tickers", "3", "--day-flushes", "40", "--sentiment-rows", "300",
         "--signals-articles", "500", "--signals-posts", "2000"],
        cwd=REPO, env={**os.environ, **STACK_ENV}, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "| stock_consume / raw" in result.stdout
    written = set((REPO / "bench" / "results").glob("*.json")) - before
    assert len(written) == 1
    results = json.loads(written.pop().read_text())
    try:
        assert results["stock_consume"]["rows"] == 20000
        assert results["floor"]["rows"] == 20000 and results["floor"]["files"] >= 50  # a file per ticker-date at least
        assert results["freshness"]["stored_rows"] > 0 and results["producer"]["messages"] > 0
        assert results["sentiment"]["news"]["decode_rows_per_s_with_sentiment"] > 0 and results["sentiment"]["rows"] == 300
        signals = results["signals"]
        assert signals["rows"] == signals["bars"] > 0 and signals["news_counted"] > 0 and signals["posts_counted"] > 0
        assert results["ratios"]["signals/stock_consume"] > 0 and "| signals_consume trades/s" in result.stdout
        day = results["streamed_day"]
        assert day["written"]["files"] == 120 and day["compaction"]["files_compacted"] >= 120
        assert day["answer"][0] == 40 * 10 + 5_000 // 3 + 1  # ticker T000: its streamed trades and the restart's
    finally:
        for path in set((REPO / "bench" / "results").glob("*.json")) - before:
            path.unlink()
