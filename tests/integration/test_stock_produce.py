"""stock_produce against real PostgreSQL and Kafka, with Alpaca played by a local fake server."""

import threading
import time
from datetime import datetime, timezone

import orjson
import psycopg
import pytest
from bytewax.testing import run_main

from dataflows.stock_produce import build_flow
from marketstream.companies import load_companies
from marketstream.trades import parse_trade
from pipelines.api_sources import company_directory
from tests.conftest import make_settings
from fakes.alpaca import FakeAlpacaStream
from tests.integration.kafka_helpers import read_topic

pytestmark = pytest.mark.integration


def test_companies_are_read_from_postgres(stack):
    companies = {c.ticker: c for c in load_companies(make_settings().postgres_connect_kwargs())}
    assert len(companies) >= 30
    assert companies["AAPL"].company_name == "Apple"
    assert "iPhone" in companies["AAPL"].related_words


def test_a_company_added_or_removed_takes_effect_without_restart(stack):
    settings = make_settings(tickers_refresh_seconds=0.01)
    directory = company_directory(settings)
    assert "ZZTST" not in directory.tickers()
    with psycopg.connect(**settings.postgres_connect_kwargs(), autocommit=True) as conn:
        conn.execute("INSERT INTO companies_info VALUES (%s, %s, %s)", ("ZZTST", "Test Co; DROP TABLE x", ["t'1"]))
        try:
            time.sleep(0.02)
            assert "ZZTST" in directory.tickers()
        finally:
            conn.execute("DELETE FROM companies_info WHERE ticker = %s", ("ZZTST",))
    time.sleep(0.02)
    assert "ZZTST" not in directory.tickers()


def test_synthetic_trades_for_every_company_reach_kafka(stack, unique):
    settings = make_settings(stock_source="synthetic", synthetic_trades_per_second=5, produce_for_seconds=3)
    topic = f"it_produce_{unique}"
    run_main(build_flow(settings, topic=topic))
    messages = read_topic(settings, topic)
    tickers = {c.ticker for c in load_companies(settings.postgres_connect_kwargs())}
    assert len(messages) >= len(tickers) * 5  # ~3 s at 5 trades/s/ticker, allowing for start-up
    assert {m.key().decode() for m in messages} == tickers
    rows = [parse_trade(m.value()) for m in messages]
    assert all(r["source"] == "synthetic" and r["ticker"] == m.key().decode() for r, m in zip(rows, messages))
    assert len({r["trade_id"] for r in rows}) == len(rows)


def test_alpaca_live_trades_reach_kafka(stack, unique):
    topic = f"it_alpaca_{unique}"
    with FakeAlpacaStream(key="test-key", secret="test-secret") as fake:
        settings = make_settings(stock_source="alpaca", api_key_alpaca="test-key", api_secret_alpaca="test-secret",
                                 alpaca_stream_url=fake.url, produce_for_seconds=6)

        def publish_when_subscribed():
            deadline = time.monotonic() + 5
            while not fake.subscribed and time.monotonic() < deadline:
                time.sleep(0.05)
            for i in range(20):
                fake.publish("AAPL" if i % 2 else "MSFT", 1000 + i, 190.0 + i / 100, 100, datetime.now(timezone.utc))

        publisher = threading.Thread(target=publish_when_subscribed)
        publisher.start()
        run_main(build_flow(settings, topic=topic))
        publisher.join()
        assert "AAPL" in fake.subscribed and len(fake.subscribed) >= 30

    rows = [orjson.loads(m.value()) for m in read_topic(settings, topic)]
    assert sorted(r["trade_id"] for r in rows) == [str(1000 + i) for i in range(20)]
    assert {r["source"] for r in rows} == {"alpaca"}
    assert all(parse_trade(orjson.dumps(r))["exchange"] == "V" for r in rows)


def test_rejected_alpaca_credentials_stop_with_a_clear_error_and_no_reconnect_loop(stack, unique):
    with FakeAlpacaStream(key="right", secret="right") as fake:
        settings = make_settings(stock_source="alpaca", api_key_alpaca="wrong", api_secret_alpaca="wrong-secret-123",
                                 alpaca_stream_url=fake.url, produce_for_seconds=20)
        started = time.monotonic()
        with pytest.raises(Exception) as error:
            run_main(build_flow(settings, topic=f"it_alpaca_bad_{unique}"))
        assert time.monotonic() - started < 15
        chain, cause = [], error.value
        while cause is not None:
            chain.append(str(cause))
            cause = cause.__cause__
        message = " | ".join(chain)
        assert "Alpaca rejected the credentials in API_KEY_ALPACA / API_SECRET_ALPACA: auth failed" in message
        assert "wrong-secret-123" not in message
        time.sleep(2)
        assert fake.auth_attempts == 1


def test_a_producer_restarted_with_recovery_does_not_republish(stack, unique, tmp_path):
    import subprocess
    import sys

    from fakes.fred import FakeFred

    topic = f"it_macro_recovery_{unique}"
    recovery = tmp_path / "recovery"
    recovery.mkdir()
    subprocess.run([sys.executable, "-m", "bytewax.recovery", str(recovery), "1"], check=True)
    with FakeFred() as fred:
        fred.add("GDP", "2026-01-01", "30000.0", "2026-04-30")
        fred.add("GDP", "2026-04-01", "31000.5", "2026-07-30")

        def run_producer():
            factory = (f"tests.integration.flows:macro_produce({topic!r}, api_key_fred='fred-test-key', "
                       f"fred_api_url={fred.root_url!r}, fred_series='gdp:GDP', produce_for_seconds=2)")
            subprocess.run([sys.executable, "-m", "bytewax.run", factory, "-r", str(recovery), "-s", "1", "-b", "0"],
                           check=True, capture_output=True, timeout=120)

        run_producer()
        assert len(read_topic(make_settings(), topic)) == 2
        run_producer()
        assert len(read_topic(make_settings(), topic)) == 2  # history not published again
        fred.revise("GDP", "2026-04-01", "31100.0", on="2026-11-25")
        run_producer()
    messages = read_topic(make_settings(), topic)
    assert len(messages) == 3
    assert orjson.loads(messages[-1].value())["value"] == 31100.0


def test_a_message_kafka_refuses_is_raised_not_dropped(stack, unique):
    import os

    from bytewax.connectors.kafka import KafkaSinkMessage
    from confluent_kafka.admin import AdminClient, NewTopic

    from prometheus_client import REGISTRY

    from sinks.kafka_producer import DeliveryError, KafkaProducerSink

    settings = make_settings()
    topic = f"it_refuse_{unique}"
    admin = AdminClient(settings.kafka_client_config())
    admin.create_topics([NewTopic(topic, 1, 1, config={"max.message.bytes": "2000"})])[topic].result()
    sink = KafkaProducerSink(settings.kafka_cluster(), topic).build("out", 0, 1)
    sink.write_batch([KafkaSinkMessage(b"k", b"small")])
    with pytest.raises(DeliveryError, match="1 message\\(s\\) not delivered"):
        sink.write_batch([KafkaSinkMessage(b"k", os.urandom(10_000))])  # incompressible
    assert [m.value() for m in read_topic(settings, topic)] == [b"small"]
    # what the metrics say: one published, one refused
    assert REGISTRY.get_sample_value("marketstream_messages_published_total", {"topic": topic}) == 1
    assert REGISTRY.get_sample_value("marketstream_delivery_failures_total", {"topic": topic}) == 1
