"""Historical backfill against local fakes of Alpaca's and Finnhub's REST APIs (the real clients), into Delta
tables in the real MinIO: same contract and calendar rule as live data, idempotent, resumable."""

from collections import Counter
from datetime import date, datetime, timedelta, timezone

import pytest
from deltalake import DeltaTable

import sources.alpaca_history as alpaca_history
from marketstream.trades import Trade
from pipelines import backfill
from pipelines.connectors import shared_object_store
from pipelines.progress import Progress
from sources.alpaca_history import AlpacaTradeHistory
from sources.finnhub_news import FinnhubNews, FinnhubNewsHistory
from sources.pacing import GaveUp
from fakes.alpaca_rest import FakeAlpacaHistory
from fakes.finnhub import FakeFinnhub
from fakes.http import Reply
from tests.integration.kafka_helpers import produce
from tests.integration.test_fault_tolerance import consumer, log_of
from tests.sources.clock import InstantClock

TODAY = date(2026, 11, 25)
UTC = timezone.utc


def quiet_progress(what: str) -> Progress:
    import io

    return Progress(what, 0, "ticker-days", out=io.StringIO(), tty=False)


def history(fake, clock: InstantClock) -> AlpacaTradeHistory:
    return AlpacaTradeHistory(fake.key, fake.secret, url_override=fake.url, requests_per_minute=1e9, clock=clock)


def table_rows(settings, bucket) -> list[dict]:
    table = DeltaTable(f"s3://{bucket}", storage_options=settings.delta_storage_options()).to_pyarrow_table()
    return table.select(["ticker", "date", "trade_id", "price", "source", "kafka_offset"]).to_pylist()


def test_trades_backfill_stores_each_session_trade_once_skips_what_is_done_and_resumes(lake, monkeypatch):
    settings, topic, bucket = lake
    monkeypatch.setattr(alpaca_history, "PAGE_SIZE", 7)  # many pages per window
    options, uri = settings.delta_storage_options(), f"s3://{bucket}"
    store = shared_object_store(settings)()
    with FakeAlpacaHistory() as fake:
        expected = set()
        for ticker in ("AAA", "BBB"):
            for day in (date(2026, 11, 20), date(2026, 11, 23), date(2026, 11, 24)):
                opening = datetime.combine(day, datetime.min.time(), UTC) + timedelta(hours=14, minutes=30)
                for i in range(30):  # every 13 minutes from the open: spans several hourly windows
                    trade_id = int(f"{day:%m%d}{i:03d}")
                    fake.add(ticker, trade_id, opening + timedelta(minutes=13 * i), price=100 + i)
                    expected.add((ticker, day, str(trade_id)))
                fake.add(ticker, 1, opening - timedelta(hours=2))  # pre-market: outside the session
                fake.add(ticker, 2, opening + timedelta(minutes=5), price=-1.0)  # refused by the contract
        # a burst of ten trades in one window: more than a page
        for i in range(10):
            fake.add("AAA", 5000 + i, datetime(2026, 11, 23, 15, 0, i, tzinfo=UTC))
            expected.add(("AAA", date(2026, 11, 23), str(5000 + i)))
        # the boundary of two hourly windows: fetched once
        boundary = datetime(2026, 11, 23, 15, 30, tzinfo=UTC)
        fake.add("AAA", 99, boundary)
        expected.add(("AAA", date(2026, 11, 23), "99"))
        # a trade the live consumer already stored, with the id Alpaca gives it in both feeds
        live = Trade("AAA", 100.0, 10, datetime(2026, 11, 24, 14, 30, tzinfo=UTC), "1124000", "alpaca", "V", ("@",), "C")
        produce(settings, topic, [(b"AAA", live.to_json())])
        process = consumer(topic, bucket)
        assert process.wait(120) == 0, log_of(process)[-2000:]
        # Alpaca's rate limit, once, and a server error that outlasts the patience for BBB: the run stops there
        fake.faults.append(Reply(429, {"message": "too many requests"}, headers={"Retry-After": "7"}))
        clock = InstantClock()
        original = fake.route

        def failing_for_bbb(method, path, query, headers, body):
            if query.get("symbols") == "BBB":
                return Reply(500, {"message": "internal"})
            return original(method, path, query, headers, body)

        fake.route = failing_for_bbb
        with pytest.raises(GaveUp, match="500"):
            backfill.backfill_trades(history(fake, clock), ["AAA", "BBB"], date(2026, 11, 20), date(2026, 11, 24),
                                     store=store, bucket=bucket, storage_options=options, today=TODAY, progress=quiet_progress("t"))
        assert 7.0 in clock.sleeps, "the Retry-After was honoured"
        fake.route = original

        report = backfill.backfill_trades(history(fake, InstantClock()), ["AAA", "BBB"], date(2026, 11, 20), date(2026, 11, 24),
                                          store=store, bucket=bucket, storage_options=options, today=TODAY, progress=quiet_progress("t"))
        assert report.units == 6 and report.already_done == 3, "AAA's days were done before the failure"
        # only the session is asked for: the pre-market trades are never fetched, let alone stored
        assert report.fetched == 93 and report.outside_session == 0 and report.rejected == Counter({"field price": 3})
        assert report.inserted == 90  # BBB's three days

        rows = table_rows(settings, bucket)
        keys = Counter((r["ticker"], r["date"], r["trade_id"]) for r in rows)
        assert set(keys) == expected and max(keys.values()) == 1
        live_row = [r for r in rows if (r["ticker"], r["trade_id"]) == ("AAA", "1124000")]
        assert len(live_row) == 1 and live_row[0]["kafka_offset"] >= 0, "the live row stays, alone"
        assert {r["kafka_offset"] for r in rows if r is not live_row[0]} == {-1}

        version = DeltaTable(uri, storage_options=options).version()
        again = backfill.backfill_trades(history(fake, InstantClock()), ["AAA", "BBB"], date(2026, 11, 20), date(2026, 11, 24),
                                         store=store, bucket=bucket, storage_options=options, today=TODAY, progress=quiet_progress("t"))
        assert again.already_done == 6 and again.inserted == 0
        assert DeltaTable(uri, storage_options=options).version() == version, "a second run changes nothing"
        forced = backfill.backfill_trades(history(fake, InstantClock()), ["AAA"], date(2026, 11, 23), date(2026, 11, 23), store=store,
                                          bucket=bucket, storage_options=options, today=TODAY, again=True, progress=quiet_progress("t"))
        assert forced.already_done == 0 and forced.fetched > 0 and forced.inserted == 0
        assert len(table_rows(settings, bucket)) == len(expected)
        # paging followed every next_page_token
        assert any("page_token" in q for q in fake.trade_requests())


