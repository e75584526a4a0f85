"""The Grafana dashboard against a real Prometheus: the stack's monitoring profile (`stack/monitoring.sh`,
Debian's `prometheus`) started with the project's scrape configuration (`monitoring/prometheus.yml`, its
targets and interval changed to this test's ports and 1 s), scraping running dataflows — `stock_produce`
(synthetic trades), `stock_consume`, `bars_consume` and `news_produce` against a fake Finnhub that answers
one 429 — on a Kafka and a MinIO of the test's own, with dead letters and trades outside the session
produced among them, a trade of a minute whose bar was written already (late), and the store stopped for a
few seconds (retries). Then every PromQL expression of the dashboard is evaluated by that Prometheus and
must return data, and every dataflow must be `up`.

Minutes long: marker `monitoring`, outside `make test` (`make test-monitoring`).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson
import pytest

from fakes.finnhub import FakeFinnhub
from fakes.http import Reply
from marketstream.datasets import NEWS, STOCK
from tests.conftest import STACK_ENV, make_settings
from tests.integration.kafka_helpers import produce
from tests.integration.private_lake import started_minio
from tests.integration.private_servers import PrivateKafka, free_port
from tests.integration.processes import logged

pytestmark = [pytest.mark.integration, pytest.mark.monitoring]

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "monitoring" / "grafana" / "dashboards" / "marketstream.json"
FLOWS = ("stock_produce", "stock_consume", "bars_consume", "news_produce")


def expressions() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [target["expr"] for panel in panels for target in panel.get("targets", []) if target.get("expr")]


def scrape_configuration(ports: list[int]) -> str:
    """monitoring/prometheus.yml with this test's targets, scraped every second."""
    text = (REPO / "monitoring" / "prometheus.yml").read_text()
    text = re.sub(r"scrape_interval: \S+", "scrape_interval: 1s", text)
    targets = ", ".join(f'"127.0.0.1:{port}"' for port in ports)
    changed, count = re.subn(r"targets: \[[^\]]*\]", f"targets: [{targets}]", text)
    assert count == 1, "monitoring/prometheus.yml has one target list"
    return changed


def query(port: int, expression: str) -> list:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expression})
    answer = json.loads(urllib.request.urlopen(url, timeout=10).read())
    assert answer["status"] == "success", answer
    return answer["data"]["result"]


def trade(symbol: str, moment: datetime, trade_id: str, source: str = "synthetic") -> tuple[bytes, bytes]:
    return symbol.encode(), orjson.dumps({
        "symbol": symbol, "price": 100.5, "size": 10, "timestamp": moment.isoformat().replace("+00:00", "Z"),
        "exchange": "V", "conditions": ["@"], "trade_id": trade_id, "tape": "C", "source": source})


@pytest.fixture
def prometheus(tmp_path):
    """Starts with `start(ports)`; stopped after the test."""
    port = free_port()
    env = {**os.environ, "STACK_DIR": str(tmp_path / "stack"), "PROMETHEUS_PORT": str(port),
           "PROMETHEUS_CONFIG": str(tmp_path / "prometheus.yml")}

    def start(ports: list[int]) -> int:
        (tmp_path / "prometheus.yml").write_text(scrape_configuration(ports))
        subprocess.run([REPO / "stack" / "monitoring.sh", "up"], env=env, check=True, timeout=300)
        return port

    yield start
    subprocess.run([REPO / "stack" / "monitoring.sh", "down"], env=env, check=False, timeout=60)


def test_every_expression_of_the_dashboard_returns_data_from_running_dataflows(prometheus, tmp_path, stack):
    kafka = PrivateKafka(tmp_path / "kafka")
    kafka.start()
    minio, settings = started_minio(tmp_path / "minio", ())
    settings = settings.model_copy(update={"kafka_bootstrap_servers": kafka.bootstrap})
    ports = [free_port() for _ in FLOWS]
    port = prometheus(ports)
    processes = []
    try:
        with FakeFinnhub() as finnhub:
            now = datetime.now(timezone.utc)
            finnhub.publish("AAPL", 1, now - timedelta(hours=1), "A headline")
            finnhub.faults.append(Reply(429, {"error": "API limit reached"}, {"Retry-After": "1"}))
            env = {**os.environ, **STACK_ENV, "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap,
                   **{name.upper(): str(value) for name, value in minio.settings.items()},
                   "STOCK_SOURCE": "synthetic", "SYNTHETIC_TRADES_PER_SECOND": "2", "BATCH_MAX_AGE_SECONDS": "1",
                   "FINNHUB_API_KEY": finnhub.token, "FINNHUB_API_URL": finnhub.api_url, "NEWS_POLL_SECONDS": "2",
                   "METRICS_ADDRESS": "127.0.0.1", "LOG_LEVEL": "WARNING"}
            for flow, metrics_port in zip(FLOWS, ports):
                processes.append(logged([sys.executable, "-m", "bytewax.run", f"dataflows.{flow}"], cwd=REPO,
                                        env={**env, "METRICS_PORT": str(metrics_port)}))
            settings.kafka_cluster().ensure_topics([STOCK.topic, NEWS.topic])
            night = datetime(2026, 11, 24, 3, 0, tzinfo=timezone.utc)
            produce(settings, STOCK.topic, [(b"AAPL", b"not json"), (b"AAPL", b'{"symbol": "AAPL", "price": -1}')]
                    + [trade("AAPL", night, f"night-{i}", source="alpaca") for i in range(3)])
            # a trade of a minute long past: its window opens and closes at once; another of the same minute
            # a little later finds it closed: a late trade, folded in by a correction
            past = datetime.now(timezone.utc).replace(second=10, microsecond=0) - timedelta(minutes=10)
            produce(settings, STOCK.topic, [trade("LATE", past, "late-1")])
            time.sleep(8)  # a few scrapes of each
            produce(settings, STOCK.topic, [trade("LATE", past + timedelta(seconds=20), "late-2")])
            minio.stop()  # uploads fail and are tried again
            time.sleep(4)
            minio.start()
            deadline = time.monotonic() + 90
            missing = expressions()
            while missing and time.monotonic() < deadline:
                for process, flow in zip(processes, FLOWS):
                    assert process.poll() is None or flow == "news_produce", (flow, process.log)
                missing = [expression for expression in missing if not query(port, expression)]
                time.sleep(2)
            assert not missing, f"no data: {missing}"
            up = query(port, "up")
            assert sorted(sample["metric"]["instance"] for sample in up if sample["value"][1] == "1") == sorted(
                f"127.0.0.1:{p}" for p in ports)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(60)
        minio.stop()
        kafka.stop()