def test_news_backfill_puts_each_article_under_its_new_york_day_once(lake):
    settings, _, bucket = lake
    options, uri = settings.delta_storage_options(), f"s3://{bucket}"
    store = shared_object_store(settings)()
    with FakeFinnhub() as fake:
        fake.publish("AAA", 1, datetime(2026, 11, 23, 15, 0, tzinfo=UTC))
        fake.publish("AAA", 2, datetime(2026, 11, 24, 2, 0, tzinfo=UTC))  # 21:00 on the 23rd in New York
        fake.publish("AAA", 3, datetime(2026, 11, 24, 16, 0, tzinfo=UTC))
        fake.publish("AAA", 4, datetime(2026, 11, 24, 17, 0, tzinfo=UTC), headline="")  # refused by the contract
        news = FinnhubNewsHistory(FinnhubNews(fake.token, fake.api_url, 60, 1e9, 0), clock=InstantClock())
        report = backfill.backfill_news(news, ["AAA"], date(2026, 11, 23), date(2026, 11, 24),
                                        store=store, bucket=bucket, storage_options=options, today=TODAY,
                                        progress=quiet_progress("n"))
        assert report.units == 2 and report.inserted == 3
        table = DeltaTable(uri, storage_options=options).to_pyarrow_table()
        by_day = sorted(zip(table.column("date").to_pylist(), table.column("id").to_pylist()))
        assert by_day == [(date(2026, 11, 23), 1), (date(2026, 11, 23), 2), (date(2026, 11, 24), 3)]
        again = backfill.backfill_news(news, ["AAA"], date(2026, 11, 23), date(2026, 11, 24), store=store,
                                       bucket=bucket, storage_options=options, today=TODAY, again=True, progress=quiet_progress("n"))
        assert again.inserted == 0
        assert DeltaTable(uri, storage_options=options).to_pyarrow_table().num_rows == 3


def test_a_backfill_of_today_is_refused_in_one_line():
    with pytest.raises(backfill.BackfillError, match="--end 2026-11-25 is not a closed day"):
        backfill.check_range(date(2026, 11, 20), TODAY, TODAY)


def test_two_backfills_of_the_same_days_at_once_store_each_trade_once(lake):
    """Two operators start the same backfill at the same time: their merges race for every ticker-day, and
    the one that loses merges again on the newer table, inserting only what is missing."""
    import threading

    settings, _, bucket = lake
    options = settings.delta_storage_options()
    store = shared_object_store(settings)()
    with FakeAlpacaHistory() as fake:
        expected = 0
        for ticker in ("AAA", "BBB", "CCC"):
            for day in (date(2026, 11, 23), date(2026, 11, 24)):
                opening = datetime.combine(day, datetime.min.time(), UTC) + timedelta(hours=14, minutes=30)
                for i in range(40):
                    fake.add(ticker, int(f"{day:%m%d}{i:03d}"), opening + timedelta(minutes=7 * i), price=100 + i)
                    expected += 1
        reports, errors = [], []

        def run() -> None:
            try:
                reports.append(backfill.backfill_trades(history(fake, InstantClock()), ["AAA", "BBB", "CCC"],
                                                        date(2026, 11, 23), date(2026, 11, 24), store=store,
                                                        bucket=bucket, storage_options=options, today=TODAY,
                                                        progress=quiet_progress("t")))
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=run) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(300)
    assert not errors
    rows = table_rows(settings, bucket)
    assert len(rows) == expected == len({(r["ticker"], r["date"], r["trade_id"]) for r in rows})
    assert sum(report.inserted for report in reports) == expected
